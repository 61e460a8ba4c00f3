//! Multiple-choice benchmarks scored by log-likelihood, as lm-evaluation-harness scores
//! them (`output_type: multiple_choice`): every choice is a continuation of the item's
//! context, its score the summed log-probability of the continuation's tokens (tokenized as
//! `HFLM` tokenizes a pair: [`encode`]), `acc` the share of items whose best-scored choice
//! is the answer, `acc_norm` the same with each score divided by the choice's length in
//! characters (`completion_len`: the choice itself, without the delimiter), and both
//! standard errors lm-eval's (`mean_stderr`: the sample standard deviation over √n).
//! Numbers that equal lm-eval's are the point: a user compares a base and an adapter here
//! and a published leaderboard there.
//!
//! [`load_task`] reads a task (a file, a folder of splits or a hub dataset; layouts in
//! [`layout`]), [`score`] scores it on a model with or without an adapter. Neither prints;
//! `tunelab eval bench` and the run config's `eval.tasks` are shells over them.
//!
//! Speed: every choice of an item shares the item's context, and lm-eval runs each
//! (context, choice) pair as its own sequence. Here one row holds the context once and every
//! choice after it, each choice's tokens seeing the context and themselves only (a tree
//! mask, positions restarting after the context), and the model's head runs only at the
//! positions that score a token. The sums are the same sums; the context is computed once.

pub mod encode;
pub mod fewshot;
pub mod layout;
pub mod score;
pub mod task;

pub use encode::{encode_pair, Specials};
pub use layout::Layout;
pub use score::score;
pub use task::{load_task, read_items, TaskOptions};

use std::path::PathBuf;

/// One question: its full prompt, its choices and the index of the right one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// The prompt the choices continue (the layout's template applied, no few-shot).
    pub context: String,
    /// The choices as they are scored (each follows the context after the delimiter).
    pub choices: Vec<String>,
    /// The index of the right choice.
    pub answer: usize,
}

/// A benchmark: the items to score and where few-shot examples come from.
#[derive(Debug, Clone)]
pub struct Task {
    /// The file's stem, the folder's name or the hub id (with `:config`).
    pub name: String,
    pub layout: Layout,
    pub items: Vec<Item>,
    /// The split the items are (folders and hub datasets).
    pub split: Option<String>,
    /// The few-shot pool when it is another split (empty when it is the items).
    pub fewshot: Vec<Item>,
    /// The split few-shot examples come from.
    pub fewshot_split: Option<String>,
    /// Whether the items are their own few-shot pool (then an item never shows itself).
    pub fewshot_is_items: bool,
    /// The files the items were read from (none for a hub dataset's temporary copies).
    pub files: Vec<PathBuf>,
    /// What the user should know about how the task was found (a cached hub snapshot).
    pub notes: Vec<String>,
}

impl Task {
    /// A task of `items` that are their own few-shot pool.
    pub fn from_items(name: String, layout: Layout, items: Vec<Item>) -> Task {
        Task {
            name,
            layout,
            items,
            split: None,
            fewshot: Vec::new(),
            fewshot_split: None,
            fewshot_is_items: true,
            files: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn with_files(mut self, files: Vec<PathBuf>) -> Task {
        self.files = files;
        self
    }

    /// The examples few-shot contexts are drawn from.
    pub fn fewshot_pool(&self) -> &[Item] {
        if self.fewshot_is_items {
            &self.items
        } else {
            &self.fewshot
        }
    }
}

/// How to score a task. The defaults are lm-eval's.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Solved examples before each item.
    pub num_fewshot: usize,
    /// Score only the first this many items (few-shot examples still come from the whole
    /// pool, as lm-eval's `--limit`).
    pub limit: Option<usize>,
    /// The few-shot sampler's seed (lm-eval's `fewshot_random_seed`, 1234).
    pub seed: u64,
    /// Items per forward pass (all of an item's choices go in its row).
    pub batch_size: usize,
    /// Between a context and a choice (lm-eval's `target_delimiter`).
    pub target_delimiter: String,
    /// After each few-shot example (lm-eval's `fewshot_delimiter`).
    pub fewshot_delimiter: String,
    /// Tokens the model sees at most (a longer context loses its start, as in lm-eval);
    /// default the model's `max_position_embeddings`.
    pub max_length: Option<usize>,
    /// The special tokens contexts are encoded with (lm-eval's `add_bos_token`).
    pub specials: Specials,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            num_fewshot: 0,
            limit: None,
            seed: 1234,
            batch_size: 8,
            target_delimiter: " ".into(),
            fewshot_delimiter: "\n\n".into(),
            max_length: None,
            specials: Specials::Tokenizer,
        }
    }
}

/// One item's scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemScore {
    /// The item's index in the task.
    pub index: usize,
    /// Each choice's summed log-probability.
    pub loglikelihoods: Vec<f64>,
    /// The best-scored choice (the first of equals).
    pub pred: usize,
    /// The best choice by score per character.
    pub pred_norm: usize,
    pub answer: usize,
}

/// A task's accuracies; the standard errors are `None` under two items (lm-eval's sample
/// variance needs two).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchResult {
    pub acc: f64,
    pub acc_stderr: Option<f64>,
    pub acc_norm: f64,
    pub acc_norm_stderr: Option<f64>,
    pub items: usize,
    pub num_fewshot: usize,
    #[serde(skip)]
    pub per_item: Vec<ItemScore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    /// A record that is not a usable item: the file, its place, the field and why.
    #[error("{}: {location}: {}{message}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Record {
        file: PathBuf,
        location: String,
        field: String,
        message: String,
    },
    /// A file with no items, or one that cannot hold any.
    #[error("{}: {message}", file.display())]
    File { file: PathBuf, message: String },
    /// A file that cannot be opened or parsed (the message names it).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A hub dataset that cannot be found (the message names it).
    #[error(transparent)]
    Pull(#[from] crate::data::pull::PullError),
    /// A task spec that names nothing usable.
    #[error("{0}")]
    Spec(String),
    /// Options the task cannot satisfy (more few-shot examples than it has).
    #[error("{0}")]
    Options(String),
    #[error("item {item}: {source}")]
    Tokenize {
        item: usize,
        #[source]
        source: crate::template::TemplateError,
    },
    /// A continuation that does not fit the model's context even alone.
    #[error("item {item}, choice {choice}: its {tokens} tokens do not fit the model's {max_length}-token context")]
    TooLong {
        item: usize,
        choice: usize,
        tokens: usize,
        max_length: usize,
    },
    #[error("compute: {0}")]
    Compute(#[from] candle_core::Error),
}

impl ChoiceError {
    /// Whether the task's data is at fault (a bad record), not the command: the CLI's
    /// "problems" exit code.
    pub fn is_data_problem(&self) -> bool {
        matches!(
            self,
            ChoiceError::Record { .. }
                | ChoiceError::Data(crate::data::DataError::Malformed { .. })
        )
    }
}
