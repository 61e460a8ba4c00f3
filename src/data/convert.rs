//! Streaming conversion between formats, with a report of what could not be carried.
//! Records are parsed, converted and serialised in ordered batches on every core.

use super::container::{parse_json_body, Chunk, RawBody, RawRecord, RawRecords};
use super::error::DataError;
use super::format::{Format, Notes};
use super::problem::{Issues, Location, Problem};
use super::record::{Kind, Record};
use super::writer::RecordWriter;
use super::{parallel, read_record, validate, Dataset};
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

/// Bytes of JSON Lines per piece of work: enough records to make a worker's hand-over cheap
/// against the work, few enough pieces in flight (`parallel::stream_ordered`) to keep memory
/// flat.
const CHUNK_BYTES: usize = 512 * 1024;

/// Records per piece of work for the other containers.
const RAW_PIECE: usize = 512;

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

/// A piece of the input for one worker.
enum Piece {
    /// Whole lines of a JSON Lines file.
    Lines(Chunk),
    /// Records split off by the container (JSON arrays, Parquet).
    Raws(Vec<RawRecord>),
}

/// What a worker makes of a piece: the output records, and the problems of those that
/// could not be converted.
#[derive(Default)]
struct Block {
    /// The output records as compact JSON, each followed by `\n`.
    out: Vec<u8>,
    /// Input records converted or not.
    read: u64,
    notes: Notes,
    /// The problems of each record that could not be converted, in input order.
    failed: Vec<Vec<Problem>>,
}

impl Block {
    fn convert_piece(from: Format, to: Format, piece: Piece) -> Block {
        let mut block = Block::default();
        match piece {
            Piece::Lines(chunk) => {
                block.out.reserve(chunk.bytes.len() + chunk.bytes.len() / 4);
                for (line, bytes) in chunk.records() {
                    block.convert_bytes(from, to, Location::Line(line), bytes, None);
                }
            }
            Piece::Raws(raws) => {
                for raw in raws {
                    match raw.body {
                        RawBody::Json { bytes, line } => {
                            block.convert_bytes(from, to, raw.location, &bytes, line)
                        }
                        RawBody::Value(v) => {
                            let record = read_record(from, raw.location, v);
                            block.write(to, raw.location, record);
                        }
                    }
                }
            }
        }
        block
    }

    /// Converts the record in `bytes`: straight from its text when the formats allow
    /// ([`Format::read_fast`], [`Format::write_fast`]), else through a parsed object. Both
    /// ways write the same bytes (`tests::fast_and_general_paths_write_the_same_bytes`).
    fn convert_bytes(
        &mut self,
        from: Format,
        to: Format,
        location: Location,
        bytes: &[u8],
        line: Option<u64>,
    ) {
        let record = match read_fast(from, bytes) {
            Some(record) => Ok(record),
            None => read_record(from, location, parse_json_body(bytes, line)),
        };
        self.write(to, location, record);
    }

    /// Appends what `record` becomes as `to`, or its problems.
    fn write(&mut self, to: Format, location: Location, record: Result<Record, Vec<Problem>>) {
        self.read += 1;
        let record = match record {
            Ok(r) => r,
            Err(problems) => {
                self.failed.push(problems);
                return;
            }
        };
        if to.write_fast(&record, &mut self.out) {
            self.out.push(b'\n');
            return;
        }
        let problem = |message: String| {
            vec![Problem {
                location,
                field: String::new(),
                message,
            }]
        };
        let mut notes = Notes::default();
        let objs = match to.write_records(&record, &mut notes) {
            Ok(objs) => objs,
            Err(message) => {
                self.failed.push(problem(message));
                return;
            }
        };
        let start = self.out.len();
        for obj in objs {
            if let Err(e) = serde_json::to_writer(&mut self.out, &obj) {
                self.out.truncate(start);
                self.failed.push(problem(e.to_string()));
                return;
            }
            self.out.push(b'\n');
        }
        self.notes.merge(notes);
    }
}

/// The record in `bytes` read straight from its text ([`Format::read_fast`]) when it is
/// valid UTF-8, plain enough and passes validation; `None` sends it the general way, which
/// also reports what is wrong with it.
fn read_fast(from: Format, bytes: &[u8]) -> Option<Record> {
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let record = from.read_fast(text)?;
    let mut issues = Issues::default();
    validate::check(&record, &mut issues);
    issues.is_empty().then_some(record)
}

/// Groups a container's records into pieces; a fatal error ends the stream after the
/// records before it.
fn raw_pieces(raws: RawRecords) -> impl Iterator<Item = Result<Piece, DataError>> + Send {
    let mut raws = raws;
    let mut fatal: Option<DataError> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if let Some(e) = fatal.take() {
            done = true;
            return Some(Err(e));
        }
        if done {
            return None;
        }
        let mut piece = Vec::with_capacity(RAW_PIECE);
        for raw in raws.by_ref().take(RAW_PIECE) {
            match raw {
                Ok(r) => piece.push(r),
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if piece.is_empty() {
            done = true;
            return fatal.take().map(Err);
        }
        Some(Ok(Piece::Raws(piece)))
    })
}

/// Converts `dataset` into `output` as `to`. `progress` hears the count of records read
/// after each piece is written, so a large file's conversion shows it is moving.
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
    let pieces: Box<dyn Iterator<Item = Result<Piece, DataError>> + Send> =
        match dataset.file.jsonl_chunks(CHUNK_BYTES)? {
            Some(chunks) => Box::new(chunks.map(|c| c.map(Piece::Lines))),
            None => Box::new(raw_pieces(dataset.file.records()?)),
        };
    // A reader thread reads (and, for JSON arrays, splits) the input while the workers
    // convert and this thread writes.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Piece, DataError>>(threads.max(2));
    let reader = std::thread::spawn(move || {
        for piece in pieces {
            if tx.send(piece).is_err() {
                break;
            }
        }
    });
    let result = parallel::stream_ordered(
        rx.into_iter(),
        threads,
        |piece| piece.map(|p| Block::convert_piece(from, to, p)),
        |block| -> Result<(), ConvertError> {
            let block = block?;
            report.read += block.read;
            for problems in block.failed {
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
            writer.write_lines(&block.out)?;
            report.notes.merge(block.notes);
            progress(report.read);
            Ok(())
        },
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::container::JsonlReader;

    /// The general path, as conversion worked before the fast one: parse the object, read
    /// it as `from`, write it as `to` through `Value`s.
    fn general(from: Format, to: Format, bytes: &[u8]) -> (Vec<u8>, Notes, Vec<Vec<Problem>>) {
        let location = Location::Line(7);
        let mut notes = Notes::default();
        let mut out = Vec::new();
        let mut failed = Vec::new();
        match read_record(from, location, parse_json_body(bytes, None)) {
            Err(p) => failed.push(p),
            Ok(record) => match to.write_records(&record, &mut notes) {
                Err(message) => {
                    notes = Notes::default();
                    failed.push(vec![Problem {
                        location,
                        field: String::new(),
                        message,
                    }]);
                }
                Ok(objs) => {
                    for obj in objs {
                        out.extend(serde_json::to_vec(&obj).expect("serialize"));
                        out.push(b'\n');
                    }
                }
            },
        }
        (out, notes, failed)
    }

    fn fast(from: Format, to: Format, bytes: &[u8]) -> (Vec<u8>, Notes, Vec<Vec<Problem>>) {
        let mut block = Block::default();
        block.convert_bytes(from, to, Location::Line(7), bytes, None);
        assert_eq!(block.read, 1);
        (block.out, block.notes, block.failed)
    }

    /// Records the fast reader takes (and, as openai, the fast writer writes).
    const PLAIN: &[&str] = &[
        r#"{"instruction": "Say hi.", "input": "", "output": "Hi."}"#,
        r#"{"instruction":"a \"quoted\" \\ back\\slash\n\ttab \/ solidus","input":"two\r\nlines","output":"ok"}"#,
        r#"{"instruction":"caf\u00e9 东京 🙂 \ud83d\ude42 naïve","input":"x","output":"y\u2028z\u2029 \u0001\u001f\u007f é"}"#,
        r#"{"instruction":"no input","output":"o"}"#,
        r#"{"instruction":"null input","input":null,"output":"o","system":null,"history":null}"#,
        r#"{"instruction":"blank input","input":"   ","output":"o"}"#,
        r#"{"system":"Be brief.","instruction":"i","input":"in","output":"o"}"#,
        r#"{"instruction":"empty system","system":"","output":"o"}"#,
        r#"{"instruction":"<think>mine</think>","output":"<think>\nStep one.\n</think>\n\nAnswer."}"#,
        r#"{"instruction":"empty reasoning","output":"  <think>  </think>x"}"#,
        r#"{"instruction":"only reasoning","output":"<think>r</think>"}"#,
        r#"{"instruction":"unfinished","output":"<think>r"}"#,
        r#"{"instr\u0075ction":"escaped key","output":"o"}"#,
        "  \t{\"instruction\":\"leading space\",\"output\":\"o\"}  ",
        r#"{"output":"key order","input":"b","instruction":"a"}"#,
    ];

    /// Records the fast reader must leave to the general one (odd, extra or wrong).
    const ODD: &[&str] = &[
        r#"{"instruction":"extra","output":"o","id":7,"tags":["a"]}"#,
        r#"{"instruction":"a","instruction":"twice","output":"o"}"#,
        r#"["instruction","input","output"]"#,
        r#"{"instruction":"h","output":"o","history":[]}"#,
        r#"{"instruction":"h","output":"o","history":[["q","a"],["q2","<think>t</think>a2"]]}"#,
        r#"{"instruction":"h","output":"o","history":[["q"]]}"#,
        r#"{"input":"missing instruction","output":"o"}"#,
        r#"{"instruction":"missing output"}"#,
        r#"{"instruction":null,"output":"o"}"#,
        r#"{"instruction":"number input","input":5,"output":"o"}"#,
        r#"{"instruction":"   ","output":"o"}"#,
        r#"{"instruction":"i","output":""}"#,
        r#"{}"#,
        r#"{"instruction":"a","output":"b"} trailing"#,
        r#"{"instruction":"a","output":"b""#,
        r#"{"instruction":"lone \ud800 surrogate","output":"b"}"#,
        r#"{"instruction":"bad escape \q","output":"b"}"#,
        r#"{"instruction":"i","output":"o","system":7}"#,
        r#""just a string""#,
    ];

    #[test]
    fn fast_and_general_paths_write_the_same_bytes() {
        let mut lines: Vec<Vec<u8>> = PLAIN
            .iter()
            .chain(ODD)
            .map(|l| l.as_bytes().to_vec())
            .collect();
        lines.push(b"{\"instruction\":\"bad \xff utf-8\",\"output\":\"o\"}".to_vec());
        let targets: Vec<Format> = Format::all()
            .filter(|to| compatible(Kind::Sft, to.kind()))
            .collect();
        assert!(targets.len() >= 7, "{targets:?}");
        for line in &lines {
            for &to in &targets {
                assert_eq!(
                    fast(Format::Alpaca, to, line),
                    general(Format::Alpaca, to, line),
                    "alpaca → {to}: {}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        // The fast path is taken where it should be, so the comparison above tests it.
        for line in PLAIN {
            let record = read_fast(Format::Alpaca, line.as_bytes());
            let record = record.unwrap_or_else(|| panic!("not read fast: {line}"));
            assert!(
                Format::Openai.write_fast(&record, &mut Vec::new()),
                "not written fast: {line}"
            );
        }
        for line in ODD {
            assert!(
                read_fast(Format::Alpaca, line.as_bytes()).is_none(),
                "read fast: {line}"
            );
        }
        // Other sources written as openai go through the fast writer too.
        let sharegpt = br#"{"conversations":[{"from":"system","value":"s"},{"from":"human","value":"q \"1\""},{"from":"gpt","value":"<think>r</think>a"}]}"#;
        let openai = br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"c","reasoning_content":"r"}]}"#;
        let with_weight = br#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"c","weight":0}]}"#;
        for (from, line) in [
            (Format::Sharegpt, &sharegpt[..]),
            (Format::Openai, &openai[..]),
            (Format::Openai, &with_weight[..]),
        ] {
            assert_eq!(
                fast(from, Format::Openai, line),
                general(from, Format::Openai, line),
                "{from} → openai"
            );
        }
    }

    /// A file of many pieces, blank lines and bad records converts as record-by-record
    /// conversion does, in order, with the bad records' lines.
    #[test]
    fn a_file_of_many_pieces_converts_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("in.jsonl");
        let mut text = String::from("\u{feff}");
        let mut n = 0;
        while text.len() < 3 * CHUNK_BYTES {
            n += 1;
            let line = match n % 97 {
                0 => format!("{{\"instruction\": {n}, \"output\": \"o\"}}"),
                13 => String::new(),
                29 => format!("{{\"instruction\":\"x{n}\",\"output\":\"o\",\"id\":{n}}}"),
                _ => format!(
                    "{{\"instruction\":\"i{n} caf\\u00e9\",\"input\":\"{}\",\"output\":\"{}\"}}",
                    "w ".repeat(n % 11),
                    "word ".repeat(n % 50 + 1)
                ),
            };
            text.push_str(&line);
            text.push_str(if n % 5 == 0 { "\r\n" } else { "\n" });
        }
        std::fs::write(&src, &text).expect("write");
        let ds = Dataset::open(&src, Some(Format::Alpaca)).expect("open");
        let out = dir.path().join("out.jsonl");
        let mut progress = Vec::new();
        let report = convert(&ds, &out, Format::Openai, OnError::Skip, &mut |r| {
            progress.push(r)
        })
        .expect("convert");
        assert!(progress.len() >= 3, "{progress:?}");
        let mut expected = Vec::new();
        let mut notes = Notes::default();
        let mut problems = Vec::new();
        let mut read = 0;
        for raw in JsonlReader::new(src.clone(), text.as_bytes()) {
            let RawRecord { location, body } = raw.expect("raw");
            let RawBody::Json { bytes, .. } = body else {
                panic!("bytes")
            };
            read += 1;
            let (o, nt, f) = general(Format::Alpaca, Format::Openai, &bytes);
            expected.extend(o);
            notes.merge(nt);
            problems.extend(f.into_iter().flatten().map(|p| Problem { location, ..p }));
        }
        assert_eq!(std::fs::read(&out).expect("read"), expected);
        assert_eq!(report.read, read);
        assert_eq!(report.written + report.skipped, read);
        assert_eq!(report.notes, notes);
        problems.truncate(MAX_LISTED);
        assert_eq!(report.problems, problems);
        assert!(report.skipped > 10 && !report.notes.is_empty());
        // Under --on-error fail the first bad record stops it, and nothing is written.
        let out2 = dir.path().join("out2.jsonl");
        match convert(&ds, &out2, Format::Openai, OnError::Fail, &mut |_| {}) {
            Err(ConvertError::Record { problem, .. }) => {
                assert_eq!(problem.location, problems[0].location)
            }
            other => panic!("{other:?}"),
        }
        assert!(!out2.exists());
    }
}
