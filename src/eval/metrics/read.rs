//! The predictions file: JSON Lines, one object per line with `prediction` and `reference`
//! strings (what `eval generate` writes; other fields ride along unread).

use super::{MetricsError, Pair};
use serde_json::Value;
use std::path::Path;

/// How a JSON value is described in an error.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Every pair of a JSON Lines file, in order. Blank lines are skipped (line numbers still
/// count them); the first bad line stops the read, since scores over part of a file would
/// mislead. An empty file gives no pairs.
pub fn read_predictions(path: &Path) -> Result<Vec<Pair>, MetricsError> {
    let bytes = std::fs::read(path).map_err(|source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut pairs = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| MetricsError::NotUtf8 {
            path: path.to_path_buf(),
            line,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // serde's position is within this one line: keep the column only.
            let message = e.to_string();
            let message = match message.rsplit_once(" at line ") {
                Some((m, _)) => format!("{m} at column {}", e.column()),
                None => message,
            };
            MetricsError::Json {
                path: path.to_path_buf(),
                line,
                message,
            }
        })?;
        let Value::Object(obj) = &value else {
            return Err(MetricsError::NotObject {
                path: path.to_path_buf(),
                line,
                found: kind(&value),
            });
        };
        let field = |field: &'static str| match obj.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            None => Err(MetricsError::Missing {
                path: path.to_path_buf(),
                line,
                field,
            }),
            Some(v) => Err(MetricsError::NotString {
                path: path.to_path_buf(),
                line,
                field,
                found: kind(v),
            }),
        };
        pairs.push(Pair {
            prediction: field("prediction")?,
            reference: field("reference")?,
        });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(content: &[u8]) -> Result<Vec<Pair>, MetricsError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(&p, content).unwrap();
        read_predictions(&p)
    }

    #[test]
    fn reads_pairs_and_names_bad_lines() {
        let ok = read(b"\xEF\xBB\xBF{\"prediction\":\"a\",\"reference\":\"b\",\"id\":1}\r\n\n{\"prediction\":\"\",\"reference\":\"c\"}\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].reference, "c");
        assert!(read(b"").unwrap().is_empty());
        let e = read(b"{\"prediction\":\"a\",\"reference\":\"b\"}\n\n{\"prediction\":\"a\"}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "p.jsonl: line 3: no `reference` field; expected `reference` to be a string"
            ),
            "{e}"
        );
        let e = read(b"{\"prediction\":3,\"reference\":\"b\"}")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("line 1: `prediction` is a number; expected a string"),
            "{e}"
        );
        let e = read(b"{\"prediction\":").unwrap_err().to_string();
        assert!(
            e.contains("line 1: not valid JSON (EOF while parsing a value at column 14)"),
            "{e}"
        );
        let e = read(b"[1]").unwrap_err().to_string();
        assert!(
            e.contains("line 1: found an array; expected a JSON object"),
            "{e}"
        );
        let e = read(b"{}\n\xff\n").unwrap_err().to_string();
        assert!(e.contains("line 1: no `prediction`"), "{e}");
        let e = read(b"\xff\n").unwrap_err().to_string();
        assert!(e.contains("line 1: not UTF-8"), "{e}");
    }
}
