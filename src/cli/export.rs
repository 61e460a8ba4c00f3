//! `tunelab export`: merged Hugging Face folders, GGUF files (with an Ollama Modelfile) and
//! LoRA GGUFs, from a run, an adapter folder, or a bare base model.

use super::exit;
use candle_core::DType;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::export;
use tunelab::export::gguf::GgufQuant;
use tunelab::paths::Paths;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A run (folder or id) or an adapter folder; leave it out to convert `--model` alone.
    pub source: Option<String>,
    /// The base model (folder, .gguf or hub id) when the run or adapter does not locate it.
    #[arg(long)]
    pub model: Option<String>,
    /// Base plus adapter merged into a Hugging Face folder (safetensors, config, tokenizer).
    #[arg(long)]
    pub merge: bool,
    /// Base plus adapter merged into one GGUF file for llama.cpp, with an Ollama Modelfile.
    #[arg(long)]
    pub gguf: bool,
    /// The adapter alone as a llama.cpp LoRA GGUF (`llama-cli --lora`, Ollama `ADAPTER`).
    #[arg(long)]
    pub gguf_lora: bool,
    /// The merged folder's weights: bf16, f16 or f32 (default: the base's dtype; bf16 for
    /// a quantized base).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<DType>,
    /// For a QLoRA run: merge into the dequantized quantized weights the run trained on,
    /// not into the full-precision base.
    #[arg(long)]
    pub as_trained: bool,
    /// The GGUF's tensor type: f32, f16, q8_0, q4_0 or q4k.
    #[arg(long, default_value = "f16")]
    pub quant: GgufQuant,
    /// Shard the merged folder's safetensors above this many bytes.
    #[arg(long, default_value_t = export::hf::DEFAULT_SHARD_BYTES)]
    pub max_shard_bytes: u64,
    /// A folder (or, with one of --gguf / --gguf-lora, a .gguf file).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        "f32" => Ok(DType::F32),
        _ => Err(format!("{s:?}: expected bf16, f16 or f32")),
    }
}

pub fn run(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let req = export::Request {
        source: a.source.clone(),
        model: a.model.clone(),
        merge: a.merge,
        gguf: a.gguf,
        gguf_lora: a.gguf_lora,
        dtype: a.dtype,
        as_trained: a.as_trained,
        quant: a.quant,
        max_shard_bytes: a.max_shard_bytes,
        output: a.output.clone(),
    };
    let root = tunelab::runs::runs_root(&Paths::resolve().data);
    let mut shown = Shown::default();
    let outcome = export::export(&req, &root, &mut |p| shown.show(p));
    shown.finish();
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.details)?);
    } else {
        for (what, path) in &report.written {
            println!("{what:<10} {}", path.display());
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// What `tunelab export` shows as it goes: each step as a line on stderr, and on a terminal a
/// bar per file while its tensors are written (piped, the lines alone).
#[derive(Default)]
struct Shown {
    /// The file whose tensors the bar counts, and the bar.
    bar: Option<(PathBuf, indicatif::ProgressBar)>,
}

impl Shown {
    fn show(&mut self, p: export::Progress) {
        match p {
            export::Progress::Step(line) => {
                self.finish();
                eprintln!("{line}");
            }
            export::Progress::Tensors { file, done, total } => {
                if self.bar.as_ref().is_none_or(|(f, _)| *f != file) {
                    self.finish();
                    let name = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.bar = super::progress::bar(total as u64, &format!("{name} tensors"))
                        .map(|b| (file, b));
                }
                if let Some((_, b)) = &self.bar {
                    b.set_position(done as u64);
                }
            }
        }
    }

    /// Leaves the finished file's bar on screen, full, above what comes next.
    fn finish(&mut self) {
        if let Some((_, b)) = self.bar.take() {
            b.finish();
        }
    }
}
