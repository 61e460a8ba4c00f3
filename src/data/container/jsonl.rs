//! JSON Lines: one object per line; a UTF-8 BOM, CRLF line ends and blank lines are accepted.

use super::{strip_bom, RawBody, RawRecord};
use crate::data::error::{DataError, Result};
use crate::data::problem::Location;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

/// The record on line `line` (1-based), given the line's bytes with or without its `\n`:
/// without a BOM (line 1) and line ends, or `None` for a blank line.
fn record_bytes(mut bytes: &[u8], line: u64) -> Option<&[u8]> {
    if line == 1 {
        bytes = strip_bom(bytes);
    }
    while let Some((last, rest)) = bytes.split_last() {
        if *last == b'\n' || *last == b'\r' {
            bytes = rest;
        } else {
            break;
        }
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some(bytes)
}

/// A run of whole lines of a JSON Lines file, for a worker to split and parse: the records
/// are found by [`Chunk::records`] exactly as [`JsonlReader`] finds them.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// The number (1-based) of the chunk's first line.
    pub first_line: u64,
}

impl Chunk {
    /// Every record of the chunk with its line number; blank lines are skipped.
    pub fn records(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut rest: &[u8] = &self.bytes;
        let mut line = self.first_line;
        std::iter::from_fn(move || loop {
            if rest.is_empty() {
                return None;
            }
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let (this, tail) = rest.split_at(end);
            rest = tail;
            let n = line;
            line += 1;
            if let Some(bytes) = record_bytes(this, n) {
                return Some((n, bytes));
            }
        })
    }
}

/// Reads a JSON Lines file as [`Chunk`]s of about `target` bytes, each ending at a line end
/// (a line longer than `target` is one chunk of its own).
pub struct JsonlChunks<R: Read> {
    path: PathBuf,
    inner: R,
    target: usize,
    /// Bytes read past the last line end, carried into the next chunk.
    carry: Vec<u8>,
    next_line: u64,
    done: bool,
}

impl<R: Read> JsonlChunks<R> {
    pub fn new(path: PathBuf, inner: R, target: usize) -> Self {
        JsonlChunks {
            path,
            inner,
            target: target.max(1),
            carry: Vec::new(),
            next_line: 1,
            done: false,
        }
    }
}

impl<R: Read> Iterator for JsonlChunks<R> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.reserve(self.target + 4096);
        let mut eof = false;
        // The carried bytes hold no line end (they followed the last one).
        let mut has_line_end = false;
        // Read until the buffer holds `target` bytes and a line end, or the file ends.
        loop {
            if has_line_end && buf.len() >= self.target {
                break;
            }
            let start = buf.len();
            let want = self.target.saturating_sub(start).max(64 * 1024);
            buf.resize(start + want, 0);
            match self.inner.read(&mut buf[start..]) {
                Ok(0) => {
                    buf.truncate(start);
                    eof = true;
                    break;
                }
                Ok(n) => {
                    buf.truncate(start + n);
                    has_line_end = has_line_end || memchr::memchr(b'\n', &buf[start..]).is_some();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(start),
                Err(e) => {
                    self.done = true;
                    return Some(Err(DataError::io(&self.path, e)));
                }
            }
        }
        if eof {
            self.done = true;
            if buf.is_empty() {
                return None;
            }
        } else if let Some(last) = memchr::memrchr(b'\n', &buf) {
            self.carry = buf.split_off(last + 1);
        }
        let first_line = self.next_line;
        self.next_line += memchr::memchr_iter(b'\n', &buf).count() as u64;
        if eof && buf.last() != Some(&b'\n') {
            self.next_line += 1;
        }
        Some(Ok(Chunk {
            bytes: buf,
            first_line,
        }))
    }
}

pub struct JsonlReader<R: Read> {
    path: PathBuf,
    reader: BufReader<R>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> JsonlReader<R> {
    pub fn new(path: PathBuf, inner: R) -> Self {
        JsonlReader {
            path,
            reader: BufReader::with_capacity(1 << 20, inner),
            line: 0,
            buf: Vec::with_capacity(4096),
            done: false,
        }
    }
}

impl<R: Read> Iterator for JsonlReader<R> {
    type Item = Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(DataError::io(&self.path, e)));
                }
            }
            self.line += 1;
            let Some(bytes) = record_bytes(&self.buf, self.line) else {
                continue;
            };
            return Some(Ok(RawRecord {
                location: Location::Line(self.line),
                body: RawBody::Json {
                    bytes: bytes.to_vec(),
                    line: None,
                },
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of every size find the records, with their lines, that the line reader finds.
    #[test]
    fn chunks_split_as_the_line_reader_does() {
        let text: &[u8] =
            b"\xEF\xBB\xBF{\"a\": 1}\r\n\n  \n{\"b\": \"x\\ny\"}\n\r\n{\"c\": 3}\r\r\n{\"d\": 4}";
        let expected: Vec<(u64, Vec<u8>)> = JsonlReader::new(PathBuf::from("t"), text)
            .map(|r| {
                let r = r.expect("record");
                let Location::Line(n) = r.location else {
                    panic!("a line location")
                };
                let RawBody::Json { bytes, .. } = r.body else {
                    panic!("bytes")
                };
                (n, bytes)
            })
            .collect();
        assert_eq!(expected.len(), 4);
        assert_eq!(expected[3].0, 7);
        for target in 1..=text.len() + 1 {
            let mut got = Vec::new();
            let mut lines = 0;
            for chunk in JsonlChunks::new(PathBuf::from("t"), text, target) {
                let chunk = chunk.expect("chunk");
                assert_eq!(chunk.first_line, lines + 1, "target {target}");
                lines += chunk.bytes.iter().filter(|b| **b == b'\n').count() as u64;
                got.extend(chunk.records().map(|(n, b)| (n, b.to_vec())));
            }
            assert_eq!(got, expected, "target {target}");
        }
    }
}
