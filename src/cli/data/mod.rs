//! `tunelab data …`: inspect, validate, convert, stats, formats, synth and pull.

mod convert;
mod input;
mod inspect;
mod preview;
mod pull;
mod stats;
mod synth;

use super::exit;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::convert::OnError;
use tunelab::data::Format;

use convert::*;
use input::*;
use inspect::*;
use preview::*;
use pull::*;
use stats::*;
use synth::synth;
pub use synth::SynthArgs;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Show the format, kind, counts, lengths and the first records.
    Inspect {
        #[command(flatten)]
        input: Input,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// How many records to show.
        #[arg(short = 'n', long, default_value_t = 3)]
        samples: usize,
    },
    /// Check every record; exit 0 when clean, 1 with problems, 2 when unreadable.
    Validate {
        #[command(flatten)]
        input: Input,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Print at most this many problems (all are counted).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Convert to another format (.json writes an array, .jsonl JSON Lines); exit 1 when a
    /// bad record stops it, 2 when the input is unreadable.
    Convert {
        #[command(flatten)]
        input: Input,
        /// The target format.
        #[arg(long, value_parser = parse_format)]
        to: Format,
        /// The output file; written atomically.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// `fail` writes nothing if any record is bad; `skip` leaves bad records out.
        #[arg(long, default_value = "fail", value_parser = parse_on_error)]
        on_error: OnError,
    },
    /// Per-field length distributions and duplicate records; with --model, token counts too.
    Stats {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        tokens: TokenArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show exactly which tokens a model trains on: the rendered chat template with trained
    /// spans highlighted (⟦marked⟧ when NO_COLOR is set or output is not a terminal).
    Preview {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        tokens: TokenArgs,
        /// How many records to show.
        #[arg(short = 'n', long, default_value_t = 3)]
        samples: usize,
        /// One JSON object per example (input_ids and labels, -100 where masked).
        #[arg(long)]
        json: bool,
    },
    /// List the supported formats and their record shapes.
    Formats,
    /// Write SFT records or preference pairs with a strong model (Anthropic or any
    /// OpenAI-compatible server) from seed topics or prompts and a persona. Appends to a
    /// .jsonl output and resumes where a killed run stopped; exit 0 when the output holds -n
    /// records, 1 when some could not be made, 2 when the input or the provider is unusable.
    Synth(SynthArgs),
    /// Download a Hugging Face dataset's data files (.parquet, .jsonl, .json) through the hub
    /// cache into a folder, then inspect them. Offline (HF_HUB_OFFLINE=1, or no network) it
    /// uses the cached snapshot.
    Pull {
        /// The dataset, OWNER/NAME.
        id: String,
        /// Only this split's files (train, test, validation, …); default every data file.
        #[arg(long)]
        split: Option<String>,
        /// A branch, tag or commit (default main).
        #[arg(long)]
        revision: Option<String>,
        /// The folder the files go into (their repository paths kept).
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Hard-link the cached files instead of copying them (an in-place edit then
        /// changes the cache too).
        #[arg(long)]
        link: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Inspect {
            input,
            json,
            samples,
        } => inspect(&input, json, samples),
        DataCommand::Validate { input, json, limit } => validate(&input, json, limit),
        DataCommand::Convert {
            input,
            to,
            output,
            on_error,
        } => convert_cmd(&input, to, &output, on_error),
        DataCommand::Stats {
            input,
            tokens,
            json,
        } => stats(&input, &tokens, json),
        DataCommand::Preview {
            input,
            tokens,
            samples,
            json,
        } => preview(&input, &tokens, samples, json),
        DataCommand::Synth(args) => synth(args),
        DataCommand::Pull {
            id,
            split,
            revision,
            output,
            link,
            json,
        } => pull(id, split, revision, output, link, json),
        DataCommand::Formats => {
            for f in Format::all() {
                println!("{:<20} {:<11} {}", f.name(), f.kind().as_str(), f.shape());
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}
