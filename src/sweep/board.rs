//! Runs side by side from what they recorded: the config fields in which they differ and
//! each metric's final and best value, ranked by the first metric. `tunelab runs diff` prints
//! it and the Runs tab's overlay chart keys its legend by the same fields. Nothing is
//! loaded or scored: a board reads `config.yaml`, `status.json`, `events.jsonl` and
//! `sweep.json`.

use super::mark::SweepMark;
use super::metric::{series, Direction, Outcome};
use crate::runs::{read_events, summarize, RunDir};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One run's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub dir: PathBuf,
    pub state: String,
    /// The run's value of every field in which the runs differ (null where its config has
    /// none).
    pub fields: Map<String, Value>,
    /// Each metric's final and best value.
    pub metrics: BTreeMap<String, Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
}

/// Runs ranked by a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Board {
    /// The metrics, the first ranking.
    pub metrics: Vec<String>,
    pub direction: Direction,
    /// The config fields in which the runs differ, in the configs' order.
    pub fields: Vec<String>,
    /// Best first; runs without the metric last.
    pub rows: Vec<Row>,
}

/// A config file's leaves by dotted path (lists are leaves); an unreadable file has none.
pub fn config_leaves(path: &Path) -> Map<String, Value> {
    fn walk(v: &Value, prefix: &str, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(x, &p, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let value: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_yaml::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let mut out = Map::new();
    if value.is_object() {
        walk(&value, "", &mut out);
    }
    out
}

/// The paths whose values are not the same in every one of `configs` (a missing path
/// counts as null), in first-seen order.
pub fn differing(configs: &[Map<String, Value>]) -> Vec<String> {
    let mut paths: Vec<&String> = Vec::new();
    for c in configs {
        for k in c.keys() {
            if !paths.contains(&k) {
                paths.push(k);
            }
        }
    }
    paths
        .into_iter()
        .filter(|p| {
            let first = configs.first().and_then(|c| c.get(*p));
            configs.iter().any(|c| c.get(*p) != first)
        })
        .cloned()
        .collect()
}

impl Board {
    /// Reads `runs` and ranks them by `metrics[0]` (`direction`, else the runs' sweep's,
    /// else the metric name's usual one).
    pub fn read(runs: &[RunDir], metrics: &[String], direction: Option<Direction>) -> Board {
        let metrics: Vec<String> = if metrics.is_empty() {
            vec![super::metric::DEFAULT_METRIC.to_string()]
        } else {
            metrics.to_vec()
        };
        let marks: Vec<Option<SweepMark>> = runs.iter().map(SweepMark::read).collect();
        let direction = direction.unwrap_or_else(|| {
            marks
                .iter()
                .flatten()
                .find(|m| m.metric == metrics[0])
                .map_or_else(|| Direction::guess(&metrics[0]), |m| m.direction)
        });
        let configs: Vec<Map<String, Value>> =
            runs.iter().map(|r| config_leaves(&r.config())).collect();
        let fields = differing(&configs);
        let mut rows: Vec<Row> = runs
            .iter()
            .zip(configs)
            .zip(marks)
            .map(|((run, config), mark)| {
                let (events, _) = read_events(&run.events_path(), 0).unwrap_or_default();
                let outcomes = metrics
                    .iter()
                    .map(|m| {
                        let d = if *m == metrics[0] {
                            direction
                        } else {
                            Direction::guess(m)
                        };
                        (m.clone(), Outcome::of(&series(&events, m), d))
                    })
                    .collect();
                let s = summarize(run);
                Row {
                    id: s.id.clone(),
                    dir: run.root.clone(),
                    state: s.state_label(),
                    fields: fields
                        .iter()
                        .map(|f| (f.clone(), config.get(f).cloned().unwrap_or(Value::Null)))
                        .collect(),
                    metrics: outcomes,
                    sweep: mark.map(|m| m.sweep),
                }
            })
            .collect();
        let key = metrics[0].clone();
        rows.sort_by(|a, b| {
            let (x, y) = (a.metrics[&key].best, b.metrics[&key].best);
            match (x, y) {
                (Some(x), Some(y)) if direction.better(x, y) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) if direction.better(y, x) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.id.cmp(&b.id),
            }
        });
        Board {
            metrics,
            direction,
            fields,
            rows,
        }
    }

    /// The best run: the first row when it has the metric.
    pub fn best(&self) -> Option<&Row> {
        self.rows
            .first()
            .filter(|r| r.metrics[&self.metrics[0]].best.is_some())
    }
}

/// A row's differing fields as `path=value` pairs (`lora.r=8 train.lr=0.01`), or its id
/// when the runs differ in nothing.
pub fn legend(row: &Row) -> String {
    if row.fields.is_empty() {
        return row.id.clone();
    }
    row.fields
        .iter()
        .map(|(k, v)| format!("{k}={}", super::mark::value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every run of sweep `id` under `root` (the data folder's runs), by their marks.
pub fn sweep_members(root: &Path, id: &str) -> Vec<RunDir> {
    let mut found: Vec<(usize, RunDir)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| RunDir::new(e.path()))
        .filter_map(|r| {
            SweepMark::read(&r)
                .filter(|m| m.sweep == id)
                .map(|m| (m.index, r))
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_paths_ignore_equal_ones_and_count_missing_as_null() {
        let c = |y: &str| {
            let v: Value = serde_yaml::from_str(y).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.yaml");
            std::fs::write(&p, serde_yaml::to_string(&v).unwrap()).unwrap();
            config_leaves(&p)
        };
        let a = c("lora: {r: 8, alpha: 16}\ntrain: {lr: 0.01, target: [a, b]}");
        let b = c("lora: {r: 16, alpha: 16}\ntrain: {lr: 0.01, target: [a]}");
        let d = c("lora: {r: 8, alpha: 16, extra: 1}\ntrain: {lr: 0.01, target: [a, b]}");
        assert_eq!(
            differing(&[a.clone(), b, d]),
            ["lora.r", "train.target", "lora.extra"]
        );
        assert!(differing(&[a.clone(), a]).is_empty());
    }
}
