//! Did the fine-tune work? Loss and perplexity on a dataset (`loss`), multiple-choice
//! benchmarks scored by log-likelihood as lm-evaluation-harness scores them (`choice`),
//! answers generated for held-out prompts (`generate`) and scored against references
//! (`metrics`), and a pairwise LLM judge of two sides (`judge`).

pub mod choice;
pub mod compare;
pub mod generate;
pub mod judge;
pub mod loss;
pub mod metrics;
pub mod tasks;

pub use loss::{
    evaluate, row_logps, sequence_loss, sequence_loss_with, target_logps, token_logps, EvalError,
    EvalResult,
};
