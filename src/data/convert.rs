//! Streaming conversion between formats, with a report of what could not be carried.

use super::error::DataError;
use super::format::{Format, Notes};
use super::problem::Problem;
use super::record::Kind;
use super::writer::RecordWriter;
use super::Dataset;
use std::path::Path;

/// What to do with a record that cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop and write nothing.
    #[default]
    Fail,
    /// Leave the record out and report it.
    Skip,
}

impl std::str::FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(OnError::Fail),
            "skip" => Ok(OnError::Skip),
            _ => Err(format!("unknown --on-error {s:?}; expected fail or skip")),
        }
    }
}

/// Skipped problems kept in full in a report; the rest are only counted.
pub const MAX_LISTED: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct ConvertReport {
    pub read: u64,
    pub written: u64,
    pub skipped: u64,
    /// The first problems of skipped records, with their locations.
    pub problems: Vec<Problem>,
    pub notes: Notes,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Data(#[from] DataError),
    /// A record failed under `--on-error fail`; nothing was written.
    #[error("{}: {problem}; nothing was written (use --on-error skip to leave such records out)", path.display())]
    Record {
        path: std::path::PathBuf,
        problem: Problem,
    },
    #[error("cannot convert {from} ({from_kind} data) to {to} ({to_kind} data)")]
    Incompatible {
        from: Format,
        from_kind: Kind,
        to: Format,
        to_kind: Kind,
    },
}

/// True when records of `from` can be written as `to` (preference data can also become SFT).
pub fn compatible(from: Kind, to: Kind) -> bool {
    from == to || (from == Kind::Preference && to == Kind::Sft)
}

/// Converts `dataset` into `output` as `to`.
pub fn convert(
    dataset: &Dataset,
    output: &Path,
    to: Format,
    on_error: OnError,
) -> Result<ConvertReport, ConvertError> {
    if !compatible(dataset.kind(), to.kind()) {
        return Err(ConvertError::Incompatible {
            from: dataset.format,
            from_kind: dataset.kind(),
            to,
            to_kind: to.kind(),
        });
    }
    let mut writer = RecordWriter::create(output)?;
    let mut report = ConvertReport::default();
    let path = &dataset.file.path;
    for item in dataset.items()? {
        let item = item?;
        report.read += 1;
        let problems = match item.result {
            Ok(record) => {
                let mut notes = Notes::default();
                match to.write(&record, &mut notes) {
                    Ok(obj) => {
                        writer.write(&obj)?;
                        report.notes.merge(notes);
                        continue;
                    }
                    Err(message) => vec![Problem {
                        location: item.location,
                        field: String::new(),
                        message,
                    }],
                }
            }
            Err(problems) => problems,
        };
        if on_error == OnError::Fail {
            let problem = problems.into_iter().next().unwrap_or(Problem {
                location: item.location,
                field: String::new(),
                message: "unreadable record".into(),
            });
            return Err(ConvertError::Record {
                path: path.clone(),
                problem,
            });
        }
        report.skipped += 1;
        for p in problems {
            if report.problems.len() < MAX_LISTED {
                report.problems.push(p);
            }
        }
    }
    report.written = writer.finish()?;
    Ok(report)
}
