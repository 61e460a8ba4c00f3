//! File containers: JSON (an array, or an object holding one), JSON Lines and Parquet.
//!
//! Every container yields raw JSON objects with their location, one at a time, so a
//! 10 GB JSON Lines, JSON array or Parquet file is never held in memory whole.

mod json_array;
mod jsonl;
mod parquet_rows;

use super::error::{DataError, Result};
use super::problem::Location;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub use json_array::JsonArrayReader;
pub use jsonl::{Chunk, JsonlChunks, JsonlReader};

/// One raw record, not yet parsed where the container hands out bytes, so parsing can run
/// on worker threads.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub location: Location,
    pub body: RawBody,
}

#[derive(Debug, Clone)]
pub enum RawBody {
    /// The bytes of one JSON value; `line` is where it starts, for messages (JSON arrays).
    Json { bytes: Vec<u8>, line: Option<u64> },
    /// An already decoded value (Parquet rows, wrapped arrays), or why it is not an object.
    Value(std::result::Result<Map<String, Value>, String>),
}

impl RawRecord {
    /// The record as a JSON object, or why it is not one.
    pub fn value(self) -> std::result::Result<Map<String, Value>, String> {
        match self.body {
            RawBody::Value(v) => v,
            RawBody::Json { bytes, line } => parse_json_body(&bytes, line),
        }
    }
}

/// The object in the bytes of a [`RawBody::Json`], or why it is not one.
pub fn parse_json_body(
    bytes: &[u8],
    line: Option<u64>,
) -> std::result::Result<Map<String, Value>, String> {
    match line {
        None => parse_object(bytes),
        Some(l) => parse_object(bytes).map_err(|m| format!("{m} (line {l})")),
    }
}

/// A stream of raw records. An `Err` item is fatal: the container is broken past that point.
pub type RawRecords = Box<dyn Iterator<Item = Result<RawRecord>> + Send>;

/// The file container, chosen from the extension and, for `.json`, the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    JsonArray,
    /// A `.json` file whose top level is an object holding the array of records.
    JsonObject,
    Jsonl,
    Parquet,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::JsonArray => "json (array)",
            Container::JsonObject => "json (object holding an array)",
            Container::Jsonl => "jsonl",
            Container::Parquet => "parquet",
        }
    }
}

/// Keys that hold a record's own arrays: an object with one of these is a record, not a wrapper.
const RECORD_ARRAY_KEYS: &[&str] = &[
    "conversations",
    "messages",
    "history",
    "chosen",
    "rejected",
    "prompt",
    "completion",
    "tools",
];

/// An opened dataset file; [`records`](Self::records) can be called again for a second pass.
#[derive(Debug, Clone)]
pub struct DatasetFile {
    pub path: PathBuf,
    pub container: Container,
    pub bytes: u64,
}

impl DatasetFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if meta.is_dir() {
            return Err(DataError::IsDirectory { path });
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        let container = match ext.as_str() {
            "jsonl" | "ndjson" => Container::Jsonl,
            "parquet" => Container::Parquet,
            "json" => sniff_json(&path)?,
            _ => return Err(DataError::UnknownExtension { path }),
        };
        if meta.len() == 0 {
            return Err(DataError::Empty {
                path,
                expected: "JSON records",
            });
        }
        Ok(DatasetFile {
            path,
            container,
            bytes: meta.len(),
        })
    }

    /// A JSON Lines file as runs of whole lines of about `target` bytes, for workers to split
    /// (the records are the ones [`records`](Self::records) yields); `None` for the other
    /// containers.
    pub fn jsonl_chunks(&self, target: usize) -> Result<Option<JsonlChunks<File>>> {
        if self.container != Container::Jsonl {
            return Ok(None);
        }
        let path = &self.path;
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Some(JsonlChunks::new(path.clone(), file, target)))
    }

    pub fn records(&self) -> Result<RawRecords> {
        let path = &self.path;
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(match self.container {
            Container::Jsonl => Box::new(JsonlReader::new(path.clone(), file)),
            Container::JsonArray => Box::new(JsonArrayReader::new(path.clone(), file)),
            Container::JsonObject => Box::new(read_wrapped_array(path, file)?.into_iter()),
            Container::Parquet => parquet_rows::open(path, file)?,
        })
    }
}

/// Decides between a JSON array, a wrapping object and JSON Lines in a `.json` file.
fn sniff_json(path: &Path) -> Result<Container> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut first_line = Vec::new();
    reader
        .read_until(b'\n', &mut first_line)
        .map_err(|e| DataError::io(path, e))?;
    let trimmed = strip_bom(&first_line);
    let start = trimmed.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        // The first line is blank: look further for the first significant byte.
        let mut rest = Vec::new();
        reader
            .by_ref()
            .take(1 << 20)
            .read_to_end(&mut rest)
            .map_err(|e| DataError::io(path, e))?;
        return match rest.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Ok(Container::JsonArray),
            Some(b'{') => Ok(Container::JsonObject),
            Some(_) => Err(not_json(path)),
            None => Err(DataError::Empty {
                path: path.to_path_buf(),
                expected: "JSON records",
            }),
        };
    };
    match trimmed[start] {
        b'[' => Ok(Container::JsonArray),
        b'{' => {
            // A complete object on the first line followed by more lines is JSON Lines saved as `.json`.
            let complete = serde_json::from_slice::<Value>(trimmed).is_ok();
            if complete {
                let mut next = Vec::new();
                loop {
                    next.clear();
                    let n = reader
                        .read_until(b'\n', &mut next)
                        .map_err(|e| DataError::io(path, e))?;
                    if n == 0 {
                        return Ok(Container::JsonObject);
                    }
                    if next.iter().any(|b| !b.is_ascii_whitespace()) {
                        return Ok(Container::Jsonl);
                    }
                }
            }
            Ok(Container::JsonObject)
        }
        _ => Err(not_json(path)),
    }
}

fn not_json(path: &Path) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        location: "line 1".into(),
        message: "expected a JSON array '[' or object '{' at the start of the file".into(),
    }
}

pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A `.json` file whose top level is an object: either one array of records inside it, or a single record.
fn read_wrapped_array(path: &Path, file: File) -> Result<Vec<Result<RawRecord>>> {
    let mut bytes = Vec::new();
    BufReader::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    let text = std::str::from_utf8(strip_bom(&bytes)).map_err(|e| DataError::Malformed {
        path: path.to_path_buf(),
        location: format!("byte {}", e.valid_up_to()),
        message: "not valid UTF-8".into(),
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| DataError::Malformed {
        path: path.to_path_buf(),
        location: format!("line {}", e.line()),
        message: json_error_message(&e),
    })?;
    let Value::Object(obj) = value else {
        return Err(not_json(path));
    };
    let arrays: Vec<&String> = obj
        .iter()
        .filter(|(_, v)| matches!(v, Value::Array(items) if items.iter().all(Value::is_object)))
        .map(|(k, _)| k)
        .collect();
    let is_record = obj.keys().any(|k| RECORD_ARRAY_KEYS.contains(&k.as_str()));
    if is_record || arrays.is_empty() {
        return Ok(vec![Ok(RawRecord {
            location: Location::Record(1),
            body: RawBody::Value(Ok(obj)),
        })]);
    }
    if arrays.len() > 1 {
        let names: Vec<&str> = arrays.iter().map(|s| s.as_str()).collect();
        return Err(DataError::Detect {
            path: path.to_path_buf(),
            message: format!(
                "the top-level object holds several arrays of records ({}); expected one",
                names.join(", ")
            ),
        });
    }
    let key = arrays[0].clone();
    let mut obj = obj;
    let Some(Value::Array(items)) = obj.remove(&key) else {
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(RawRecord {
                location: Location::Record(i as u64 + 1),
                body: RawBody::Value(match v {
                    Value::Object(m) => Ok(m),
                    other => Err(expected_object(&other)),
                }),
            })
        })
        .collect())
}

pub(crate) fn expected_object(v: &Value) -> String {
    format!(
        "expected a JSON object, found {}",
        super::problem::describe(v)
    )
}

/// serde_json's message without its own "at line L column C" suffix.
pub(crate) fn json_error_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    match e.classify() {
        serde_json::error::Category::Eof => {
            format!("truncated JSON: the input ends inside the record ({msg})")
        }
        _ => format!("invalid JSON at column {}: {msg}", e.column()),
    }
}

/// Parses one record's bytes into an object, or says why not.
pub(crate) fn parse_object(bytes: &[u8]) -> std::result::Result<Map<String, Value>, String> {
    // Validate UTF-8 once with SIMD; parsing from `&str` then skips per-string checks.
    let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
        let at = std::str::from_utf8(bytes)
            .err()
            .map_or(0, |e| e.valid_up_to());
        return Err(format!(
            "not valid UTF-8 (bad byte at offset {at} of the record)"
        ));
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(expected_object(&other)),
        Err(e) => Err(json_error_message(&e)),
    }
}
