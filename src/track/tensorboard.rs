//! TensorBoard event files, written as the run goes (`train.report_to: [tensorboard]`) or
//! afterwards from `events.jsonl` (`tunelab runs export --tensorboard`).
//!
//! A file is TFRecord-framed `Event` protocol buffers (tensorflow/core/util/event.proto):
//! first one carrying `file_version: "brain.Event:2"`, then one per run event with numbers,
//! its scalars as `Summary.Value.simple_value` (f32, as transformers' TensorBoard callback
//! writes them) at the event's step and wall time. A resume writes a `SessionLog` START at
//! the first step it will repeat, which TensorBoard's readers take as "forget what an
//! earlier session logged from here on", so a resumed run charts one line, not two.
//!
//! The protobuf encoding is done here by hand: the three messages need a dozen lines, and a
//! protobuf toolchain would be the heaviest dependency of the crate.

use super::error::TrackError;
use super::scalars::{scalars, Scalar};
use super::tfrecord;
use crate::runs::{EventKind, RunEvent};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The run folder's subfolder the files go into.
pub const FOLDER: &str = "tensorboard";

/// What the first event of every file says.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Protocol buffer wire format: the little this needs of it.
mod wire {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire_type));
    }
    pub fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
        key(out, field, 2);
        varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }

    /// One field as read: its number and value.
    pub enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
    }

    /// The fields of a message, in order.
    pub fn fields(mut b: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
        fn read_varint(b: &mut &[u8]) -> Result<u64, String> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = b.split_first().ok_or("truncated varint")?;
                *b = rest;
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return Ok(v);
                }
            }
            Err("varint too long".into())
        }
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if b.len() < n {
                return Err(format!(
                    "truncated field ({n} bytes wanted, {} left)",
                    b.len()
                ));
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let k = read_varint(&mut b)?;
            let field = u32::try_from(k >> 3).map_err(|_| "field number out of range")?;
            let value = match k & 7 {
                0 => Field::Varint(read_varint(&mut b)?),
                1 => Field::Fixed64(u64::from_le_bytes(
                    take(&mut b, 8)?.try_into().unwrap_or_default(),
                )),
                2 => {
                    let n = read_varint(&mut b)?;
                    Field::Bytes(take(&mut b, usize::try_from(n).unwrap_or(usize::MAX))?)
                }
                5 => Field::Fixed32(u32::from_le_bytes(
                    take(&mut b, 4)?.try_into().unwrap_or_default(),
                )),
                t => return Err(format!("wire type {t} of field {field}")),
            };
            out.push((field, value));
        }
        Ok(out)
    }
}

// Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5,
// session_log = 7. Summary: value = 1. Summary.Value: tag = 1, simple_value = 2 (float).
// SessionLog: status = 1 (START = 1).

fn event_head(wall_time: f64, step: i64) -> Vec<u8> {
    let mut e = Vec::new();
    wire::fixed64(&mut e, 1, wall_time.to_bits());
    wire::key(&mut e, 2, 0);
    wire::varint(&mut e, step as u64);
    e
}

/// The `Event` that opens a file.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut e = event_head(wall_time, 0);
    wire::bytes(&mut e, 3, FILE_VERSION.as_bytes());
    e
}

/// An `Event` holding `values` as simple (f32) scalars.
pub fn scalar_event(wall_time: f64, step: u64, values: &[Scalar]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in values {
        let mut value = Vec::new();
        wire::bytes(&mut value, 1, tag.as_bytes());
        wire::fixed32(&mut value, 2, (*v as f32).to_bits());
        wire::bytes(&mut summary, 1, &value);
    }
    let mut e = event_head(wall_time, step as i64);
    wire::bytes(&mut e, 5, &summary);
    e
}

/// A `SessionLog` START at `step`: readers drop what earlier sessions logged at `step` and
/// after.
pub fn session_start_event(wall_time: f64, step: u64) -> Vec<u8> {
    let mut log = Vec::new();
    wire::key(&mut log, 1, 0);
    wire::varint(&mut log, 1);
    let mut e = event_head(wall_time, step as i64);
    wire::bytes(&mut e, 7, &log);
    e
}

/// What a run event becomes in an event file: its scalars, a restart marker for a resume,
/// or nothing.
pub fn encode(event: &RunEvent) -> Option<Vec<u8>> {
    if let EventKind::Resume { from_step, .. } = event.kind {
        // The resumed run repeats the steps after its checkpoint.
        return Some(session_start_event(event.time, from_step + 1));
    }
    let (step, values) = scalars(&event.kind)?;
    (!values.is_empty()).then(|| scalar_event(event.time, step, &values))
}

/// `events.out.tfevents.<unix seconds>.<host>.<pid>.0`, as PyTorch's `SummaryWriter` names
/// them: TensorBoard reads every file with `tfevents` in its name, in name order.
pub fn file_name(wall_time: f64) -> String {
    format!(
        "events.out.tfevents.{:010}.{}.{}.0",
        wall_time.max(0.0) as u64,
        hostname(),
        std::process::id()
    )
}

fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// An event file being written as the run goes: each record goes straight to the file, so
/// a TensorBoard watching the folder sees every step when it happens.
pub struct EventFile {
    path: PathBuf,
    file: std::fs::File,
}

impl EventFile {
    /// A new file in `dir` (created if missing), opened with its file-version event.
    pub fn create(dir: &Path, wall_time: f64) -> Result<Self, TrackError> {
        std::fs::create_dir_all(dir).map_err(|e| TrackError::io(dir, e))?;
        let path = dir.join(file_name(wall_time));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrackError::io(&path, e))?;
        let mut f = EventFile { path, file };
        f.write_record(&file_version_event(wall_time))?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what `event` becomes (nothing for most events).
    pub fn write(&mut self, event: &RunEvent) -> Result<(), TrackError> {
        match encode(event) {
            Some(e) => self.write_record(&e),
            None => Ok(()),
        }
    }

    fn write_record(&mut self, data: &[u8]) -> Result<(), TrackError> {
        self.file
            .write_all(&tfrecord::frame(data))
            .map_err(|e| TrackError::io(&self.path, e))
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub path: PathBuf,
    /// Run events that became records (scalar events and restarts).
    pub records: usize,
    pub scalars: usize,
}

/// Writes one event file of `events` into `dir`, replacing the event files already there
/// (they are derived from the same events), atomically.
pub fn export(events: &[RunEvent], dir: &Path) -> Result<Exported, TrackError> {
    std::fs::create_dir_all(dir).map_err(|e| TrackError::io(dir, e))?;
    let start = events
        .iter()
        .map(|e| e.time)
        .find(|t| *t > 0.0)
        .unwrap_or(0.0);
    let mut bytes = tfrecord::frame(&file_version_event(start));
    let (mut records, mut count) = (0, 0);
    for e in events {
        if let Some(data) = encode(e) {
            bytes.extend(tfrecord::frame(&data));
            records += 1;
            count += scalars(&e.kind).map_or(0, |(_, v)| v.len());
        }
    }
    let old = event_files(dir)?;
    let path = dir.join(file_name(start));
    crate::files::write_atomic(&path, &bytes).map_err(|e| TrackError::io(&path, e))?;
    for p in old.into_iter().filter(|p| *p != path) {
        std::fs::remove_file(&p).map_err(|e| TrackError::io(&p, e))?;
    }
    Ok(Exported {
        path,
        records,
        scalars: count,
    })
}

/// The event files in `dir`, in the order TensorBoard reads them (by name).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TrackError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrackError::io(dir, e)),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains("tfevents"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// One event read back from a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// Simple scalar values, by tag.
    pub values: Vec<(String, f32)>,
    /// A `SessionLog` START.
    pub session_start: bool,
}

/// Decodes one `Event` (the fields this module writes; others are skipped).
pub fn decode(data: &[u8]) -> Result<Decoded, String> {
    use wire::Field;
    let mut d = Decoded::default();
    for (n, f) in wire::fields(data)? {
        match (n, f) {
            (1, Field::Fixed64(b)) => d.wall_time = f64::from_bits(b),
            (2, Field::Varint(v)) => d.step = v as i64,
            (3, Field::Bytes(b)) => {
                d.file_version = Some(String::from_utf8(b.to_vec()).map_err(|e| e.to_string())?)
            }
            (5, Field::Bytes(summary)) => {
                for (n, f) in wire::fields(summary)? {
                    let (1, Field::Bytes(value)) = (n, f) else {
                        continue;
                    };
                    let (mut tag, mut v) = (None, None);
                    for (n, f) in wire::fields(value)? {
                        match (n, f) {
                            (1, Field::Bytes(t)) => {
                                tag =
                                    Some(String::from_utf8(t.to_vec()).map_err(|e| e.to_string())?)
                            }
                            (2, Field::Fixed32(x)) => v = Some(f32::from_bits(x)),
                            _ => {}
                        }
                    }
                    if let (Some(t), Some(v)) = (tag, v) {
                        d.values.push((t, v));
                    }
                }
            }
            (7, Field::Bytes(log)) => {
                d.session_start = wire::fields(log)?
                    .iter()
                    .any(|(n, f)| *n == 1 && matches!(f, Field::Varint(1)));
            }
            _ => {}
        }
    }
    Ok(d)
}

/// Every event of an event file, each record's checksums checked.
pub fn read_file(path: &Path) -> Result<Vec<Decoded>, TrackError> {
    let bytes = std::fs::read(path).map_err(|e| TrackError::io(path, e))?;
    let records = tfrecord::unframe(&bytes).map_err(|source| TrackError::Record {
        path: path.to_path_buf(),
        source,
    })?;
    records
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            decode(r).map_err(|what| TrackError::Decode {
                path: path.to_path_buf(),
                index,
                what,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::event::{Eval, Train};

    fn at(time: f64, kind: EventKind) -> RunEvent {
        RunEvent { kind, time }
    }

    #[test]
    fn events_encode_as_tensorboard_protos() {
        // The bytes of `Event(wall_time=1.5, step=0, file_version="brain.Event:2")` as
        // protobuf's Python encoder writes them (explicit step 0 aside: proto3 omits it,
        // and readers accept both).
        let mut expected = vec![0x09];
        expected.extend(1.5f64.to_le_bytes());
        expected.extend([0x10, 0x00, 0x1a, 13]);
        expected.extend(b"brain.Event:2");
        assert_eq!(file_version_event(1.5), expected);
        let e = scalar_event(2.0, 300, &[("train/loss".into(), 0.5)]);
        let mut expected = vec![0x09];
        expected.extend(2.0f64.to_le_bytes());
        expected.extend([0x10, 0xac, 0x02]); // 300 as a varint
        expected.extend([0x2a, 19, 0x0a, 17, 0x0a, 10]);
        expected.extend(b"train/loss");
        expected.push(0x15);
        expected.extend(0.5f32.to_le_bytes());
        assert_eq!(e, expected);
    }

    #[test]
    fn a_run_reads_back_with_its_values_steps_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let train = Train {
            step: 7,
            loss: 1.25,
            lr: 3e-4,
            grad_norm: 0.1,
            ..Default::default()
        };
        let events = vec![
            at(10.0, EventKind::Train(train)),
            at(
                11.5,
                EventKind::Eval(Eval {
                    step: 7,
                    eval_loss: 2.0,
                    eval_tokens: 9,
                    perplexity: f64::NAN,
                    ..Default::default()
                }),
            ),
            at(12.0, EventKind::Stopped { step: 7 }),
            at(
                20.0,
                EventKind::Resume {
                    from_step: 5,
                    checkpoint: None,
                },
            ),
        ];
        let mut f = EventFile::create(dir.path(), 9.0).unwrap();
        for e in &events {
            f.write(e).unwrap();
        }
        let back = read_file(f.path()).unwrap();
        assert_eq!(back.len(), 4, "{back:?}");
        assert_eq!(back[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(back[0].wall_time, 9.0);
        assert_eq!((back[1].step, back[1].wall_time), (7, 10.0));
        let loss = back[1].values.iter().find(|(t, _)| t == "train/loss");
        assert_eq!(loss, Some(&("train/loss".to_string(), 1.25f32)));
        let lr = back[1]
            .values
            .iter()
            .find(|(t, _)| t == "train/learning_rate");
        assert_eq!(lr.unwrap().1, 3e-4f32);
        // NaN perplexity is left out.
        assert_eq!(
            back[2].values,
            [("eval/loss".to_string(), 2.0), ("eval/tokens".into(), 9.0)]
        );
        assert!(back[3].session_start && back[3].step == 6 && back[3].values.is_empty());
        // The export of the same events holds the same records.
        let out = tempfile::tempdir().unwrap();
        let x = export(&events, out.path()).unwrap();
        assert_eq!((x.records, x.scalars), (3, 10));
        let again = read_file(&x.path).unwrap();
        assert_eq!(again[1..], back[1..]);
        // A second export replaces the first.
        export(&events, out.path()).unwrap();
        assert_eq!(event_files(out.path()).unwrap().len(), 1);
    }

    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = EventFile::create(dir.path(), 1.0).unwrap();
        let path = f.path().to_path_buf();
        drop(f);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(err.contains("data checksum mismatch"), "{err}");
        assert!(decode(&[0x0a, 0x05, 0x01]).is_err());
    }
}
