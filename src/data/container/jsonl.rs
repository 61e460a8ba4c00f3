//! JSON Lines: one object per line; a UTF-8 BOM, CRLF line ends and blank lines are accepted.

use super::{strip_bom, RawBody, RawRecord};
use crate::data::error::{DataError, Result};
use crate::data::problem::Location;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

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
            let mut bytes: &[u8] = &self.buf;
            if self.line == 1 {
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
                continue;
            }
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
