//! `data stats`: lengths, and tokens with `--model`.

use super::input::{open, summary_json, unusable, Input, TokenArgs};
use crate::cli::exit;
use crate::cli::render;
use anyhow::Context;
use serde_json::{json, Value};
use std::process::ExitCode;
use tunelab::data::scan::{self, Lengths};
use tunelab::data::Kind;
use tunelab::template::LengthPolicy;

pub(super) fn stats(input: &Input, tokens: &TokenArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let encoder = match tokens.encoder().transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    let s = match scan::scan(&ds, 0) {
        Ok(s) => s,
        Err(e) => return Ok(unusable(&e)),
    };
    let token_stats = match &encoder {
        Some(enc) => {
            let limits = tunelab::template::Limits {
                max_seq_len: tokens.max_seq_len,
                max_prompt_len: tokens.max_prompt_len,
                policy: tokens.length_policy,
            };
            match tunelab::template::token_stats(&ds, enc, limits) {
                Ok(t) => Some(t),
                Err(e) => return Ok(unusable(&e)),
            }
        }
        None => None,
    };
    if as_json {
        let fields: serde_json::Map<String, Value> = s
            .fields
            .iter()
            .map(|(n, l)| (n.clone(), summary_json(l)))
            .collect();
        let out = json!({
            "file": ds.file.path,
            "format": ds.format.name(),
            "kind": ds.kind().as_str(),
            "records": s.records,
            "valid": s.valid,
            "invalid": s.invalid,
            "fields": fields,
            "turns": summary_json(&s.turns),
            "chars": summary_json(&s.chars),
            "duplicates": s.duplicates,
            "duplicate_examples": s.duplicate_examples.iter().map(|(d, f)| json!({"duplicate": d.to_string(), "first": f.to_string()})).collect::<Vec<_>>(),
            "tokens": token_stats.as_ref().map(|t| json!({
                "examples": t.examples,
                "errors": t.errors,
                "first_errors": t.first_errors.iter().map(|(l, m)| json!({"location": l.to_string(), "message": m})).collect::<Vec<_>>(),
                "per_example": summary_json(&t.tokens),
                "trained_per_example": summary_json(&t.trained),
                "max_seq_len": t.max_seq_len,
                "max_prompt_len": t.pairs.then_some(t.max_prompt_len),
                "truncated": t.truncated,
                "dropped": t.dropped,
                "tool_records": t.tool_records,
                "tool_format": t.tool_format.to_string(),
                "tool_skipped": t.tool_skipped,
                "tool_failed": t.tool_failed,
                "ignored": t.ignored,
                "seconds": t.seconds,
                "examples_per_s": t.examples_per_s(),
            })),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("serialising stats")?
        );
        return Ok(ExitCode::from(exit::OK));
    }
    println!(
        "{} · {} · {} records ({} valid)",
        ds.file.path.display(),
        ds.format,
        s.records,
        s.valid
    );
    println!();
    println!("characters per field");
    let widths = [22, 8, 8, 7, 7, 7, 7, 8];
    let head = ["field", "count", "mean", "min", "p50", "p90", "p99", "max"].map(String::from);
    println!("{}", render::row(&head, &widths));
    let mut all: Vec<(String, &Lengths)> = s.fields.iter().map(|(n, l)| (n.clone(), l)).collect();
    all.push(("record (all text)".into(), &s.chars));
    if ds.kind() != Kind::Text {
        println!();
    }
    for (name, l) in all {
        let sm = l.summary();
        let cells = [
            name,
            sm.count.to_string(),
            format!("{:.1}", sm.mean),
            sm.min.to_string(),
            sm.p50.to_string(),
            sm.p90.to_string(),
            sm.p99.to_string(),
            sm.max.to_string(),
        ];
        println!("{}", render::row(&cells, &widths));
    }
    if ds.kind() != Kind::Text {
        println!();
        println!("messages per record  {}", render::lengths(&s.turns));
    }
    println!();
    println!("record length histogram (characters)");
    let hist = s.chars.histogram(10);
    let peak = hist.iter().map(|b| b.2).max().unwrap_or(1).max(1);
    for (lo, hi, n) in hist {
        let bar = "█".repeat(((n as f64 / peak as f64) * 40.0).round() as usize);
        println!("  {lo:>7}–{hi:<7} {n:>7}  {bar}");
    }
    println!();
    if s.duplicates == 0 {
        println!("duplicates  none");
    } else {
        let ex: Vec<String> = s
            .duplicate_examples
            .iter()
            .take(5)
            .map(|(d, f)| format!("{d} = {f}"))
            .collect();
        println!(
            "duplicates  {} records repeat an earlier one ({})",
            s.duplicates,
            ex.join(", ")
        );
    }
    if let Some(t) = token_stats {
        print_token_stats(&t, tokens);
    }
    Ok(ExitCode::from(exit::OK))
}

pub(super) fn print_token_stats(t: &tunelab::template::TokenStats, tokens: &TokenArgs) {
    println!();
    println!(
        "tokens ({} examples encoded in {:.2}s, {:.0} examples/s)",
        t.examples,
        t.seconds,
        t.examples_per_s()
    );
    println!("  per example   {}", render::lengths(&t.tokens));
    println!("  trained       {}", render::lengths(&t.trained));
    if t.pairs {
        println!(
            "  > {} tokens  {} pairs would be truncated (prompt kept to its last {} tokens, completions cut), {} dropped (no room for a completion)",
            t.max_seq_len, t.truncated, t.max_prompt_len, t.dropped
        );
    } else {
        let verb = match tokens.length_policy {
            LengthPolicy::Truncate => "truncated",
            LengthPolicy::Drop => "dropped",
        };
        let note = if t.dropped > 0 && tokens.length_policy == LengthPolicy::Truncate {
            format!(" ({} left with no trained token, dropped)", t.dropped)
        } else {
            String::new()
        };
        println!(
            "  > {} tokens  {} examples would be {verb}{note}",
            t.max_seq_len,
            t.truncated + t.dropped
        );
    }
    println!("  token histogram");
    let hist = t.tokens.histogram(10);
    let peak = hist.iter().map(|b| b.2).max().unwrap_or(1).max(1);
    for (lo, hi, n) in hist {
        let bar = "█".repeat(((n as f64 / peak as f64) * 40.0).round() as usize);
        println!("    {lo:>7}–{hi:<7} {n:>7}  {bar}");
    }
    if t.tool_records > 0 {
        let fate = match t.tool_format {
            tunelab::template::ToolFormat::Template if t.tool_failed > 0 => format!(
                "the chat template does not render them: {} fail under tool format template (--tool-format json writes them as <tool_call> text, drop leaves them out)",
                t.tool_failed
            ),
            tunelab::template::ToolFormat::Template => "the chat template renders them".into(),
            tunelab::template::ToolFormat::Json => "tool format json: written as <tool_call> text".into(),
            tunelab::template::ToolFormat::Drop => format!("tool format drop: {} left out", t.tool_skipped),
        };
        println!(
            "  tools         {} records carry tool calls or definitions; {fate}",
            t.tool_records
        );
    }
    for (field, n) in &t.ignored {
        println!("  warning       the chat template leaves out {field} in {n} records");
    }
    if t.errors > 0 {
        println!("  {} records could not be encoded; first:", t.errors);
        for (l, m) in &t.first_errors {
            println!("    {l}: {m}");
        }
    }
}
