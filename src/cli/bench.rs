//! `tunelab bench …`: throughput measurements that BENCHMARKS.md records (never timed
//! assertions in tests).

use super::exit;
use clap::Subcommand;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;
use tunelab::model::llama::KvCache;
use tunelab::model::Batch;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Forward pass tokens/s (logits at every position, no gradient) on random ids.
    Forward {
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[arg(long, default_value_t = 128)]
        seq: usize,
        #[arg(long, default_value_t = 5)]
        iters: usize,
        #[arg(long)]
        json: bool,
    },
    /// Greedy generation tokens/s with a KV cache (prefill and decode reported apart).
    Generate {
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 32)]
        prompt_len: usize,
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        #[arg(long)]
        json: bool,
    },
}

fn random_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..vocab as u32)).collect()
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let device = candle_core::Device::Cpu;
    let spec = match &cmd {
        BenchCommand::Forward { model, .. } | BenchCommand::Generate { model, .. } => model.clone(),
    };
    let (mut model, _tok) = match tunelab::model::source::load(&spec, &device) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    model.densify()?;
    let vocab = model.config.vocab_size;
    match cmd {
        BenchCommand::Forward {
            batch,
            seq,
            iters,
            json: as_json,
            ..
        } => {
            let rows: Vec<Vec<u32>> = (0..batch)
                .map(|b| random_ids(seq, vocab, b as u64))
                .collect();
            let input = candle_core::Tensor::new(rows, &device)?;
            model.forward(&input, &Batch::default(), None)?; // warm-up
            let start = Instant::now();
            for _ in 0..iters {
                model.forward(&input, &Batch::default(), None)?;
            }
            let secs = start.elapsed().as_secs_f64();
            let tps = (batch * seq * iters) as f64 / secs;
            if as_json {
                println!(
                    "{}",
                    json!({"tokens_per_s": tps, "batch": batch, "seq": seq, "iters": iters, "seconds": secs})
                );
            } else {
                println!(
                    "forward {batch}×{seq}: {tps:.0} tokens/s ({iters} iterations, {secs:.2}s)"
                );
            }
        }
        BenchCommand::Generate {
            prompt_len,
            new_tokens,
            json: as_json,
            ..
        } => {
            let prompt = random_ids(prompt_len, vocab, 7);
            let mut cache = KvCache::default();
            let start = Instant::now();
            let mut logits: Vec<f32> = model.forward_cached(&prompt, &mut cache)?.to_vec1()?;
            let prefill = start.elapsed().as_secs_f64();
            let start = Instant::now();
            for _ in 0..new_tokens {
                let next = logits
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i as u32);
                logits = model.forward_cached(&[next], &mut cache)?.to_vec1()?;
            }
            let decode = start.elapsed().as_secs_f64();
            let tps = new_tokens as f64 / decode;
            if as_json {
                println!(
                    "{}",
                    json!({"decode_tokens_per_s": tps, "prefill_tokens_per_s": prompt_len as f64 / prefill, "prompt_len": prompt_len, "new_tokens": new_tokens})
                );
            } else {
                println!("generate: prefill {prompt_len} tokens in {prefill:.3}s, decode {tps:.1} tokens/s over {new_tokens} tokens");
            }
        }
    }
    Ok(ExitCode::from(exit::OK))
}
