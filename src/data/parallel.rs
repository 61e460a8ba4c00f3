//! Ordered parallel map over a batch on a rayon pool of the data tools' own: the CPU-heavy
//! part of a streaming pass (parsing, converting, tokenizing) runs on every core while output
//! keeps input order. The pool is separate from rayon's global one, which candle's kernels
//! use, so a conversion never queues behind compute or the other way round.

/// Worker threads to use: the machine's parallelism, capped (`TUNELAB_THREADS` overrides).
pub fn threads() -> usize {
    if let Some(n) = std::env::var("TUNELAB_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16)
}

fn pool(threads: usize) -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tunelab-data-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Applies `f` to every item on up to `threads` threads and returns the results in order.
/// (The pool is sized by the first call.)
pub fn map_ordered<T, U, F>(items: Vec<T>, threads: usize, f: F) -> Vec<U>
where
    T: Send,
    U: Send,
    F: Fn(T) -> U + Sync + Send,
{
    use rayon::prelude::*;
    if threads <= 1 || items.len() < 64 {
        return items.into_iter().map(f).collect();
    }
    match pool(threads) {
        Some(p) => p.install(|| items.into_par_iter().map(f).collect()),
        None => items.into_iter().map(f).collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_across_threads() {
        let v: Vec<u64> = (0..1000).collect();
        let out = super::map_ordered(v, 3, |x| x * 2);
        assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    }
}
