//! Few-shot contexts as lm-evaluation-harness builds them. Its default sampler draws the
//! examples of every item with `random.Random(seed).sample(pool, k)`, one generator for the
//! whole task, item after item; so that `--num-fewshot K --seed S` here shows a model the
//! very prompts lm-eval shows it, Python's generator (MT19937 seeded by `init_by_array`) and
//! its `sample` are reproduced bit for bit (lm-eval 0.4.13's `ContextSampler.sample`). When
//! the pool is the items' own split, lm-eval draws K + 1 and drops the item being asked
//! (and, should copies of the item leave fewer than K, draws K again from the pool without
//! them), and so does [`contexts`]; from another split it draws K and keeps them all.

use super::{BenchOptions, ChoiceError, Item, Task};

/// Python's `random.Random` (CPython's `_random.Random`, MT19937) for what `sample` needs.
#[derive(Debug, Clone)]
pub struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed: `init_by_array` over the
    /// seed's 32-bit words, least significant first (CPython's `random_seed`).
    pub fn new(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 {
            vec![seed as u32]
        } else {
            vec![seed as u32, (seed >> 32) as u32]
        };
        let mut r = PyRandom {
            mt: [0; 624],
            index: 624,
        };
        r.init_genrand(19_650_218);
        let (n, mut i, mut j) = (624usize, 1usize, 0usize);
        for _ in 0..n.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= n {
                r.mt[0] = r.mt[n - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..n - 1 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= n {
                r.mt[0] = r.mt[n - 1];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    /// MT19937's next 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & UPPER) | (self.mt[(k + 1) % 624] & LOWER);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.mt[k] = self.mt[(k + 397) % 624] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for `k <= 32`.
    fn getrandbits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)` (`_randbelow_with_getrandbits`), `0 < n < 2³²`.
    fn randbelow(&mut self, n: usize) -> usize {
        let k = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: `k` distinct indices below `n`, in selection order; `None`
    /// when `k > n` (Python raises).
    pub fn sample(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        let mut setsize = 21usize;
        if k > 5 {
            let e = ((k * 3) as f64).ln() / 4f64.ln();
            setsize += 4usize.saturating_pow(e.ceil() as u32);
        }
        let mut out = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                out.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::new();
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while selected.contains(&j) {
                    j = self.randbelow(n);
                }
                selected.insert(j);
                out.push(j);
            }
        }
        Some(out)
    }
}

/// The full context of each of the first `limit` items: `num_fewshot` solved examples
/// (each its context, the target delimiter and its right choice, followed by the few-shot
/// delimiter), then the item's own context.
pub fn contexts(task: &Task, opts: &BenchOptions) -> Result<Vec<String>, ChoiceError> {
    let n = opts
        .limit
        .map_or(task.items.len(), |l| l.min(task.items.len()));
    let k = opts.num_fewshot;
    if k == 0 {
        return Ok(task.items[..n].iter().map(|i| i.context.clone()).collect());
    }
    let pool = task.fewshot_pool();
    let draw = if task.fewshot_is_items { k + 1 } else { k };
    if draw > pool.len() {
        let source = match &task.fewshot_split {
            Some(s) if !task.fewshot_is_items => format!("the {s:?} split"),
            _ => "the task's own items (one of them is always the item asked)".into(),
        };
        return Err(ChoiceError::Options(format!(
            "--num-fewshot {k} needs {draw} examples from {source}, which has {}",
            pool.len()
        )));
    }
    let mut rng = PyRandom::new(opts.seed);
    let mut out = Vec::with_capacity(n);
    for item in &task.items[..n] {
        let drawn = rng.sample(pool.len(), draw).unwrap_or_default();
        let mut shots: Vec<&Item> = drawn.iter().map(|&i| &pool[i]).collect();
        if task.fewshot_is_items {
            shots.retain(|ex| *ex != item);
            shots.truncate(k);
            if shots.len() < k {
                // Copies of the item in the pool were drawn and dropped: lm-eval draws
                // again from the pool without any copy of it.
                let others: Vec<&Item> = pool.iter().filter(|ex| *ex != item).collect();
                shots = rng
                    .sample(others.len(), k)
                    .ok_or_else(|| {
                        ChoiceError::Options(format!(
                            "--num-fewshot {k}: the task has only {} items unlike item {}",
                            others.len(),
                            out.len()
                        ))
                    })?
                    .into_iter()
                    .map(|i| others[i])
                    .collect();
            }
        }
        let mut ctx = String::new();
        for ex in shots {
            ctx.push_str(&ex.context);
            ctx.push_str(&opts.target_delimiter);
            ctx.push_str(&ex.choices[ex.answer]);
            ctx.push_str(&opts.fewshot_delimiter);
        }
        ctx.push_str(&item.context);
        out.push(ctx);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_pythons() {
        // python3 -c "import random; r = random.Random(S); print([r.getrandbits(32) for _ in range(3)])"
        for (seed, want) in [
            (1234u64, [4150886329u32, 3342196574, 1892932127]),
            (0, [3626764237, 1654615998, 3255389356]),
            (42, [2746317213, 478163327, 107420369]),
            ((1 << 40) + 7, [2635837658, 3209733218, 3500038837]),
        ] {
            let mut r = PyRandom::new(seed);
            let got = [r.next_u32(), r.next_u32(), r.next_u32()];
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn sample_is_pythons_for_small_and_large_pools() {
        // r = random.Random(1234); [r.sample(range(12), 3) for _ in range(4)]
        let mut r = PyRandom::new(1234);
        let got: Vec<Vec<usize>> = (0..4).map(|_| r.sample(12, 3).unwrap()).collect();
        assert_eq!(
            got,
            vec![vec![7, 1, 0], vec![1, 9, 0], vec![10, 1, 11], vec![5, 3, 0]]
        );
        // The set-tracking branch (n > setsize).
        let mut r = PyRandom::new(1234);
        let got: Vec<Vec<usize>> = (0..3).map(|_| r.sample(100, 3).unwrap()).collect();
        assert_eq!(
            got,
            vec![vec![99, 56, 14], vec![0, 11, 74], vec![4, 85, 88]]
        );
        let mut r = PyRandom::new(7);
        assert_eq!(
            r.sample(1000, 10).unwrap(),
            vec![331, 970, 154, 404, 666, 49, 74, 840, 548, 96]
        );
        assert_eq!(PyRandom::new(1).sample(2, 3), None);
    }
}
