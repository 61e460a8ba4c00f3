//! The dataset layer: files → raw JSON objects → canonical records, with detection,
//! validation, conversion and statistics. It streams, so file size does not bound memory.

pub mod container;
pub mod convert;
pub mod detect;
pub mod error;
pub mod format;
pub mod parallel;
pub mod preview;
pub mod problem;
pub mod pull;
pub mod record;
pub mod scan;
pub mod validate;
pub mod writer;

pub use container::{Container, DatasetFile};
pub use error::DataError;
pub use format::{Format, Notes};
pub use preview::Preview;
pub use problem::{Location, Problem};
pub use record::{
    messages_json, Body, Conversation, Kind, Message, PreferencePair, Record, Role, ToolCall,
};

use problem::Issues;
use std::path::Path;

/// A dataset file with its format decided.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub file: DatasetFile,
    pub format: Format,
    /// Why this format: detection's evidence, or "given with --format".
    pub evidence: String,
}

/// One record read from a dataset: the canonical record, or every problem it has.
#[derive(Debug, Clone)]
pub struct Item {
    pub location: Location,
    pub result: Result<Record, Vec<Problem>>,
}

impl Dataset {
    /// Opens `path` and detects its format unless `format` is given.
    pub fn open(path: impl AsRef<Path>, format: Option<Format>) -> Result<Self, DataError> {
        let file = DatasetFile::open(path)?;
        if let Some(format) = format {
            return Ok(Dataset {
                file,
                format,
                evidence: "given with --format".into(),
            });
        }
        let mut sample = Vec::new();
        for raw in file.records()?.take(detect::SAMPLE) {
            let raw = raw?;
            let location = raw.location.to_string();
            if let Ok(obj) = raw.value() {
                sample.push((location, obj));
            }
        }
        let detection =
            detect::detect(sample.iter().map(|(l, o)| (l.clone(), o))).map_err(|message| {
                DataError::Detect {
                    path: file.path.clone(),
                    message,
                }
            })?;
        Ok(Dataset {
            file,
            format: detection.format,
            evidence: detection.evidence,
        })
    }

    pub fn kind(&self) -> Kind {
        self.format.kind()
    }

    /// Streams every record, read and validated. An `Err` item is fatal for the file.
    pub fn items(&self) -> Result<impl Iterator<Item = Result<Item, DataError>> + Send, DataError> {
        let format = self.format;
        Ok(self.file.records()?.map(move |raw| {
            let raw = raw?;
            let location = raw.location;
            Ok(Item {
                location,
                result: read_record(format, location, raw.value()),
            })
        }))
    }
}

/// Reads and checks one raw object as `format`.
pub fn read_record(
    format: Format,
    location: Location,
    raw: Result<serde_json::Map<String, serde_json::Value>, String>,
) -> Result<Record, Vec<Problem>> {
    let obj = raw.map_err(|message| {
        vec![Problem {
            location,
            field: String::new(),
            message,
        }]
    })?;
    let mut issues = Issues::default();
    let record = format.read(&obj, &mut issues);
    if let Some(r) = &record {
        validate::check(r, &mut issues);
    }
    match record {
        Some(r) if issues.is_empty() => Ok(r),
        _ => Err(issues.into_problems(location)),
    }
}
