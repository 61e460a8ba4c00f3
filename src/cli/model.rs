//! `tunelab model …`: make a tiny model, describe a model.

use super::exit;
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::model::tiny::{init_tiny, TinySpec};
use tunelab::model::{Arch, Model, ModelConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TinyArch {
    Llama,
    Qwen2,
    Mistral,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a small random model with its own trained tokenizer and a ChatML template.
    InitTiny {
        /// The folder to create.
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "llama")]
        arch: TinyArch,
        #[arg(long, default_value_t = 64)]
        hidden: usize,
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 512)]
        vocab: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A text file whose words the tokenizer should also learn (blank lines separate
        /// documents).
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Architecture, parameter count, dtype, memory and LoRA target modules of a model folder.
    Info {
        model: PathBuf,
        #[arg(long)]
        json: bool,
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
            let arch = match arch {
                TinyArch::Llama => Arch::Llama,
                TinyArch::Qwen2 => Arch::Qwen2,
                TinyArch::Mistral => Arch::Mistral,
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
        } => {
            let cfg = match ModelConfig::from_file(&model.join("config.json")) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
            };
            // Loading checks that the weights are all there and readable.
            if let Err(e) = Model::load(&model, candle_core::DType::F32, &candle_core::Device::Cpu)
            {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
            let params = cfg.parameter_count();
            let dtype = cfg.torch_dtype.clone().unwrap_or_else(|| "float32".into());
            let bytes_per = match dtype.as_str() {
                "bfloat16" | "float16" => 2,
                _ => 4,
            };
            let targets = ModelConfig::linear_modules();
            if as_json {
                let out = json!({
                    "architecture": cfg.arch.hf_class(), "parameters": params, "dtype": dtype,
                    "weights_bytes": params * bytes_per, "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
                    "attention_heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads, "vocab_size": cfg.vocab_size,
                    "tie_word_embeddings": cfg.tie_word_embeddings, "lora_target_modules": targets,
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
                println!("lora targets  {}", targets.join(", "));
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}
