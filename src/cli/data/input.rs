//! What every `data` command reads: the input file and its format, the tokenizer options, and
//! the errors that make an input unusable.

use crate::cli::exit;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::convert::OnError;
use tunelab::data::scan::Lengths;
use tunelab::data::{DataError, Dataset, Format};
use tunelab::template::{Encoder, LengthPolicy, TemplateChoice, TemplateError, TrainOn};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A model or tokenizer folder (tokenizer.json, tokenizer_config.json).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca, qwen3,
    /// gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// Which tokens are trained: assistant, answers (assistant turns without their reasoning),
    /// last_assistant or all.
    #[arg(long, default_value = "assistant", value_parser = parse_train_on)]
    pub train_on: TrainOn,
    /// The sequence length to check examples against.
    #[arg(long, default_value_t = 2048)]
    pub max_seq_len: usize,
    /// What happens to longer examples: truncate or drop.
    #[arg(long, default_value = "truncate", value_parser = parse_length_policy)]
    pub length_policy: LengthPolicy,
    /// Preference pairs: prompts keep their last this many tokens (completions are cut to
    /// --max-seq-len), as `data.max_prompt_len` does in training.
    #[arg(long, default_value_t = 512)]
    pub max_prompt_len: usize,
    /// Tool calls and definitions the template cannot render: template (fail), json (as
    /// <tool_call> text) or drop (leave the records out).
    #[arg(long, default_value = "template")]
    pub tool_format: tunelab::template::ToolFormat,
    /// An extra chat-template argument, KEY=VALUE with VALUE as JSON or plain text
    /// (`enable_thinking=false`), as `data.template_kwargs` passes it; repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = crate::cli::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
}

pub(super) fn parse_train_on(s: &str) -> Result<TrainOn, String> {
    s.parse()
}

pub(super) fn parse_length_policy(s: &str) -> Result<LengthPolicy, String> {
    s.parse()
}

impl TokenArgs {
    pub(super) fn encoder(&self) -> Option<Result<Encoder, TemplateError>> {
        let model = self.model.as_ref()?;
        let tok = match tunelab::model::source::load_tokenizer(model) {
            Ok(t) => t,
            Err(e) => return Some(Err(TemplateError::NoTemplate(e.to_string()))),
        };
        Some(
            Encoder::new(tok, &TemplateChoice::parse(&self.template), self.train_on).map(|e| {
                e.with_tool_format(self.tool_format)
                    .with_template_kwargs(self.template_kwargs.iter().cloned().collect())
            }),
        )
    }
}

#[derive(Debug, Args)]
pub struct Input {
    /// A .json, .jsonl or .parquet dataset file.
    pub file: PathBuf,
    /// The format: `auto` detects it from the first records.
    #[arg(long, default_value = "auto", value_parser = parse_format_or_auto)]
    pub format: FormatChoice,
}

/// `auto`, or a named format.
#[derive(Debug, Clone, Copy)]
pub struct FormatChoice(pub Option<Format>);

pub(super) fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

pub(super) fn parse_format_or_auto(s: &str) -> Result<FormatChoice, String> {
    if s == "auto" {
        Ok(FormatChoice(None))
    } else {
        s.parse().map(|f| FormatChoice(Some(f)))
    }
}

pub(super) fn parse_on_error(s: &str) -> Result<OnError, String> {
    s.parse()
}

pub(super) fn open(input: &Input) -> Result<Dataset, DataError> {
    Dataset::open(&input.file, input.format.0)
}

/// Prints a file-level error and returns the "unusable" exit code.
pub(super) fn unusable(e: &DataError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(exit::UNUSABLE)
}

pub(super) fn summary_json(l: &Lengths) -> Value {
    serde_json::to_value(l.summary()).unwrap_or(Value::Null)
}
