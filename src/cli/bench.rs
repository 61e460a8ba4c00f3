//! `tunelab bench …`: throughput measurements that BENCHMARKS.md records (never timed
//! assertions in tests).

use super::exit;
use clap::Subcommand;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;
use tunelab::model::decoder::KvCache;
use tunelab::model::Batch;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Forward pass tokens/s on the CPU (logits at every position, no gradient) on random ids.
    Forward {
        /// A model folder, a .gguf file, or a hub id (org/name).
        #[arg(long)]
        model: String,
        /// Rows per forward pass.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Timed passes (after one untimed warm-up).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Greedy generation tokens/s on the CPU with a KV cache (prefill and decode reported
    /// apart).
    Generate {
        /// A model folder, a .gguf file, or a hub id (org/name).
        #[arg(long)]
        model: String,
        /// Random prompt tokens to prefill.
        #[arg(long, default_value_t = 32)]
        prompt_len: usize,
        /// Tokens to decode after the prompt.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Workbench timings: time to the first frame (fresh and existing workspace), render
    /// time per frame on the Train and Runs tabs while a tiny run trains in the background,
    /// and key latency (key → action → frame), optionally with many long finished runs in
    /// the data folder (`--runs 50 --steps 100000`).
    #[cfg(feature = "tui")]
    Tui {
        /// Frames to time in each measurement.
        #[arg(long, default_value_t = 200)]
        frames: usize,
        /// Finished runs to create in the data folder first.
        #[arg(long, default_value_t = 0)]
        runs: usize,
        /// Steps of each of those runs (one train event per step, eval every 100).
        #[arg(long, default_value_t = 100_000)]
        steps: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// LoRA training tokens/s on a random model of a named shape (forward, backward,
    /// clipping and AdamW: whole optimizer steps), for SFT or DPO.
    Train {
        /// sft: `--batch` rows of `--seq` tokens, every token trained. dpo: `--batch` pairs,
        /// each a prompt of seq/2 tokens and two completions of seq/2 (so 2×batch rows of
        /// `--seq` tokens: an SFT step with twice the batch processes the same tokens).
        #[arg(long, default_value = "sft")]
        objective: tunelab::config::Method,
        /// dpo: reference log-probs computed once before timing (else a reference forward
        /// with the adapter bypassed runs in every step).
        #[arg(long)]
        precompute_ref: bool,
        /// bench-tiny (vocab 4096, hidden 256, 4 layers), qwen2.5-0.5b or smollm2-135m.
        #[arg(long, default_value = "bench-tiny")]
        shape: String,
        /// Rows (sft) or pairs (dpo) per step.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// The LoRA rank (alpha is twice it), on every linear layer.
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// LoRA dropout (the presets use 0.05), a fresh mask every step.
        #[arg(long, default_value_t = 0.0)]
        dropout: f64,
        /// Timed optimizer steps (after `--warmup` untimed ones).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed optimizer steps first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// cpu, cuda or cuda:N (a CUDA build).
        #[arg(long, default_value = "cpu")]
        device: tunelab::model::DeviceSpec,
        /// The compute dtype: f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: tunelab::model::Dtype,
        /// Per-layer activation checkpointing.
        #[arg(long)]
        checkpointing: bool,
        /// Use candle's autograd instead of the hand-written backward (for comparison).
        #[arg(long)]
        autograd: bool,
        /// Quantize the base's projections (QLoRA): q8_0, q4_0, q4k or nf4.
        #[arg(long, default_value = "none")]
        quantization: tunelab::model::Quantization,
        /// Quantize an untied output head too.
        #[arg(long)]
        quantize_head: bool,
        /// Print one JSON object instead of text.
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
        BenchCommand::Train { .. } => return tunelab::ops::on_pool(|| train(cmd)),
        #[cfg(feature = "tui")]
        BenchCommand::Tui {
            frames,
            runs,
            steps,
            json,
        } => return super::bench_tui::run(*frames, *runs, *steps, *json),
    };
    let (mut model, _tok) = match tunelab::model::source::load(&spec, &device) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    // The forward row compares f32 with f32 (transformers dequantizes too); generation
    // loads as `chat` and `serve` do.
    if matches!(cmd, BenchCommand::Generate { .. }) {
        model.prepare_for_generation()?;
    } else {
        model.densify()?;
    }
    tunelab::allocator::load_done();
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
            // A warm-up pass, as llama-bench makes: first-touch allocation and thread start
            // are not what a chat turn costs.
            model.forward_cached(&prompt, &mut KvCache::default())?;
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
        _ => {}
    }
    Ok(ExitCode::from(exit::OK))
}

fn train(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    use tunelab::batch::pairs::Pair;
    use tunelab::batch::{collate, Sequence};
    use tunelab::lora::LoraConfig;
    use tunelab::model::random;
    use tunelab::train::dpo::{Dpo, Reference};
    use tunelab::train::objective::Objective;
    use tunelab::train::step::forward_backward;
    use tunelab::train::{AdamW, AdamWConfig, Grads};
    let BenchCommand::Train {
        objective,
        precompute_ref,
        shape,
        batch,
        seq,
        rank,
        dropout,
        steps,
        warmup,
        device,
        dtype,
        checkpointing,
        autograd,
        quantization,
        quantize_head,
        json: as_json,
    } = cmd
    else {
        return Ok(ExitCode::from(exit::UNUSABLE));
    };
    let Some(bench_items) = objective.bench_items() else {
        use strum::IntoEnumIterator;
        let measured: Vec<String> = tunelab::config::Method::iter()
            .filter(|m| m.bench_items().is_some())
            .map(|m| m.to_string())
            .collect();
        eprintln!(
            "error: --objective {objective} is not benchmarked (measured: {})",
            measured.join(", ")
        );
        return Ok(ExitCode::from(exit::UNUSABLE));
    };
    let Some(config) = random::shape(&shape) else {
        eprintln!("error: --shape {shape:?}: expected bench-tiny, qwen2.5-0.5b or smollm2-135m");
        return Ok(ExitCode::from(exit::UNUSABLE));
    };
    let dev = match device.open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    let dt = dtype.candle();
    let gpus = tunelab::telemetry::Gpus::open();
    let gpu_used = || {
        gpus.as_ref()
            .map(|g| g.memory().iter().map(|m| m.used).sum::<u64>())
    };
    let gpu_before = gpu_used();
    let plan = tunelab::model::QuantPlan {
        quantization,
        head: quantize_head,
        cache: None,
    };
    let (mut model, quant) = random::random_model_quantized(&config, dt, &dev, plan.clone())?;
    model.prefer_training_layout()?;
    let lora_cfg = LoraConfig {
        r: rank,
        alpha: 2.0 * rank as f64,
        dropout,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    };
    // What the Adapter tab would estimate for this run, to hold against the measured peak.
    let rows_per_step = objective.rows_per_item() * batch;
    let estimate = tunelab::model::estimate::memory(
        &model.config,
        &lora_cfg,
        tunelab::model::estimate::training_weights(
            &model.config,
            &plan,
            dt.size_in_bytes() as u64,
            device == tunelab::model::DeviceSpec::Cpu,
        ),
        dt.size_in_bytes() as u64,
        rows_per_step,
        seq,
        checkpointing,
        device == tunelab::model::DeviceSpec::Cpu,
    );
    model.add_lora(&lora_cfg, 0)?;
    tunelab::allocator::load_done();
    let vocab = model.config.vocab_size;
    let rows: Vec<Sequence> = (0..batch)
        .map(|b| {
            let ids = random_ids(seq, vocab, b as u64);
            Sequence {
                labels: ids.iter().map(|&i| i64::from(i)).collect(),
                position_ids: (0..seq as u32).collect(),
                input_ids: ids,
            }
        })
        .collect();
    let refs: Vec<&Sequence> = rows.iter().collect();
    let mb = collate(&refs, 0);
    let dpo = (bench_items == tunelab::config::BenchItems::Pairs).then(|| {
        let half = seq / 2;
        let pairs: Vec<Pair> = (0..batch)
            .map(|b| {
                let ids = random_ids(half + 2 * (seq - half), vocab, b as u64);
                Pair {
                    prompt: ids[..half].to_vec(),
                    chosen: ids[half..seq].to_vec(),
                    rejected: ids[seq..].to_vec(),
                    prompt_text: String::new(),
                }
            })
            .collect();
        let cfg = tunelab::config::DpoSection {
            precompute_ref,
            ..Default::default()
        };
        Dpo::new(
            pairs,
            Vec::new(),
            0,
            &cfg,
            Reference::Bypass,
            "bench".into(),
        )
    });
    let mut dpo = dpo;
    let mut precompute_s = None;
    if let (Some(d), true) = (dpo.as_mut(), precompute_ref) {
        let dir = tempfile::tempdir()?;
        let t = Instant::now();
        tunelab::train::dpo::precompute(d, &model, &tunelab::runs::RunDir::new(dir.path()), batch)?;
        precompute_s = Some(t.elapsed().as_secs_f64());
    }
    let items: Vec<usize> = (0..batch).collect();
    let vars = model.lora_vars();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: 1e-4,
            ..Default::default()
        },
    )?;
    let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
    let mut peak = 0u64;
    let mut step_no = 0u64;
    let mut one_step = |grads: &mut Grads| -> anyhow::Result<f64> {
        step_no += 1;
        let dropout_seed = (dropout > 0.0).then_some(step_no);
        let l = match &dpo {
            Some(d) => {
                let window = d.window(&items);
                let args = tunelab::train::micro::StepArgs {
                    window_targets: window.units,
                    dropout_seed,
                    checkpointing,
                    autograd,
                    temperature: 1.0,
                };
                d.micro_step(&model, &items, window, &args, grads)?.loss
            }
            None => {
                let args = tunelab::train::micro::StepArgs {
                    window_targets: mb.targets,
                    dropout_seed,
                    checkpointing,
                    autograd,
                    temperature: 1.0,
                };
                forward_backward(&model, &mb, &args, grads)?.loss
            }
        };
        grads.clip(1.0)?;
        opt.step(&*grads)?;
        grads.clear();
        dev.synchronize()?;
        if let Some(u) = gpu_used() {
            peak = peak.max(u);
        }
        Ok(l)
    };
    for _ in 0..warmup {
        one_step(&mut grads)?;
    }
    let start = Instant::now();
    let mut loss = 0.0;
    for _ in 0..steps {
        loss = one_step(&mut grads)?;
    }
    let secs = start.elapsed().as_secs_f64();
    // Rows per step: a pair is two.
    let rows = if dpo.is_some() { 2 * batch } else { batch };
    let tps = (rows * seq * steps) as f64 / secs;
    let pairs_per_s = dpo.is_some().then(|| (batch * steps) as f64 / secs);
    let peak_vram = gpu_before.map(|b| peak.saturating_sub(b));
    let rss = tunelab::telemetry::rss_bytes(None);
    if as_json {
        println!(
            "{}",
            json!({"tokens_per_s": tps, "objective": objective.to_string(), "pairs_per_s": pairs_per_s,
                   "precompute_ref": precompute_ref, "precompute_s": precompute_s,
                   "steps_per_s": steps as f64 / secs,
                   "shape": shape, "batch": batch, "seq": seq, "rank": rank, "dropout": dropout,
                   "steps": steps, "seconds": secs, "device": device.to_string(), "dtype": dtype.to_string(),
                   "checkpointing": checkpointing, "autograd": autograd, "last_loss": loss,
                   "quantization": quantization.to_string(), "base_bytes": quant.base_bytes,
                   "estimate_bytes": estimate.total,
                   "estimate": {"weights": estimate.weights, "lora_state": estimate.lora_state,
                                "activations": estimate.activations, "logits": estimate.logits,
                                "runtime": estimate.runtime},
                   "trainable_params": model.trainable_parameters(),
                   "peak_vram_bytes": peak_vram, "rss_bytes": rss})
        );
    } else {
        let what = match pairs_per_s {
            Some(p) => format!(
                "dpo {batch} pairs ({rows}×{seq}){}: {p:.2} pairs/s, ",
                if precompute_ref {
                    ", precomputed reference"
                } else {
                    ""
                }
            ),
            None => format!("sft {batch}×{seq}: "),
        };
        let what = if quant.quantized_params > 0 {
            format!("{what}{quantization} base, ")
        } else {
            what
        };
        println!(
            "train {shape} {what}r={rank} on {device} {dtype}: {tps:.0} tokens/s ({steps} steps, {secs:.2}s, loss {loss:.4}){}",
            peak_vram.map(|p| format!(", peak VRAM {:.2} GiB", p as f64 / (1u64 << 30) as f64)).unwrap_or_default()
        );
    }
    Ok(ExitCode::from(exit::OK))
}
