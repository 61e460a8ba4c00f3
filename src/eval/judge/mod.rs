//! A pairwise LLM judge: two sides (the base model, or the base with an adapter) answer
//! every prompt of a dataset, and a strong model compares the answers, as MT-Bench's
//! pairwise judge does. Each item is judged twice with the answers swapped, and a side wins
//! only if it wins both orders, so the judge's taste for a position cannot make a winner;
//! a reply without a clear `[[A]]`, `[[B]]` or `[[C]]` is an error, counted and kept,
//! never guessed. Requests go through the synth module's client (its retries, pace and key
//! handling); verdicts are appended to a JSON Lines file as they arrive, so an interrupted
//! run resumes without asking again.
//!
//! - [`verdict`]: reading a reply's tag, combining both orders, the win rate and its
//!   interval.
//! - [`prompt`]: the items of a dataset, the rubric (and an adapter run's persona), the
//!   judge's request.
//! - [`output`]: the verdicts file, appended to and read back.
//! - [`run`]: the run itself, generation and judging overlapped on worker threads.

pub mod error;
pub mod output;
pub mod prompt;
pub mod run;
pub mod verdict;

pub use error::JudgeError;
pub use run::{check, judge, judge_unless, Event, Observer, Options, Report, Side, INTERVAL};
pub use verdict::{Outcome, Pick, Tag, Tally};
