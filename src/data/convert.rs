//! Streaming conversion between formats, with a report of what could not be carried.
//! Records are parsed, converted and serialised in ordered batches on every core.

use super::container::RawRecord;
use super::error::DataError;
use super::format::{Format, Notes};
use super::problem::Problem;
use super::record::Kind;
use super::writer::RecordWriter;
use super::{parallel, read_record, Dataset};
use std::path::Path;

/// What to do with a record that cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
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
        crate::choice::parse("--on-error", s)
    }
}

/// Skipped problems kept in full in a report; the rest are only counted.
pub const MAX_LISTED: usize = 50;

/// Records per parallel batch: large enough to amortise thread start-up, small enough to
/// keep memory flat.
const BATCH: usize = 4096;

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

/// True when records of `from` can be written as `to`: preference pairs become SFT (the
/// chosen reply) or unpaired data (two rated completions), unpaired data becomes SFT (the
/// desirable completions) and SFT becomes unpaired data (every reply desirable).
pub fn compatible(from: Kind, to: Kind) -> bool {
    from == to
        || matches!(
            (from, to),
            (Kind::Preference, Kind::Sft)
                | (Kind::Preference, Kind::Unpaired)
                | (Kind::Unpaired, Kind::Sft)
                | (Kind::Sft, Kind::Unpaired)
        )
}

/// One record's outcome: its serialised output records (none, one or two) with notes, or
/// its problems.
type Outcome = Result<(Vec<Vec<u8>>, Notes), Vec<Problem>>;

fn convert_one(from: Format, to: Format, raw: RawRecord) -> Outcome {
    let location = raw.location;
    let record = read_record(from, location, raw.value())?;
    let mut notes = Notes::default();
    let problem = |message: String| {
        vec![Problem {
            location,
            field: String::new(),
            message,
        }]
    };
    let objs = to.write_records(&record, &mut notes).map_err(problem)?;
    let mut out = Vec::with_capacity(objs.len());
    for obj in objs {
        out.push(serde_json::to_vec(&obj).map_err(|e| problem(e.to_string()))?);
    }
    Ok((out, notes))
}

/// Converts `dataset` into `output` as `to`. `progress` hears the count of records read
/// after each batch, so a large file's conversion shows it is moving.
pub fn convert(
    dataset: &Dataset,
    output: &Path,
    to: Format,
    on_error: OnError,
    progress: &mut dyn FnMut(u64),
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
    let from = dataset.format;
    let threads = parallel::threads();
    let raws = dataset.file.records()?;
    // A reader thread splits records off the file while the workers convert the last batch.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<RawRecord>, Option<DataError>)>(2);
    let reader = std::thread::spawn(move || {
        let mut raws = raws;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            let mut fatal = None;
            for raw in raws.by_ref().take(BATCH) {
                match raw {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                }
            }
            let done = batch.is_empty() || fatal.is_some();
            if tx.send((batch, fatal)).is_err() || done {
                break;
            }
        }
    });
    let result = (|| {
        for (batch, fatal) in rx.iter() {
            let outcomes = parallel::map_ordered(batch, threads, |raw| convert_one(from, to, raw));
            for outcome in outcomes {
                report.read += 1;
                let problems = match outcome {
                    Ok((records, notes)) => {
                        for bytes in &records {
                            writer.write_serialized(bytes)?;
                        }
                        report.notes.merge(notes);
                        continue;
                    }
                    Err(problems) => problems,
                };
                if on_error == OnError::Fail {
                    if let Some(problem) = problems.into_iter().next() {
                        return Err(ConvertError::Record {
                            path: path.clone(),
                            problem,
                        });
                    }
                    continue;
                }
                report.skipped += 1;
                for p in problems {
                    if report.problems.len() < MAX_LISTED {
                        report.problems.push(p);
                    }
                }
            }
            progress(report.read);
            if let Some(e) = fatal {
                return Err(e.into());
            }
        }
        Ok(())
    })();
    drop(rx);
    let _ = reader.join();
    result?;
    report.written = writer.finish()?;
    Ok(report)
}

/// Converts the dataset at `path` (read as `from`) into `folder/<stem>.<to>.jsonl`, making
/// the folder and leaving out the records that cannot be carried. Returns the file written
/// and the report.
pub fn convert_into(
    path: &Path,
    from: Format,
    to: Format,
    folder: &Path,
) -> Result<(std::path::PathBuf, ConvertReport), ConvertError> {
    let ds = Dataset::open(path, Some(from))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(folder).map_err(|source| DataError::Io {
        path: folder.to_path_buf(),
        source,
    })?;
    let out = folder.join(format!("{stem}.{}.jsonl", to.name()));
    let report = convert(&ds, &out, to, OnError::Skip, &mut |_| {})?;
    Ok((out, report))
}
