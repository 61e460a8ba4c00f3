//! The output file and its side files. Records are appended as whole JSON lines, one write
//! and one sync per record, so a run killed at any moment leaves only complete lines; a
//! rerun reads the file back (dropping a torn last line, should a crash of the machine have
//! left one) to learn which records are done. Turned-away model output goes to the
//! rejected log beside it, never into the output.

use super::error::SynthError;
use super::prompts::normalize;
use crate::data::{Body, Format, Location, Message, Record, Role};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The field each record carries its key in: `<seed key>:<round>`.
pub const ID_FIELD: &str = "synth_id";

/// The rejected log for `output`: `persona.jsonl` → `persona.rejected.jsonl`.
pub fn rejected_path(output: &Path) -> PathBuf {
    output.with_extension("rejected.jsonl")
}

/// What an existing output already holds.
#[derive(Debug, Default)]
pub struct Existing {
    /// Keys of the records done.
    pub ids: HashSet<String>,
    /// Records counted towards the target: one per key (a pair written as two rated lines is
    /// one), plus lines without a key.
    pub records: usize,
    /// Every prompt in the file, normalised, for duplicate checks.
    pub prompts: HashSet<String>,
    /// Prompts by seed key, so later rounds are asked for different ones.
    pub by_seed: HashMap<String, Vec<String>>,
    /// Bytes of a torn last line that were cut off.
    pub repaired: u64,
}

/// The user's prompt of a record: the last user message before the first assistant message.
pub fn prompt_of(record: &Record) -> Option<String> {
    let messages: Vec<&Message> = match &record.body {
        Body::Conversation(c) => c.messages.iter().collect(),
        Body::Preference(p) => p.prompt.iter().collect(),
        Body::Labeled(l) => l.prompt().iter().collect(),
        Body::Text(_) => return None,
    };
    messages
        .iter()
        .take_while(|m| m.role != Role::Assistant)
        .filter(|m| m.role == Role::User)
        .last()
        .map(|m| m.text())
}

/// Reads `path` (absent: nothing done yet) as records of `format`, cutting a torn last line.
pub fn read_existing(path: &Path, format: Format) -> Result<Existing, SynthError> {
    let mut out = Existing::default();
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(SynthError::io(path, e)),
    };
    let io = |e| SynthError::io(path, e);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let whole = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if whole < bytes.len() {
        out.repaired = (bytes.len() - whole) as u64;
        file.set_len(whole as u64).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        file.sync_all().map_err(io)?;
        bytes.truncate(whole);
    }
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let obj: Map<String, Value> = serde_json::from_slice(line).map_err(|e| {
            SynthError::Input(format!(
                "{}: line {}: not a JSON object ({e}); synth appends JSON Lines to its output, so give it a new file or one it wrote",
                path.display(),
                i + 1
            ))
        })?;
        let id = obj.get(ID_FIELD).and_then(Value::as_str).map(String::from);
        let record = crate::data::read_record(format, Location::Line(i as u64 + 1), Ok(obj))
            .map_err(|problems| {
                let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
                SynthError::Input(format!(
                    "{}: {first}: the output already holds records that are not {format} records of this kind; give synth a new file, or the --kind and --format it was written with",
                    path.display()
                ))
            })?;
        let prompt = prompt_of(&record);
        match &id {
            Some(id) => {
                if out.ids.insert(id.clone()) {
                    out.records += 1;
                }
            }
            None => out.records += 1,
        }
        if let Some(p) = prompt {
            if out.prompts.insert(normalize(&p)) {
                if let Some((seed, _)) = id.as_deref().and_then(|i| i.split_once(':')) {
                    out.by_seed.entry(seed.to_string()).or_default().push(p);
                }
            }
        }
    }
    Ok(out)
}

/// Appends whole records to the output.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self, SynthError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SynthError::io(path, e))?;
        Ok(Appender {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes `lines` (each a JSON object, newline-terminated) in one write, then syncs.
    pub fn append(&mut self, lines: &[u8]) -> Result<(), SynthError> {
        let io = |e| SynthError::io(&self.path, e);
        self.file.write_all(lines).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

/// `record` as the output lines of `format` (one, or two for a pair written as rated
/// completions), each ending in a newline.
pub fn lines(record: &Record, format: Format) -> Result<Vec<u8>, String> {
    let mut notes = crate::data::Notes::default();
    let mut out = Vec::new();
    for obj in format.write_records(record, &mut notes)? {
        serde_json::to_writer(&mut out, &obj).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Where turned-away output is written, one JSON object a line.
pub struct RejectLog {
    file: Option<File>,
    path: PathBuf,
}

impl RejectLog {
    /// Opened on the first entry, so a clean run leaves no file.
    pub fn new(path: PathBuf) -> Self {
        RejectLog { file: None, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, entry: &Value) -> Result<(), SynthError> {
        let path = self.path.clone();
        let io = |e| SynthError::io(&path, e);
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(io)?,
            );
        }
        let mut line = serde_json::to_vec(entry).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        let f = self.file.as_mut().expect("opened above");
        f.write_all(&line).map_err(io)?;
        f.flush().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Conversation;

    fn record(prompt: &str, answer: &str, id: &str) -> Record {
        let mut r = Record::conversation(Conversation {
            messages: vec![
                Message::new(Role::System, "persona"),
                Message::new(Role::User, prompt),
                Message::new(Role::Assistant, answer),
            ],
            ..Default::default()
        });
        r.meta.insert(ID_FIELD.into(), Value::String(id.into()));
        r
    }

    #[test]
    fn a_rerun_reads_back_keys_and_prompts_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let mut a = Appender::open(&out).unwrap();
        a.append(&lines(&record("Why?", "Because.", "0000abcd:0"), Format::Openai).unwrap())
            .unwrap();
        a.append(&lines(&record("How?", "Thus.", "0000abcd:1"), Format::Openai).unwrap())
            .unwrap();
        drop(a);
        let mut f = OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"{\"messages\": [{\"role\"").unwrap();
        drop(f);
        let e = read_existing(&out, Format::Openai).unwrap();
        assert_eq!(e.records, 2);
        assert_eq!(e.repaired, 21);
        assert!(e.ids.contains("0000abcd:1"));
        assert!(e.prompts.contains("why"));
        assert_eq!(e.by_seed["0000abcd"], ["Why?", "How?"]);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 2);
        // A pair written as two rated completions counts once.
        let kto = dir.path().join("kto.jsonl");
        let pair = Record {
            body: Body::Preference(crate::data::PreferencePair {
                prompt: vec![Message::new(Role::User, "Q")],
                chosen: vec![Message::new(Role::Assistant, "good")],
                rejected: vec![Message::new(Role::Assistant, "bad")],
                ..Default::default()
            }),
            meta: [(ID_FIELD.to_string(), Value::String("1:0".into()))]
                .into_iter()
                .collect(),
        };
        let bytes = lines(&pair, Format::Kto).unwrap();
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 2);
        std::fs::write(&kto, bytes).unwrap();
        let e = read_existing(&kto, Format::Kto).unwrap();
        assert_eq!((e.records, e.ids.len()), (1, 1));
        assert!(
            read_existing(&dir.path().join("absent.jsonl"), Format::Openai)
                .unwrap()
                .ids
                .is_empty()
        );
        assert_eq!(
            rejected_path(Path::new("d/persona.jsonl")),
            Path::new("d/persona.rejected.jsonl")
        );
    }
}
