//! The verdicts file: one JSON line per item, appended (one write and one sync) the moment
//! the item is judged, so a run killed at any moment leaves whole lines only, or at worst a
//! torn last line after a crash of the machine. A rerun reads the file back, cuts a torn
//! last line (its item is judged again) and skips every item already there: nothing is
//! generated or asked twice, and nothing is lost or duplicated. Each line names the model,
//! the sides and the judge it was written with, and carries the prompt it judged, so a rerun
//! with other settings or other data is refused by line instead of mixing verdicts.

use super::error::JudgeError;
use super::prompt::PromptMessage;
use super::verdict::{Outcome, Pick, Tag};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One judge reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The side shown first, as assistant A (`a` or `b`; the other was shown as B).
    pub first: Which,
    /// The tag the reply ended with; `null` when it had none or several.
    pub tag: Option<Tag>,
    /// The side the tag favours (`a`, `b` or `tie`); `null` with `tag`.
    pub pick: Option<Pick>,
    /// The judge's whole reply, reasoning included.
    pub text: String,
    /// Why the reply was unreadable, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One of the two sides, as the verdicts file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    A,
    B,
}

/// One line of the verdicts file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictLine {
    /// The record's position in the data file (0-based).
    pub index: usize,
    /// The model both sides ran on (`--model`).
    pub model: String,
    /// Side A and side B: `base` or an adapter's folder.
    pub a: String,
    pub b: String,
    /// The judge's model name.
    pub judge: String,
    /// The messages both sides answered.
    pub prompt: Vec<PromptMessage>,
    pub answer_a: String,
    pub answer_b: String,
    /// A shown first, then B shown first.
    pub verdicts: Vec<Verdict>,
    pub outcome: Outcome,
}

/// What a line must agree with to be continued from.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub model: &'a str,
    pub a: &'a str,
    pub b: &'a str,
    pub judge: &'a str,
    /// Each item's prompt, by index.
    pub prompts: &'a HashMap<usize, Vec<PromptMessage>>,
}

/// What an existing verdicts file holds.
#[derive(Debug, Default)]
pub struct Existing {
    /// Each judged item's outcome, by index.
    pub outcomes: HashMap<usize, Outcome>,
    /// Bytes of a torn last line that were cut off.
    pub repaired: u64,
}

/// Reads `path` (absent: nothing judged yet), cutting a torn last line, and checks every
/// line against `expect`.
pub fn read_existing(path: &Path, expect: &Expect<'_>) -> Result<Existing, JudgeError> {
    let mut out = Existing::default();
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(JudgeError::io(path, e)),
    };
    let io = |e| JudgeError::io(path, e);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        out.repaired = (bytes.len() - whole) as u64;
        file.set_len(whole as u64).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        file.sync_all().map_err(io)?;
        bytes.truncate(whole);
    }
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |message: String| JudgeError::Verdicts {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let line: VerdictLine = serde_json::from_slice(raw).map_err(|e| {
            bad(format!(
                "not a verdict line ({e}); eval judge appends to its output, so give it a new file or one it wrote"
            ))
        })?;
        let differs = |field: &str, was: &str, now: &str| {
            bad(format!(
                "field `{field}`: written with {was:?}, this run has {now:?}; give another -o to judge these settings"
            ))
        };
        if line.model != expect.model {
            return Err(differs("model", &line.model, expect.model));
        }
        if line.a != expect.a {
            return Err(differs("a", &line.a, expect.a));
        }
        if line.b != expect.b {
            return Err(differs("b", &line.b, expect.b));
        }
        if line.judge != expect.judge {
            return Err(differs("judge", &line.judge, expect.judge));
        }
        match expect.prompts.get(&line.index) {
            None => {
                return Err(bad(format!(
                    "field `index`: {} is not a prompt of the data; the file was written for other data",
                    line.index
                )))
            }
            Some(p) if *p != line.prompt => {
                return Err(bad(format!(
                    "field `prompt`: not the prompt of record {} of the data; the file was written for other data",
                    line.index
                )))
            }
            Some(_) => {}
        }
        if out.outcomes.insert(line.index, line.outcome).is_some() {
            return Err(bad(format!(
                "field `index`: item {} is already on an earlier line",
                line.index
            )));
        }
    }
    Ok(out)
}

/// Appends whole lines to the verdicts file.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self, JudgeError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| JudgeError::io(path, e))?;
        Ok(Appender {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes `line` and its newline in one write, then syncs.
    pub fn append(&mut self, line: &VerdictLine) -> Result<(), JudgeError> {
        let io = |e| JudgeError::io(&self.path, e);
        let mut bytes = serde_json::to_vec(line).map_err(|e| io(e.into()))?;
        bytes.push(b'\n');
        self.file.write_all(&bytes).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(index: usize, prompt: &str, outcome: Outcome) -> VerdictLine {
        VerdictLine {
            index,
            model: "m".into(),
            a: "base".into(),
            b: "/runs/x/adapter".into(),
            judge: "j".into(),
            prompt: vec![PromptMessage {
                role: "user".into(),
                content: prompt.into(),
            }],
            answer_a: "a".into(),
            answer_b: "b".into(),
            verdicts: vec![
                Verdict {
                    first: Which::A,
                    tag: Some(Tag::A),
                    pick: Some(Pick::A),
                    text: "A. [[A]]".into(),
                    error: None,
                },
                Verdict {
                    first: Which::B,
                    tag: None,
                    pick: None,
                    text: "hmm".into(),
                    error: Some("no tag".into()),
                },
            ],
            outcome,
        }
    }

    #[test]
    fn a_rerun_reads_back_outcomes_cuts_a_torn_line_and_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("v.jsonl");
        let prompts: HashMap<usize, Vec<PromptMessage>> = [(0, "P0"), (3, "P3"), (4, "P4")]
            .into_iter()
            .map(|(i, p)| (i, line(i, p, Outcome::Tie).prompt))
            .collect();
        let expect = Expect {
            model: "m",
            a: "base",
            b: "/runs/x/adapter",
            judge: "j",
            prompts: &prompts,
        };
        assert!(read_existing(&out, &expect).unwrap().outcomes.is_empty());
        let mut app = Appender::open(&out).unwrap();
        app.append(&line(3, "P3", Outcome::Error)).unwrap();
        app.append(&line(0, "P0", Outcome::A)).unwrap();
        drop(app);
        let mut f = OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"{\"index\": 4, \"mod").unwrap();
        drop(f);
        let e = read_existing(&out, &expect).unwrap();
        assert_eq!(e.repaired, 17);
        assert_eq!(e.outcomes.len(), 2);
        assert_eq!(
            (e.outcomes[&3], e.outcomes[&0]),
            (Outcome::Error, Outcome::A)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: VerdictLine = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back, line(3, "P3", Outcome::Error));
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["outcome"], "error");
        assert_eq!(v["verdicts"][0]["first"], "a");
        assert_eq!(v["verdicts"][0]["tag"], "A");
        assert_eq!(v["verdicts"][1]["pick"], serde_json::Value::Null);
        // Another judge, another side, another prompt, a duplicate, garbage: refused by line.
        let judge = Expect {
            judge: "other",
            ..expect.clone()
        };
        let msg = read_existing(&out, &judge).unwrap_err().to_string();
        assert!(msg.ends_with("v.jsonl: line 1: field `judge`: written with \"j\", this run has \"other\"; give another -o to judge these settings"), "{msg}");
        let side = Expect {
            b: "base",
            ..expect.clone()
        };
        assert!(read_existing(&out, &side)
            .unwrap_err()
            .to_string()
            .contains("line 1: field `b`"));
        let mut app = Appender::open(&out).unwrap();
        app.append(&line(4, "not P4", Outcome::B)).unwrap();
        drop(app);
        let msg = read_existing(&out, &expect).unwrap_err().to_string();
        assert!(
            msg.contains("line 3: field `prompt`: not the prompt of record 4"),
            "{msg}"
        );
        std::fs::write(
            &out,
            [
                serde_json::to_string(&line(0, "P0", Outcome::A)).unwrap(),
                serde_json::to_string(&line(0, "P0", Outcome::A)).unwrap(),
            ]
            .join("\n")
                + "\n",
        )
        .unwrap();
        let msg = read_existing(&out, &expect).unwrap_err().to_string();
        assert!(
            msg.contains("line 2: field `index`: item 0 is already"),
            "{msg}"
        );
        std::fs::write(&out, "{\"messages\": []}\n").unwrap();
        let msg = read_existing(&out, &expect).unwrap_err().to_string();
        assert!(msg.contains("line 1: not a verdict line"), "{msg}");
    }
}
