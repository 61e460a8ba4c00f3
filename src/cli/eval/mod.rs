//! `tunelab eval`: did the fine-tune work? With no subcommand, the loss and perplexity of a
//! dataset (or the DPO-family and KTO losses of preference data); `bench` scores
//! multiple-choice tasks by log-likelihood, `generate` answers held-out prompts and scores
//! them against references, `score` scores a predictions file, `judge` has an LLM compare
//! two sides.

mod bench;
mod generate;
mod grpo;
mod judge;
mod loss;
mod score;

use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    #[command(flatten)]
    pub loss: loss::LossArgs,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Multiple-choice benchmarks (MMLU, ARC, HellaSwag layouts or your own file), scored
    /// by log-likelihood as lm-evaluation-harness scores them: acc and acc_norm.
    Bench(bench::BenchArgs),
    /// Answers every prompt of a dataset and scores the answers against its references
    /// (exact match, F1, ROUGE, BLEU, chrF, regex rates); writes the predictions.
    Generate(generate::GenerateArgs),
    /// Scores a predictions file (`prediction` and `reference` per line), no model.
    Score(score::ScoreArgs),
    /// An LLM judge compares two sides (base or adapters) on every prompt, both orders.
    Judge(judge::JudgeArgs),
}

pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        None => loss::run(a.loss),
        Some(EvalCommand::Bench(b)) => bench::run(b),
        Some(EvalCommand::Generate(g)) => generate::run(g),
        Some(EvalCommand::Score(s)) => score::run(s),
        Some(EvalCommand::Judge(j)) => judge::run(j),
    }
}
