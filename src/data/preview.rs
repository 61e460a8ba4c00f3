//! A dataset as a pager shows it: its format and why, and its first records read and
//! checked (each the canonical record or its problems), so a screen can page through them,
//! search them and jump to their errors without reading the file again.

use super::{DataError, Dataset, Format, Problem, Record};
use std::path::{Path, PathBuf};

/// The first records of a dataset file, read and checked.
#[derive(Debug, Clone)]
pub struct Preview {
    pub path: PathBuf,
    pub format: Format,
    /// Why this format: detection's evidence.
    pub evidence: String,
    /// Each record's location, and the record or its problems.
    pub records: Vec<(String, Result<Record, Vec<Problem>>)>,
    /// Every record of the file is here (false: the file holds more than were read).
    pub complete: bool,
}

impl Preview {
    /// Opens `path`, detects its format and reads up to `max` records.
    pub fn read(path: &Path, max: usize) -> Result<Preview, DataError> {
        let ds = Dataset::open(path, None)?;
        let mut records = Vec::new();
        let mut complete = true;
        for item in ds.items()? {
            if records.len() == max {
                complete = false;
                break;
            }
            let item = item?;
            records.push((item.location.to_string(), item.result));
        }
        Ok(Preview {
            path: path.to_path_buf(),
            format: ds.format,
            evidence: ds.evidence,
            records,
            complete,
        })
    }

    /// Every problem, with the index of its record.
    pub fn problems(&self) -> Vec<(usize, &Problem)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, (_, r))| r.as_ref().err().map(|ps| (i, ps)))
            .flat_map(|(i, ps)| ps.iter().map(move |p| (i, p)))
            .collect()
    }

    /// The first record after `from` (going round past the end) whose text contains
    /// `needle`, ignoring case; records with problems never match.
    pub fn find(&self, from: usize, needle: &str) -> Option<usize> {
        let needle = needle.to_lowercase();
        if needle.is_empty() {
            return None;
        }
        let n = self.records.len();
        (1..=n).map(|k| (from + k) % n).find(|&i| {
            self.records[i]
                .1
                .as_ref()
                .is_ok_and(|r| r.text().to_lowercase().contains(&needle))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_finds_round_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let line = |q: &str, a: &str| {
            format!(
                "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{q}\"}},{{\"role\":\"assistant\",\"content\":\"{a}\"}}]}}\n"
            )
        };
        let text = [
            line("Alpha", "one"),
            line("beta", "two"),
            line("gamma", "three"),
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let all = Preview::read(&path, 10).unwrap();
        assert!(all.complete);
        assert_eq!(all.records.len(), 3);
        assert!(all.problems().is_empty());
        assert_eq!(all.find(0, "ALPHA"), Some(0), "goes round past the end");
        assert_eq!(all.find(0, "three"), Some(2));
        assert_eq!(all.find(0, "zzz"), None);
        assert_eq!(all.find(0, ""), None);
        let cut = Preview::read(&path, 2).unwrap();
        assert!(!cut.complete);
        assert_eq!(cut.records.len(), 2);
    }
}
