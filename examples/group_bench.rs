//! Sampling one GRPO group: `infer::group::sample_group` (the group's completions decoded
//! as one batch) against as many sequential `infer::generate` calls, on a base with LoRA on
//! (fresh pairs on the default targets, as a run starts), at temperature 1 with no stop
//! token, so every completion runs to the full budget. Prints each repeat and the medians.
//!
//!     cargo run --release --example group_bench -- MODEL [GROUP] [TOKENS] [REPEATS]

use std::time::Instant;
use tunelab::infer::group::sample_group;
use tunelab::infer::sampling::Sampling;
use tunelab::infer::{generate, GenEvent};
use tunelab::lora::LoraConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(i: usize, default: usize) -> anyhow::Result<usize> {
    Ok(match std::env::args().nth(i) {
        Some(a) => a.parse()?,
        None => default,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> anyhow::Result<()> {
    // As the binary's main: one rayon pool answer, and candle's element-wise pool off on
    // small machines.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    if cores <= 4 {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let spec = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: group_bench MODEL [GROUP] [TOKENS] [REPEATS]"))?;
    let (group, tokens, repeats) = (arg(2, 8)?, arg(3, 128)?, arg(4, 3)?.max(1));
    let (mut model, mut tok) = tunelab::model::source::load(&spec, &candle_core::Device::Cpu)?;
    model.prepare_for_generation()?;
    model.add_lora(&LoraConfig::default(), 0)?;
    tok.stop_ids.clear();
    let prompt = tok
        .inner
        .encode("Write a short story about a lighthouse keeper.", false)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .get_ids()
        .to_vec();
    let cfg = Sampling {
        temperature: 1.0,
        max_new_tokens: tokens,
        ..Default::default()
    };
    let seeds: Vec<u64> = (0..group as u64).collect();
    sample_group(&model, &prompt, &[], &cfg, &seeds[..1])?; // warm-up
    let (mut batched, mut sequential) = (Vec::new(), Vec::new());
    for rep in 0..repeats {
        let start = Instant::now();
        let rows = sample_group(&model, &prompt, &[], &cfg, &seeds)?;
        batched.push(start.elapsed().as_secs_f64());
        let made: usize = rows.iter().map(|r| r.ids.len()).sum();
        let start = Instant::now();
        for &seed in &seeds {
            let one = Sampling {
                seed,
                ..cfg.clone()
            };
            generate(&model, &tok, &prompt, one, |e| {
                !matches!(e, GenEvent::Error(_))
            });
        }
        sequential.push(start.elapsed().as_secs_f64());
        println!(
            "repeat {rep}: sample_group {:.2}s, sequential generate {:.2}s ({made} tokens)",
            batched[rep], sequential[rep]
        );
    }
    let (b, s) = (median(batched), median(sequential));
    let n = (group * tokens) as f64;
    println!(
        "{group} × {tokens} tokens, prompt {}: sample_group {b:.2}s ({:.0} tokens/s), \
         sequential {s:.2}s ({:.0} tokens/s), {:.2}× faster",
        prompt.len(),
        n / b,
        n / s,
        s / b
    );
    Ok(())
}
