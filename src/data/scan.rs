//! One streaming pass over a dataset that gathers everything `inspect` and `stats` show:
//! counts, roles, turns, per-field length distributions, duplicates and sample records.

use super::error::DataError;
use super::problem::{Location, Problem};
use super::record::{Body, Record, Role};
use super::{read_record, Dataset};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A length distribution in fixed memory: exact below 64, then 16 log-spaced buckets per
/// power of two (quantiles within about 6%).
#[derive(Debug, Clone, Default)]
pub struct Lengths {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
    buckets: Vec<u64>,
}

const EXACT: u64 = 64;
const SUB: u64 = 16;

fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let exp = 63 - u64::from(v.leading_zeros()); // >= 6
    let sub = (v >> (exp - 4)) & (SUB - 1);
    (EXACT + (exp - 6) * SUB + sub) as usize
}

fn bucket_low(b: usize) -> u64 {
    let b = b as u64;
    if b < EXACT {
        return b;
    }
    let exp = (b - EXACT) / SUB + 6;
    let sub = (b - EXACT) % SUB;
    (1u64 << exp) + (sub << (exp - 4))
}

impl Lengths {
    pub fn add(&mut self, v: u64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += v;
        let b = bucket_of(v);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1), clamped to the observed range.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let target = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return bucket_low(b).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Counts per bucket for a histogram of `bins` equal-width bins over [min, max].
    pub fn histogram(&self, bins: usize) -> Vec<(u64, u64, u64)> {
        if self.count == 0 || bins == 0 {
            return Vec::new();
        }
        let width = ((self.max - self.min) / bins as u64).max(1);
        let mut out: Vec<(u64, u64, u64)> = (0..bins as u64)
            .map(|i| (self.min + i * width, self.min + (i + 1) * width, 0))
            .collect();
        for (b, n) in self.buckets.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let v = bucket_low(b).clamp(self.min, self.max);
            let i = (((v - self.min) / width) as usize).min(bins - 1);
            out[i].2 += n;
        }
        out
    }

    pub fn summary(&self) -> LengthSummary {
        LengthSummary {
            count: self.count,
            mean: (self.mean() * 10.0).round() / 10.0,
            min: self.min,
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LengthSummary {
    pub count: u64,
    pub mean: f64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub records: u64,
    pub valid: u64,
    pub invalid: u64,
    /// The first few problems, for a hint in `inspect`.
    pub problems: Vec<Problem>,
    pub roles: BTreeMap<Role, u64>,
    /// Messages per conversation (prompt messages for preference pairs).
    pub turns: Lengths,
    /// Characters of text per record.
    pub chars: Lengths,
    /// Characters per field: top-level string fields by key, messages by `messages: ROLE`.
    pub fields: Vec<(String, Lengths)>,
    pub duplicates: u64,
    /// Unpaired (KTO) data: completions labelled desirable and undesirable.
    pub desirable: u64,
    pub undesirable: u64,
    /// (duplicate, first occurrence) pairs, the first few.
    pub duplicate_examples: Vec<(Location, Location)>,
    pub samples: Vec<(Location, Record)>,
}

impl Scan {
    fn field(&mut self, name: &str) -> &mut Lengths {
        let i = match self.fields.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.fields.push((name.to_string(), Lengths::default()));
                self.fields.len() - 1
            }
        };
        &mut self.fields[i].1
    }
}

/// Reads the whole dataset once. `samples` valid records are kept for display.
pub fn scan(dataset: &Dataset, samples: usize) -> Result<Scan, DataError> {
    let mut s = Scan::default();
    let mut seen: HashMap<u64, Location> = HashMap::new();
    for raw in dataset.file.records()? {
        let raw = raw?;
        let location = raw.location;
        let value = raw.value();
        s.records += 1;
        if let Ok(obj) = &value {
            for (k, v) in obj {
                if let Value::String(text) = v {
                    s.field(k).add(text.chars().count() as u64);
                }
            }
        }
        let record = match read_record(dataset.format, location, value) {
            Ok(r) => r,
            Err(problems) => {
                s.invalid += 1;
                if s.problems.len() < 5 {
                    s.problems
                        .extend(problems.into_iter().take(5 - s.problems.len()));
                }
                continue;
            }
        };
        s.valid += 1;
        for m in record.messages() {
            *s.roles.entry(m.role).or_default() += 1;
        }
        match &record.body {
            Body::Conversation(c) => s.turns.add(c.messages.len() as u64),
            Body::Preference(p) => {
                s.turns.add(p.prompt.len() as u64);
                let sides = [
                    ("prompt", &p.prompt),
                    ("chosen", &p.chosen),
                    ("rejected", &p.rejected),
                ];
                for (name, side) in sides {
                    let n: usize = side.iter().map(|m| m.char_len()).sum();
                    s.field(&format!("pair: {name}")).add(n as u64);
                }
            }
            Body::Labeled(l) => {
                s.turns.add(l.prompt_len as u64);
                if l.desirable {
                    s.desirable += 1;
                } else {
                    s.undesirable += 1;
                }
                for (name, side) in [("prompt", l.prompt()), ("completion", l.completion())] {
                    let n: usize = side.iter().map(|m| m.char_len()).sum();
                    s.field(&format!("rated: {name}")).add(n as u64);
                }
            }
            Body::Text(_) => {}
        }
        if !matches!(record.body, Body::Text(_)) {
            for m in record.messages() {
                s.field(&format!("messages: {}", m.role))
                    .add(m.char_len() as u64);
            }
        }
        s.chars.add(record.char_len() as u64);
        let fp = record.fingerprint();
        match seen.get(&fp) {
            Some(first) => {
                s.duplicates += 1;
                if s.duplicate_examples.len() < 10 {
                    s.duplicate_examples.push((location, *first));
                }
            }
            None => {
                seen.insert(fp, location);
            }
        }
        if s.samples.len() < samples {
            s.samples.push((location, record));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_their_lower_bound() {
        for v in [0u64, 1, 63, 64, 65, 100, 1000, 4095, 4096, 123_456] {
            let b = bucket_of(v);
            assert!(bucket_low(b) <= v, "{v}");
            assert!(v - bucket_low(b) <= v / 16 + 1, "{v}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut l = Lengths::default();
        for v in 1..=1000 {
            l.add(v);
        }
        assert_eq!(l.min, 1);
        assert_eq!(l.max, 1000);
        assert!((l.mean() - 500.5).abs() < 1e-9);
        let p50 = l.quantile(0.5) as f64;
        assert!((p50 - 500.0).abs() / 500.0 < 0.07, "{p50}");
        let p99 = l.quantile(0.99) as f64;
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "{p99}");
        assert_eq!(l.histogram(4).iter().map(|b| b.2).sum::<u64>(), 1000);
    }
}
