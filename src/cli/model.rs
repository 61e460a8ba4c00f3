//! `tunelab model …`: make a tiny model, describe a model.

use super::exit;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::model::tiny::{init_tiny, TinySpec};
use tunelab::model::Arch;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a small random model with its own trained tokenizer and a ChatML template.
    InitTiny {
        /// The folder to create.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// The architecture to imitate.
        #[arg(long, value_enum, default_value = "llama")]
        arch: Arch,
        /// The hidden size (the MLP is twice as wide).
        #[arg(long, default_value_t = 64)]
        hidden: usize,
        /// Transformer layers.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// The tokenizer's vocabulary size.
        #[arg(long, default_value_t = 512)]
        vocab: usize,
        /// The seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A text file whose words the tokenizer should also learn (blank lines separate
        /// documents).
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Architecture, parameter count, dtype, memory and LoRA target modules of a model: a
    /// folder, a .gguf file or a hub id.
    Info {
        /// A model folder, a .gguf file, or a hub id (org/name).
        model: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Quantize the projections as QLoRA would (q8_0, q4_0, q4k, nf4) and report the bytes.
        #[arg(long, default_value = "none")]
        quantization: tunelab::model::Quantization,
        /// Quantize an untied output head too.
        #[arg(long)]
        quantize_head: bool,
        /// Quantize now even when the cache holds this base (and do not write it).
        #[arg(long)]
        no_cache: bool,
    },
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::InitTiny {
            output,
            arch,
            hidden,
            layers,
            vocab,
            seed,
            corpus,
        } => {
            let extra_corpus = match corpus.map(std::fs::read_to_string).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => {
                    eprintln!("error: --corpus: {e}");
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
            };
            let spec = TinySpec {
                arch,
                hidden,
                intermediate: hidden * 2,
                layers,
                vocab,
                seed,
                extra_corpus,
                ..TinySpec::default()
            };
            if let Err(e) = init_tiny(&output, &spec) {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
            println!("{}", output.display());
            Ok(ExitCode::from(exit::OK))
        }
        ModelCommand::Info {
            model,
            json: as_json,
            quantization,
            quantize_head,
            no_cache,
        } => {
            let cfg = match tunelab::model::source::config(&model) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
            };
            let params = cfg.parameter_count();
            let dtype = cfg.torch_dtype.clone().unwrap_or_else(|| "float32".into());
            let (bytes_per, candle_dtype) = match dtype.as_str() {
                "bfloat16" => (2, candle_core::DType::BF16),
                "float16" => (2, candle_core::DType::F16),
                _ => (4, candle_core::DType::F32),
            };
            // Loading checks that the weights are all there and readable, and measures what
            // the base occupies under the quantization.
            let report = match tunelab::model::source::load_weights(
                &model,
                &candle_core::Device::Cpu,
                candle_dtype,
                tunelab::model::QuantPlan {
                    quantization,
                    head: quantize_head,
                    cache: (!no_cache).then(|| tunelab::paths::Paths::resolve().cache),
                },
            ) {
                Ok((_, r)) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
            };
            let targets = cfg.linear_modules();
            let windows = cfg.sliding_layers.iter().filter(|s| **s).count();
            if as_json {
                let out = json!({
                    "architecture": cfg.arch.hf_class(), "parameters": params, "dtype": dtype,
                    "weights_bytes": params * bytes_per, "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                    "attention_heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads, "vocab_size": cfg.vocab_size,
                    "tie_word_embeddings": cfg.tie_word_embeddings, "lora_target_modules": targets,
                    "quantization": report.quantization, "params": report.params, "base_bytes": report.base_bytes,
                    "quantized_params": report.quantized_params, "quantized_bytes": report.quantized_bytes,
                    "bits_per_quantized_weight": report.bits_per_quantized_weight(), "fallbacks": report.fallbacks,
                    "source": report.source, "family": cfg.family().covers,
                    "sliding_window": cfg.sliding_window, "sliding_layers": windows,
                    "attn_logit_softcapping": cfg.attn_logit_softcapping,
                    "final_logit_softcapping": cfg.final_logit_softcapping,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "architecture  {} ({})",
                    cfg.arch.hf_class(),
                    cfg.arch.name()
                );
                println!("parameters    {params} ({:.1} M)", params as f64 / 1e6);
                println!(
                    "dtype         {dtype} ({:.1} MiB of weights)",
                    (params * bytes_per) as f64 / (1 << 20) as f64
                );
                println!(
                    "shape         {} layers · hidden {} · {} heads ({} kv) · vocab {}{}",
                    cfg.num_hidden_layers,
                    cfg.hidden_size,
                    cfg.num_attention_heads,
                    cfg.num_key_value_heads,
                    cfg.vocab_size,
                    if cfg.tie_word_embeddings {
                        " · tied embeddings"
                    } else {
                        ""
                    }
                );
                println!("family        {}", cfg.family().covers);
                if let Some(w) = cfg.sliding_window {
                    println!(
                        "attention     sliding window {w} on {windows} of {} layers",
                        cfg.num_hidden_layers
                    );
                }
                println!("lora targets  {}", targets.join(", "));
                if report.quantized_params > 0 || !report.fallbacks.is_empty() {
                    println!("base          {}", report.summary());
                    for f in &report.fallbacks {
                        println!(
                            "  {}: {} → {} (input width {})",
                            f.tensor, f.wanted, f.used, f.cols
                        );
                    }
                }
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}
