//! The demo workspace: on first start tunelab writes a tiny model, the demo datasets and
//! nothing else into `<data>/demo/`, so every screen works offline on any machine.

use crate::model::tiny::{init_tiny, TinySpec};
use crate::model::ModelError;
use std::path::{Path, PathBuf};

/// The persona SFT set (Captain Byte; see scripts/make_demo_data.py).
pub const PERSONA_SFT: &str = include_str!("../../demo/persona.jsonl");
/// The same topics as preference pairs (chosen: the persona, rejected: a bland answer).
pub const PERSONA_DPO: &str = include_str!("../../demo/persona_dpo.jsonl");
/// The pairs as rated completions for KTO (`tunelab data convert persona_dpo.jsonl --to kto`).
pub const PERSONA_KTO: &str = include_str!("../../demo/persona_kto.jsonl");
/// Every `a + b = ` up to 9 with its sum in an `answer` column: the prompts the tiny model
/// learns to answer with GRPO (scripts/make_grpo_demo_data.py).
pub const SUMS: &str = include_str!("../../demo/sums.jsonl");
/// GSM8K-style word problems with numeric answers, for GRPO on a real model.
pub const WORD_PROBLEMS: &str = include_str!("../../demo/word_problems.jsonl");
/// Forty easy general-knowledge questions (`question/choices/answer`) for `tunelab eval
/// bench`: a persona adapter should leave them as the base answers them, so a drop shows
/// what the fine-tune cost.
pub const GENERAL_KNOWLEDGE: &str = include_str!("../../demo/tasks/general_knowledge.jsonl");

/// Paths of the demo workspace under a data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demo {
    pub root: PathBuf,
}

impl Demo {
    pub fn new(data_dir: &Path) -> Self {
        Demo {
            root: data_dir.join("demo"),
        }
    }
    pub fn model(&self) -> PathBuf {
        self.root.join("tiny-model")
    }
    pub fn sft(&self) -> PathBuf {
        self.root.join("persona.jsonl")
    }
    pub fn dpo(&self) -> PathBuf {
        self.root.join("persona_dpo.jsonl")
    }
    pub fn kto(&self) -> PathBuf {
        self.root.join("persona_kto.jsonl")
    }
    /// GRPO's prompts for the tiny model. Named after the persona files, so the Data tab
    /// still opens on `persona.jsonl`.
    pub fn sums(&self) -> PathBuf {
        self.root.join("sums.jsonl")
    }
    pub fn word_problems(&self) -> PathBuf {
        self.root.join("word_problems.jsonl")
    }
    /// The multiple-choice task the demo's adapters are benchmarked on. In `tasks/`, which
    /// sorts after the persona files: the Data tab still opens on `persona.jsonl`.
    pub fn knowledge(&self) -> PathBuf {
        self.root.join("tasks").join("general_knowledge.jsonl")
    }

    /// Whether every part is there (a demo written by an older version may lack a dataset;
    /// [`Demo::ensure`] adds it).
    pub fn exists(&self) -> bool {
        self.model().join("model.safetensors").is_file()
            && [
                self.sft(),
                self.dpo(),
                self.kto(),
                self.sums(),
                self.word_problems(),
                self.knowledge(),
            ]
            .iter()
            .all(|p| p.is_file())
    }

    /// Writes whatever part of the demo is missing; returns whether anything was written.
    pub fn ensure(&self) -> Result<bool, ModelError> {
        let mut wrote = false;
        std::fs::create_dir_all(&self.root).map_err(|e| ModelError::io(&self.root, e))?;
        for (path, text) in [
            (self.sft(), PERSONA_SFT),
            (self.dpo(), PERSONA_DPO),
            (self.kto(), PERSONA_KTO),
            (self.sums(), SUMS),
            (self.word_problems(), WORD_PROBLEMS),
            (self.knowledge(), GENERAL_KNOWLEDGE),
        ] {
            if !path.is_file() {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
                }
                crate::files::write_atomic(&path, text.as_bytes())
                    .map_err(|e| ModelError::io(&path, e))?;
                wrote = true;
            }
        }
        if !self.model().join("model.safetensors").is_file() {
            init_tiny(&self.model(), &demo_model_spec())?;
            wrote = true;
        }
        Ok(wrote)
    }
}

/// The demo model: the default tiny shape with a tokenizer that also learned the persona's
/// words, so answers are short in tokens and a 600-step LoRA run can learn them.
pub fn demo_model_spec() -> TinySpec {
    let corpus: Vec<String> = PERSONA_SFT
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            r["messages"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .filter_map(|m| m["content"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        })
        .collect();
    TinySpec {
        vocab: 1024,
        extra_corpus: corpus.join("\n\n"),
        ..TinySpec::default()
    }
}
