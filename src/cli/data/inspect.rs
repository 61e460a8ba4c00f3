//! `data inspect` and `data validate`.

use super::input::{open, summary_json, unusable, Input};
use crate::cli::exit;
use crate::cli::render;
use serde_json::{json, Value};
use std::process::ExitCode;
use tunelab::data::scan::{self};
use tunelab::data::{Dataset, Kind};

pub(super) fn inspect(input: &Input, as_json: bool, samples: usize) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let s = match scan::scan(&ds, samples) {
        Ok(s) => s,
        Err(e) => return Ok(unusable(&e)),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&inspect_json(&ds, &s))?);
    } else {
        print_inspect(&ds, &s);
    }
    Ok(ExitCode::from(exit::OK))
}

pub(super) fn inspect_json(ds: &Dataset, s: &scan::Scan) -> Value {
    let roles: serde_json::Map<String, Value> = s
        .roles
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), json!(n)))
        .collect();
    let mut out = json!({
        "file": ds.file.path,
        "container": ds.file.container.name(),
        "bytes": ds.file.bytes,
        "format": ds.format.name(),
        "evidence": ds.evidence,
        "kind": ds.kind().as_str(),
        "records": s.records,
        "valid": s.valid,
        "invalid": s.invalid,
        "roles": roles,
        "turns": summary_json(&s.turns),
        "chars": summary_json(&s.chars),
        "samples": s.samples.iter().map(|(loc, r)| json!({"location": loc.to_string(), "record": r.to_canonical_json()})).collect::<Vec<_>>(),
    });
    if ds.kind() == Kind::Unpaired {
        out["labels"] = json!({"desirable": s.desirable, "undesirable": s.undesirable});
    }
    out
}

pub(super) fn print_inspect(ds: &Dataset, s: &scan::Scan) {
    println!(
        "file      {} ({}, {})",
        ds.file.path.display(),
        ds.file.container.name(),
        tunelab::units::bytes(ds.file.bytes)
    );
    println!("format    {}  ({})", ds.format, ds.evidence);
    println!("kind      {}", ds.kind());
    println!(
        "records   {} ({} valid, {} with problems)",
        s.records, s.valid, s.invalid
    );
    if ds.kind() == Kind::Unpaired {
        println!(
            "labels    {} desirable (true) · {} undesirable (false): train.method kto learns \
             from both; sft trains only the desirable ones",
            s.desirable, s.undesirable
        );
    }
    if !s.roles.is_empty() {
        let roles: Vec<String> = s.roles.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("roles     {}", roles.join(" · "));
    }
    if ds.kind() != Kind::Text {
        println!("turns     {}", render::lengths(&s.turns));
    }
    println!("chars     {}", render::lengths(&s.chars));
    if let Some(p) = s.problems.first() {
        println!("problems  first: {p}  (run `tunelab data validate` for all)");
    }
    for (loc, r) in &s.samples {
        println!();
        print!("{}", render::record(*loc, r, 400));
    }
}

pub(super) fn validate(input: &Input, as_json: bool, limit: usize) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let path = ds.file.path.display().to_string();
    let mut records = 0u64;
    let mut bad = 0u64;
    let mut total = 0u64;
    let mut listed = Vec::new();
    let items = match ds.items() {
        Ok(i) => i,
        Err(e) => return Ok(unusable(&e)),
    };
    for item in items {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                // The container broke mid-way: report what was found, then the fatal error.
                for p in &listed {
                    eprintln!("{path}: {p}");
                }
                return Ok(unusable(&e));
            }
        };
        records += 1;
        if let Err(problems) = item.result {
            bad += 1;
            total += problems.len() as u64;
            for p in problems {
                if listed.len() < limit {
                    if !as_json {
                        println!("{path}: {p}");
                    }
                    listed.push(p);
                }
            }
        }
    }
    if as_json {
        let out = json!({
            "file": ds.file.path,
            "format": ds.format.name(),
            "kind": ds.kind().as_str(),
            "records": records,
            "invalid": bad,
            "problems_total": total,
            "problems": listed.iter().map(|p| json!({"location": p.location.to_string(), "field": p.field, "message": p.message})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if bad == 0 {
        println!("{path}: {records} records, all valid ({})", ds.format);
    } else {
        if total as usize > listed.len() {
            println!(
                "… {} more problems not shown (raise --limit)",
                total as usize - listed.len()
            );
        }
        println!(
            "{path}: {bad} of {records} records have problems ({total} problems, {})",
            ds.format
        );
    }
    Ok(ExitCode::from(if bad == 0 {
        exit::OK
    } else {
        exit::PROBLEMS
    }))
}
