//! A set of evaluation tasks (`eval.tasks` of a run config, or what `runs compare` and the
//! Eval view are asked for), loaded once and run on any model: the trainer runs them at
//! each evaluation, comparisons run them on the base and on each adapter. Every number
//! carries its standard error where one exists, so a difference can be told from noise.

use super::choice;
use super::choice::score::mean_and_stderr;
use super::generate::{self, GenerateError};
use super::metrics::{self, NamedRegex, Pair};
use crate::config::eval_tasks::{EvalSection, TaskKind, HELD_OUT};
use crate::infer::sampling::Sampling;
use crate::model::Model;
use crate::template::{Encoder, TemplateError, TextTokenizer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sources are boxed: this error travels inside the trainer's and comparisons' errors, and
/// a small one keeps every `Result` of theirs small.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    #[error("eval.tasks[{index}] ({name}): {source}")]
    Choice {
        index: usize,
        name: String,
        #[source]
        source: Box<choice::ChoiceError>,
    },
    #[error("eval.tasks[{index}] ({name}): {source}")]
    Generate {
        index: usize,
        name: String,
        #[source]
        source: Box<GenerateError>,
    },
    #[error("eval.tasks[{index}] ({name}): `held_out` needs a held-out split (data.eval or data.eval_split > 0), and this run has none")]
    NoHeldOut { index: usize, name: String },
    #[error("eval.tasks[{index}] ({name}): {message}")]
    Invalid {
        index: usize,
        name: String,
        message: String,
    },
    #[error("eval.tasks[{index}] ({name}): {source}")]
    Template {
        index: usize,
        name: String,
        #[source]
        source: Box<TemplateError>,
    },
    /// [`Tasks::run_unless`]'s stop flag was set.
    #[error("stopped")]
    Stopped,
}

/// A prompt already in token ids, with what was asked and the reply the data holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub question: String,
    pub ids: Vec<u32>,
    pub reference: String,
}

/// Tokens per answer when a generation task does not say.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 64;

/// Tasks ready to run.
#[derive(Default)]
pub struct Tasks {
    items: Vec<Loaded>,
}

struct Loaded {
    prefix: String,
    work: Work,
}

enum Work {
    Bench {
        task: Box<choice::Task>,
        opts: choice::BenchOptions,
    },
    Generate {
        prompts: Vec<Tokenized>,
        sampling: Sampling,
        regexes: Vec<NamedRegex>,
    },
}

/// One number a task measured, with its standard error (`None` for corpus-level scores).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    pub key: String,
    pub value: f64,
    pub stderr: Option<f64>,
    pub n: usize,
    /// A share of items scored 0 or 1 (accuracy, exact match, a regex rate): its interval
    /// is Wilson's, which stays honest at 0 and 1 where a standard error is 0.
    pub proportion: bool,
}

/// One answer of a generation task, for browsing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answered {
    pub task: String,
    pub question: String,
    pub prediction: String,
    pub reference: String,
}

/// What running the tasks on one model gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub measures: Vec<Measure>,
    pub answers: Vec<Answered>,
}

impl Outcome {
    /// The values by key, as `eval` events carry them.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.measures
            .iter()
            .map(|m| (m.key.clone(), m.value))
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.key == key)
    }
}

/// Where a task run stands: which task, how many of its items are done.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress<'a> {
    pub task: &'a str,
    pub done: usize,
    pub total: usize,
}

impl Tasks {
    /// Loads every task of `section`: multiple-choice files (or hub ids) are read,
    /// generation prompts tokenized with `encoder`; `held_out` takes `held_out`'s prompts.
    pub fn load(
        section: &EvalSection,
        encoder: &Encoder,
        held_out: &[Tokenized],
    ) -> Result<Tasks, TasksError> {
        let mut items = Vec::new();
        for (index, t) in section.tasks.iter().enumerate() {
            let name = t.display_name();
            let Some((kind, src)) = t.source() else {
                return Err(TasksError::Invalid {
                    index,
                    name,
                    message: "needs exactly one of `bench:` and `generate:`".into(),
                });
            };
            let work = match kind {
                TaskKind::Bench => {
                    let task = choice::load_task(src, &choice::TaskOptions::default()).map_err(
                        |source| TasksError::Choice {
                            index,
                            name: name.clone(),
                            source: Box::new(source),
                        },
                    )?;
                    Work::Bench {
                        task: Box::new(task),
                        opts: choice::BenchOptions {
                            num_fewshot: t.num_fewshot,
                            limit: t.limit,
                            ..Default::default()
                        },
                    }
                }
                TaskKind::Generate => {
                    let prompts = if src == HELD_OUT {
                        if held_out.is_empty() {
                            return Err(TasksError::NoHeldOut { index, name });
                        }
                        held_out
                            .iter()
                            .take(t.limit.unwrap_or(usize::MAX))
                            .cloned()
                            .collect()
                    } else {
                        file_prompts(Path::new(src), t.limit, encoder).map_err(|e| match e {
                            FileError::Generate(source) => TasksError::Generate {
                                index,
                                name: name.clone(),
                                source: Box::new(source),
                            },
                            FileError::Template(source) => TasksError::Template {
                                index,
                                name: name.clone(),
                                source: Box::new(source),
                            },
                        })?
                    };
                    let mut regexes = Vec::new();
                    for (rname, pattern) in &t.regex {
                        let regex =
                            regex::Regex::new(pattern).map_err(|e| TasksError::Invalid {
                                index,
                                name: name.clone(),
                                message: format!("regex.{rname}: {e}"),
                            })?;
                        regexes.push(NamedRegex {
                            name: rname.clone(),
                            regex,
                        });
                    }
                    Work::Generate {
                        prompts,
                        sampling: Sampling {
                            max_new_tokens: t.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
                            ..Default::default()
                        },
                        regexes,
                    }
                }
            };
            items.push(Loaded {
                prefix: t.prefix(),
                work,
            });
        }
        Ok(Tasks { items })
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items in all tasks (choices are not counted), for a progress bar's length.
    pub fn total_items(&self) -> usize {
        self.items
            .iter()
            .map(|l| match &l.work {
                Work::Bench { task, opts } => opts
                    .limit
                    .map_or(task.items.len(), |n| n.min(task.items.len())),
                Work::Generate { prompts, .. } => prompts.len(),
            })
            .sum()
    }

    /// Runs every task on `model` (its adapter on, if any). `progress` hears each task's
    /// progress; generation answers one prompt at a time.
    pub fn run(
        &self,
        model: &Model,
        tok: &TextTokenizer,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Outcome, TasksError> {
        self.run_unless(model, tok, progress, &AtomicBool::new(false))
    }

    /// [`Tasks::run`], ending with [`TasksError::Stopped`] once `stop` is set: checked
    /// before each task and each generation prompt (a multiple-choice task's batches run
    /// to its end), so a comparison in the workbench stops within one answer.
    pub fn run_unless(
        &self,
        model: &Model,
        tok: &TextTokenizer,
        progress: &mut dyn FnMut(Progress),
        stop: &AtomicBool,
    ) -> Result<Outcome, TasksError> {
        let stopped = || stop.load(Ordering::Relaxed);
        let mut out = Outcome::default();
        for (index, l) in self.items.iter().enumerate() {
            if stopped() {
                return Err(TasksError::Stopped);
            }
            let name = l.prefix.as_str();
            match &l.work {
                Work::Bench { task, opts } => {
                    let r = choice::score(model, tok, task, opts, |done, total| {
                        progress(Progress {
                            task: name,
                            done,
                            total,
                        })
                    })
                    .map_err(|source| TasksError::Choice {
                        index,
                        name: name.to_string(),
                        source: Box::new(source),
                    })?;
                    let n = r.items;
                    out.measures.push(Measure {
                        key: format!("{name}/acc"),
                        value: r.acc,
                        stderr: r.acc_stderr,
                        n,
                        proportion: true,
                    });
                    out.measures.push(Measure {
                        key: format!("{name}/acc_norm"),
                        value: r.acc_norm,
                        stderr: r.acc_norm_stderr,
                        n,
                        proportion: true,
                    });
                }
                Work::Generate {
                    prompts,
                    sampling,
                    regexes,
                } => {
                    let total = prompts.len();
                    let mut pairs = Vec::with_capacity(total);
                    for (i, p) in prompts.iter().enumerate() {
                        if stopped() {
                            return Err(TasksError::Stopped);
                        }
                        let g = generate::continue_ids(model, tok, &p.ids, sampling).map_err(
                            |message| TasksError::Generate {
                                index,
                                name: name.to_string(),
                                source: Box::new(GenerateError::Generation {
                                    location: format!("prompt {}", i + 1),
                                    message,
                                }),
                            },
                        )?;
                        out.answers.push(Answered {
                            task: name.to_string(),
                            question: p.question.clone(),
                            prediction: g.text.clone(),
                            reference: p.reference.clone(),
                        });
                        pairs.push(Pair {
                            prediction: g.text,
                            reference: p.reference.clone(),
                        });
                        progress(Progress {
                            task: name,
                            done: i + 1,
                            total,
                        });
                    }
                    out.measures
                        .extend(generation_measures(name, &pairs, regexes));
                }
            }
        }
        Ok(out)
    }
}

/// The generation metrics of `pairs` under `prefix`: per-answer means with their standard
/// errors, corpus BLEU and chrF without one, and each regex's match rate.
fn generation_measures(prefix: &str, pairs: &[Pair], regexes: &[NamedRegex]) -> Vec<Measure> {
    let s = metrics::score(pairs, regexes);
    let n = s.n;
    let per = |f: &dyn Fn(&Pair) -> f64| -> Option<f64> {
        let xs: Vec<f64> = pairs.iter().map(f).collect();
        mean_and_stderr(&xs).1
    };
    let mut out = vec![
        (
            "exact_match",
            s.exact_match,
            per(&|p| metrics::exact_match(&p.prediction, &p.reference)),
        ),
        (
            "f1",
            s.f1,
            per(&|p| metrics::f1(&p.prediction, &p.reference)),
        ),
        (
            "rougeL",
            s.rouge_l,
            per(&|p| metrics::rouge_l(&p.prediction, &p.reference)),
        ),
        ("bleu", s.bleu, None),
        ("chrf", s.chrf, None),
        ("mean_length", s.mean_length, None),
    ]
    .into_iter()
    .map(|(k, value, stderr)| Measure {
        key: format!("{prefix}/{k}"),
        value,
        stderr,
        n,
        proportion: k == "exact_match",
    })
    .collect::<Vec<_>>();
    for r in regexes {
        let hits: Vec<f64> = pairs
            .iter()
            .map(|p| f64::from(u8::from(r.regex.is_match(&p.prediction))))
            .collect();
        out.push(Measure {
            key: format!("{prefix}/{}", r.name),
            value: s.regex.get(&r.name).copied().unwrap_or(0.0),
            stderr: mean_and_stderr(&hits).1,
            n,
            proportion: true,
        });
    }
    out
}

enum FileError {
    Generate(GenerateError),
    Template(TemplateError),
}

/// The prompts of a dataset file, tokenized with the run's template.
fn file_prompts(
    path: &Path,
    limit: Option<usize>,
    encoder: &Encoder,
) -> Result<Vec<Tokenized>, FileError> {
    let ps = generate::prompts(path, limit).map_err(FileError::Generate)?;
    ps.items
        .iter()
        .map(|p| {
            Ok(Tokenized {
                question: p.question(),
                ids: p.ids(encoder).map_err(FileError::Template)?,
                reference: p.reference.clone(),
            })
        })
        .collect()
}
