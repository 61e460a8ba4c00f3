//! Sweeps (#31): a 2×2 grid on the tiny preset queues four runs that differ in exactly the
//! two fields, `runs diff --sweep` ranks them by the metric, and the median pruner stops the
//! deliberately bad points (a learning rate of 0) at their first evaluation after step 0.

use crate::queue::{wait_until, Home};
use serde_json::Value;
use std::collections::BTreeSet;

/// A config file's leaves by dotted path.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &p, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn config(h: &Home, id: &str) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(h.data().join("runs").join(id).join("config.yaml")).unwrap();
    let v: Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    leaves(&v, "", &mut out);
    out
}

#[test]
fn a_grid_sweep_queues_every_point_ranks_them_and_prunes_the_bad_ones() {
    let h = Home::new();
    let out = h.ok(&[
        "sweep",
        "tiny-demo",
        "--set",
        "train.max_steps=6",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.save_every=0",
        "--set",
        "eval.tasks=[]",
        "--set",
        "samples.count=0",
        "--grid",
        "train.lr=0.01,0",
        "--grid",
        "lora.r=4,8",
        "--prune",
        "median",
    ]);
    let (sweep, ids) = (out[0].clone(), out[1..].to_vec());
    assert_eq!(ids.len(), 4, "{out:?}");
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(*id, format!("{sweep}-{}", k + 1));
    }
    // The four configs differ in exactly the two fields, with the grid's values.
    let configs: Vec<Vec<(String, Value)>> = ids.iter().map(|id| config(&h, id)).collect();
    let mut differ = BTreeSet::new();
    for (path, v) in &configs[0] {
        for c in &configs[1..] {
            if c.iter().find(|(p, _)| p == path).map(|(_, x)| x) != Some(v) {
                differ.insert(path.clone());
            }
        }
    }
    assert_eq!(
        differ,
        BTreeSet::from(["lora.r".to_string(), "train.lr".to_string()])
    );
    let value = |k: usize, path: &str| {
        configs[k]
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_f64().unwrap())
            .unwrap()
    };
    let points: Vec<(f64, f64)> = (0..4)
        .map(|k| (value(k, "train.lr"), value(k, "lora.r")))
        .collect();
    assert_eq!(points, [(0.01, 4.0), (0.01, 8.0), (0.0, 4.0), (0.0, 8.0)]);
    // Each run carries its sweep and point.
    let mark: Value = serde_json::from_slice(
        &std::fs::read(h.data().join("runs").join(&ids[2]).join("sweep.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(mark["sweep"], sweep.as_str());
    assert_eq!(mark["point"]["train.lr"], 0.0);
    assert_eq!(mark["point"]["lora.r"], 4);
    assert_eq!(mark["prune"]["startup"], 2);

    wait_until("the sweep to end", 900, &mut || {
        ids.iter()
            .all(|id| matches!(h.state(id).as_str(), "done" | "pruned"))
    });
    // The learning rate 0 points learn nothing: worse than the median of the two completed
    // runs at step 2, they stop there with a checkpoint.
    for id in &ids[..2] {
        assert_eq!(h.state(id), "done", "{id}");
        assert_eq!(h.status(id)["step"], 6);
    }
    for id in &ids[2..] {
        assert_eq!(h.state(id), "pruned", "{id}");
        assert_eq!(h.status(id)["step"], 2, "{id} stopped early");
        let events =
            crate::common::event_lines(&h.data().join("runs").join(id).join("events.jsonl"));
        let pruned = events.iter().find(|e| e["type"] == "pruned").unwrap();
        assert_eq!(pruned["metric"], "eval_loss");
        assert_eq!(pruned["compared"], 2);
        assert!(
            pruned["value"].as_f64().unwrap() > pruned["median"].as_f64().unwrap(),
            "{pruned}"
        );
        assert!(h
            .data()
            .join("runs")
            .join(id)
            .join("checkpoints/step-2")
            .is_dir());
    }

    // Ranked by eval loss, best first: the trained points ahead of the untrained ones.
    let rows: Value = serde_json::from_str(
        &h.ok(&["runs", "diff", "--sweep", &sweep, "--json"])
            .join("\n"),
    )
    .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let best: Vec<f64> = rows
        .iter()
        .map(|r| r["metrics"]["eval_loss"]["best"].as_f64().unwrap())
        .collect();
    assert!(best.windows(2).all(|w| w[0] <= w[1]), "{best:?}");
    assert!(best[1] < best[2], "trained runs beat lr 0: {best:?}");
    for r in rows {
        let fields: BTreeSet<&str> = r["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, BTreeSet::from(["lora.r", "train.lr"]), "{r}");
        assert!(ids.contains(&r["id"].as_str().unwrap().to_string()));
        assert!(r["dir"]
            .as_str()
            .unwrap()
            .ends_with(r["id"].as_str().unwrap()));
    }
    assert_eq!(rows[0]["fields"]["train.lr"], 0.01);
    assert_eq!(rows[0]["state"], "done");
    assert_eq!(rows[3]["state"], "pruned");
    // `runs compare --sweep` is the same ranking (the issue's spelling).
    let again: Value = serde_json::from_str(
        &h.ok(&["runs", "compare", "--sweep", &sweep, "--json"])
            .join("\n"),
    )
    .unwrap();
    assert_eq!(again.as_array().unwrap(), rows);
    // The same board as text, with the pruned runs last.
    let table = h.ok(&["runs", "diff", "--sweep", &sweep]).join("\n");
    assert!(table.contains("ranked by eval_loss (minimize)"), "{table}");
    assert!(
        table.contains("lora.r") && table.contains("train.lr"),
        "{table}"
    );
    let last = table.lines().last().unwrap();
    assert!(last.contains("pruned"), "{table}");
}

#[test]
fn bad_sweeps_are_refused_before_anything_is_queued() {
    let h = Home::new();
    for (args, want) in [
        (vec!["--grid", "lora.r=8"], "at least two values"),
        (vec!["--grid", "lora.r=0,8"], "point 1: lora.r"),
        (vec!["--grid", "lora.nope=1,2"], "point 1"),
        (
            vec!["--random", "2", "--range", "train.lr=0:1:log"],
            "a log range must be above 0",
        ),
        (
            vec!["--grid", "lora.r=4,8", "--grid", "lora.r=16,32"],
            "appears twice",
        ),
    ] {
        let mut all = vec!["sweep", "tiny-demo"];
        all.extend(args.iter().copied());
        let (code, _, err) = h.run(&all);
        assert_eq!(code, 2, "{all:?}: {err}");
        assert!(err.contains(want), "{all:?}: {err}");
    }
    assert!(h.queue()["rows"].as_array().unwrap().is_empty());
    let runs = h.data().join("runs");
    assert!(!runs.is_dir() || std::fs::read_dir(&runs).unwrap().next().is_none());
}
