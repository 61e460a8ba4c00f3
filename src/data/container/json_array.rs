//! A streaming reader for a top-level JSON array: it finds each element's bytes with a small
//! scanner (strings, escapes and nesting) and parses one element at a time, so memory holds
//! one record, not the file.

use super::{strip_bom, RawBody, RawRecord};
use crate::data::error::{DataError, Result};
use crate::data::problem::Location;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    FirstElement,
    AfterElement,
    Done,
}

pub struct JsonArrayReader<R: Read> {
    path: PathBuf,
    reader: BufReader<R>,
    state: State,
    /// Current line (1-based), counted outside strings.
    line: u64,
    index: u64,
    elem: Vec<u8>,
}

enum Scan {
    Complete,
    Eof,
}

impl<R: Read> JsonArrayReader<R> {
    pub fn new(path: PathBuf, inner: R) -> Self {
        JsonArrayReader {
            path,
            reader: BufReader::with_capacity(1 << 20, inner),
            state: State::Start,
            line: 1,
            index: 0,
            elem: Vec::with_capacity(4096),
        }
    }

    fn malformed(&mut self, message: impl Into<String>) -> DataError {
        self.state = State::Done;
        DataError::Malformed {
            path: self.path.clone(),
            location: format!("line {}", self.line),
            message: message.into(),
        }
    }

    /// Skips whitespace and returns the next significant byte without consuming it.
    fn peek_significant(&mut self) -> Result<Option<u8>> {
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) => return Err(DataError::io(&self.path, e)),
            };
            if buf.is_empty() {
                return Ok(None);
            }
            let mut i = 0;
            while i < buf.len() && buf[i].is_ascii_whitespace() {
                if buf[i] == b'\n' {
                    self.line += 1;
                }
                i += 1;
            }
            if i < buf.len() {
                let b = buf[i];
                self.reader.consume(i);
                return Ok(Some(b));
            }
            let n = buf.len();
            self.reader.consume(n);
        }
    }

    /// Appends the bytes of one element to `self.elem`, stopping before the `,` or `]` that ends it.
    fn scan_element(&mut self) -> std::io::Result<Scan> {
        let mut depth: u32 = 0;
        let mut in_str = false;
        let mut esc = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(Scan::Eof);
            }
            let mut i = 0;
            let mut end = None;
            while i < buf.len() {
                if in_str {
                    if esc {
                        esc = false;
                        i += 1;
                        continue;
                    }
                    match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                        None => i = buf.len(),
                        Some(j) => {
                            i += j;
                            if buf[i] == b'\\' {
                                esc = true;
                            } else {
                                in_str = false;
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                match buf[i] {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    b'\n' => self.line += 1,
                    _ => {}
                }
                i += 1;
            }
            let take = end.unwrap_or(buf.len());
            self.elem.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if end.is_some() {
                return Ok(Scan::Complete);
            }
        }
    }

    fn next_item(&mut self) -> Result<Option<RawRecord>> {
        match self.state {
            State::Done => return Ok(None),
            State::Start => {
                // Skip a BOM, then expect '['.
                let buf = self
                    .reader
                    .fill_buf()
                    .map_err(|e| DataError::io(&self.path, e))?;
                if strip_bom(buf).len() != buf.len() {
                    self.reader.consume(3);
                }
                match self.peek_significant()? {
                    Some(b'[') => {
                        self.reader.consume(1);
                        self.state = State::FirstElement;
                    }
                    Some(_) => {
                        return Err(self.malformed("expected '[' to open the array of records"))
                    }
                    None => return Err(self.malformed("the file holds no JSON")),
                }
            }
            State::FirstElement | State::AfterElement => {}
        }
        let next = self.peek_significant()?;
        match (self.state, next) {
            (_, None) => {
                let n = self.index;
                return Err(self.malformed(format!(
                    "unexpected end of file after record {n}: the JSON array is not closed with ']'"
                )));
            }
            (_, Some(b']')) => {
                self.reader.consume(1);
                self.state = State::Done;
                if let Some(b) = self.peek_significant()? {
                    return Err(self.malformed(format!(
                        "unexpected '{}' after the closing ']' of the array",
                        b as char
                    )));
                }
                return Ok(None);
            }
            (State::AfterElement, Some(b',')) => {
                self.reader.consume(1);
            }
            (State::AfterElement, Some(b)) => {
                let n = self.index;
                return Err(self.malformed(format!(
                    "expected ',' or ']' after record {n}, found '{}'",
                    b as char
                )));
            }
            _ => {}
        }
        // The element starts at the next significant byte.
        if self.peek_significant()?.is_none() {
            let n = self.index;
            return Err(self.malformed(format!(
                "unexpected end of file after record {n}: the JSON array is not closed with ']'"
            )));
        }
        let start_line = self.line;
        self.elem.clear();
        let scan = self
            .scan_element()
            .map_err(|e| DataError::io(&self.path, e))?;
        self.index += 1;
        if let Scan::Eof = scan {
            let n = self.index;
            self.state = State::Done;
            return Err(DataError::Malformed {
                path: self.path.clone(),
                location: format!("record {n} (line {start_line})"),
                message: "unexpected end of file inside the record: the file is truncated".into(),
            });
        }
        self.state = State::AfterElement;
        Ok(Some(RawRecord {
            location: Location::Record(self.index),
            body: RawBody::Json {
                bytes: std::mem::take(&mut self.elem),
                line: Some(start_line),
            },
        }))
    }
}

impl<R: Read> Iterator for JsonArrayReader<R> {
    type Item = Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_item() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = std::result::Result<serde_json::Map<String, serde_json::Value>, String>;

    fn read(text: &str) -> Vec<std::result::Result<(Location, Parsed), String>> {
        JsonArrayReader::new(PathBuf::from("t.json"), text.as_bytes())
            .map(|r| {
                r.map(|r| (r.location, r.value()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn reads_elements_with_nesting_strings_and_escapes() {
        let got = read(
            "\u{feff}[\n {\"a\": \"x,]}\\\"\", \"b\": [1, {\"c\": 2}]},\n {\"a\": \"y\"}\n]\n",
        );
        assert_eq!(got.len(), 2);
        let first = got[0].as_ref().unwrap().1.as_ref().unwrap();
        assert_eq!(first["a"], "x,]}\"");
        assert_eq!(first["b"][1]["c"], 2);
        assert_eq!(got[1].as_ref().unwrap().0, Location::Record(2));
    }

    #[test]
    fn empty_array_has_no_records() {
        assert!(read("[ ]").is_empty());
    }

    #[test]
    fn truncated_file_is_a_fatal_error_naming_the_record() {
        let got = read("[{\"a\": 1},\n{\"a\": ");
        assert!(got[0].is_ok());
        let err = got[1].as_ref().unwrap_err();
        assert!(err.contains("record 2 (line 2)"), "{err}");
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn unclosed_array_is_reported() {
        let got = read("[{\"a\": 1}");
        let err = got[1].as_ref().unwrap_err();
        assert!(err.contains("not closed"), "{err}");
    }

    #[test]
    fn a_non_object_element_is_a_record_problem_not_fatal() {
        let got = read("[1, {\"a\": 2}]");
        assert_eq!(got.len(), 2);
        let bad = got[0].as_ref().unwrap().1.as_ref().unwrap_err();
        assert!(
            bad.contains("expected a JSON object, found a number (1)"),
            "{bad}"
        );
        assert!(got[1].as_ref().unwrap().1.is_ok());
    }

    #[test]
    fn garbage_after_the_array_is_reported() {
        let got = read("[{\"a\": 1}] x");
        assert!(got
            .last()
            .unwrap()
            .as_ref()
            .unwrap_err()
            .contains("after the closing"));
    }
}
