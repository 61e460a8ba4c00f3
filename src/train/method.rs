//! A training method as one unit: the items it trains on, how a dataset becomes them (and
//! what was left out), its held-out split, the prompts the run answers at each evaluation,
//! and the [`Objective`] it builds. [`build`] is the one pipeline every method goes through
//! (encode, split, samples, build); the trainer only picks the method.

use super::error::TrainError;
use super::objective::Objective;
use crate::batch::{self, DatasetError, EncodeReport};
use crate::config::RunConfig;
use crate::model::Model;
use crate::template::Encoder;
use std::path::Path;

/// A prompt the trainer answers greedily at every evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePrompt {
    /// What the user asked (shown beside the reply).
    pub text: String,
    /// The prompt as the model sees it, generation prompt included.
    pub ids: Vec<u32>,
    /// The reply the data holds for it (token ids; empty for a configured prompt): the
    /// reference of an `eval.tasks` entry with `generate: held_out`.
    pub reply: Vec<u32>,
}

/// What a method prepares from: the run's config, the model with its adapter, the encoder.
pub struct Setup<'a> {
    pub cfg: &'a RunConfig,
    pub model: &'a Model,
    pub encoder: &'a Encoder,
}

/// A method's data and objective. The type is the method's objective; the trainer builds
/// it through [`build`].
pub trait TrainingMethod: Objective + Sized + 'static {
    /// What the method trains on: an example to imitate, a pair, a rated completion.
    type Item;

    /// The items of the dataset file at `path`, and what encoding left out.
    fn encode(s: &Setup, path: &Path) -> Result<(Vec<Self::Item>, EncodeReport), TrainError>;

    /// Training and held-out items when the config names no eval file: `data.eval_split`
    /// of them, chosen with the run's seed.
    fn split(s: &Setup, items: Vec<Self::Item>) -> (Vec<Self::Item>, Vec<Self::Item>) {
        batch::split(items, s.cfg.data.eval_split, s.cfg.train.seed)
    }

    /// The prompt of a held-out item, to answer at every evaluation when the config names
    /// none; `None` for an item that does not make a sample.
    fn sample(item: &Self::Item) -> Option<SamplePrompt>;

    /// The objective over the training and held-out items.
    fn build(s: &Setup, train: Vec<Self::Item>, eval: Vec<Self::Item>) -> Result<Self, TrainError>;
}

/// How pairs and rated completions are encoded (`batch::pairs::encode_pairs`,
/// `batch::rated::encode_rated`): file, format, encoder, prompt and sequence limits.
pub type PromptedEncoder<T> =
    fn(&Path, &str, &Encoder, usize, usize) -> Result<(Vec<T>, EncodeReport), DatasetError>;

/// The items of the file at `path` encoded by `encode` under the run's format and limits.
pub fn encode_prompted<T>(
    s: &Setup,
    path: &Path,
    encode: PromptedEncoder<T>,
) -> Result<(Vec<T>, EncodeReport), TrainError> {
    let d = &s.cfg.data;
    Ok(encode(
        path,
        &d.format,
        s.encoder,
        d.max_prompt_len,
        d.max_seq_len,
    )?)
}

/// What [`build`] makes of a run's data.
pub struct Built {
    pub objective: Box<dyn Objective>,
    /// What encoding left out (length, tool policy), both files together.
    pub report: EncodeReport,
    pub samples: Vec<SamplePrompt>,
    /// Every held-out item's prompt and reply (`generate: held_out` tasks answer them).
    pub held_out: Vec<SamplePrompt>,
}

/// The pipeline of every method: encode the training file (and the eval file, or split the
/// training items), pick the sample prompts, build the objective.
pub fn build<M: TrainingMethod>(s: &Setup) -> Result<Built, TrainError> {
    let (train, eval, report) = items::<M>(s)?;
    let held_out: Vec<SamplePrompt> = eval.iter().filter_map(M::sample).collect();
    let samples = if s.cfg.samples.prompts.is_empty() {
        held_out.iter().take(s.cfg.samples.count).cloned().collect()
    } else {
        configured_samples(s)
    };
    Ok(Built {
        objective: Box::new(M::build(s, train, eval)?),
        report,
        samples,
        held_out,
    })
}

/// Training and held-out items, and what encoding left out of both.
type Items<T> = (Vec<T>, Vec<T>, EncodeReport);

/// The training file encoded, and the eval file (or the training items split).
fn items<M: TrainingMethod>(s: &Setup) -> Result<Items<M::Item>, TrainError> {
    let d = &s.cfg.data;
    let (items, mut report) = M::encode(s, Path::new(&d.train))?;
    let (train, mut eval, report) = match &d.eval {
        Some(path) => {
            let (eval, r) = M::encode(s, Path::new(path))?;
            report += r;
            (items, eval, report)
        }
        None => {
            let (train, eval) = M::split(s, items);
            (train, eval, report)
        }
    };
    if d.eval_max > 0 {
        eval.truncate(d.eval_max);
    }
    Ok((train, eval, report))
}

/// The held-out prompts and replies a run of this config evaluates on, split as its
/// trainer splits them (`runs compare` scores `generate: held_out` tasks on them).
pub fn held_out<M: TrainingMethod>(s: &Setup) -> Result<Vec<SamplePrompt>, TrainError> {
    let (_, eval, _) = items::<M>(s)?;
    Ok(eval.iter().filter_map(M::sample).collect())
}

/// The configured sample prompts, rendered with the chat template.
fn configured_samples(s: &Setup) -> Vec<SamplePrompt> {
    s.cfg
        .samples
        .prompts
        .iter()
        .filter_map(|text| {
            let messages = [serde_json::json!({"role": "user", "content": text})];
            let rendered = s
                .encoder
                .render(&messages, None, true)
                .unwrap_or_else(|_| text.clone());
            let ids = s.encoder.tokenizer.encode(&rendered, false).ok()?.ids;
            Some(SamplePrompt {
                text: text.clone(),
                ids,
                reply: Vec::new(),
            })
        })
        .collect()
}
