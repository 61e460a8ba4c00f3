//! `tunelab doctor`: the core's [`tunelab::doctor::Report`] as one screen of text, or as
//! JSON. A diagnosis, so it exits 0 whatever it finds.

use super::exit;
use clap::Args;
use std::process::ExitCode;
use tunelab::doctor::{self, Advice, Report, Section};
use tunelab::units::bytes;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object (the same facts; key names only, never their values).
    #[arg(long)]
    pub json: bool,
}

/// The text report's section headers, in order.
pub const HEADERS: [(Section, &str); 8] = [
    (Section::Build, "build"),
    (Section::Gpu, "GPUs"),
    (Section::Memory, "memory"),
    (Section::Disk, "disk"),
    (Section::HfCache, "Hugging Face cache"),
    (Section::ApiKeys, "API keys (names only)"),
    (Section::LlamaCpp, "llama.cpp tools on PATH"),
    (Section::Engines, "engines (tunelab train --engine)"),
];

pub fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = doctor::gather(&doctor::Inputs::from_env());
    let out = if a.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        text(&report)
    };
    super::manual::print(out.as_bytes())?;
    Ok(ExitCode::from(exit::OK))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn free_of(free: Option<u64>, total: Option<u64>) -> String {
    match (free, total) {
        (Some(f), Some(t)) => format!("{} free of {}", bytes(f), bytes(t)),
        (Some(f), None) => format!("{} free", bytes(f)),
        _ => "free space unknown".into(),
    }
}

/// The report as text: each section's facts, then its advice (`→ …`).
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for (i, (section, header)) in HEADERS.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(header);
        out.push('\n');
        for line in facts(r, *section) {
            out.push_str(&format!("  {line}\n"));
        }
        for Advice { text, .. } in r.advice.iter().filter(|a| a.section == *section) {
            out.push_str(&format!("  → {text}\n"));
        }
    }
    out
}

fn facts(r: &Report, section: Section) -> Vec<String> {
    match section {
        Section::Build => {
            let b = &r.build;
            let cpu: Vec<String> = b
                .cpu_features
                .iter()
                .map(|f| format!("{} {}", f.name, yes(f.detected)))
                .collect();
            let nvcc = match &b.nvcc {
                Some(n) => format!(
                    "nvcc {} ({}{})",
                    n.version.as_deref().unwrap_or("version unknown"),
                    n.path,
                    if n.on_path { "" } else { ", not on PATH" }
                ),
                None => "nvcc not found".into(),
            };
            let mut lines = vec![
                format!(
                    "tunelab {} ({}) · {} · {} cores",
                    b.version, b.profile, b.target, b.cpu_cores
                ),
                format!(
                    "CUDA {} · {nvcc}",
                    if b.cuda_compiled {
                        "compiled in"
                    } else {
                        "not compiled in (CPU only)"
                    }
                ),
            ];
            if !cpu.is_empty() {
                lines.insert(1, format!("CPU  {}", cpu.join(" · ")));
            }
            lines
        }
        Section::Gpu => {
            let g = &r.gpu;
            let mut lines: Vec<String> = g
                .devices
                .iter()
                .map(|d| {
                    format!(
                        "GPU {} · {} · {}",
                        d.index,
                        d.name,
                        free_of(Some(d.free_bytes), Some(d.total_bytes))
                    )
                })
                .collect();
            if let Some(v) = &g.driver_version {
                lines.push(format!(
                    "driver {v} (CUDA {})",
                    g.cuda_driver_version.as_deref().unwrap_or("unknown")
                ));
            }
            match g.cuda_opens {
                Some(true) => lines.push("CUDA device 0 opens".into()),
                Some(false) => lines.push("CUDA device 0 does not open".into()),
                None => {}
            }
            if let Some(why) = &g.why_none {
                lines.push(format!("none: {why}"));
            }
            lines
        }
        Section::Memory => vec![match (r.memory.available_bytes, r.memory.total_bytes) {
            (Some(a), Some(t)) => format!("RAM {} available of {}", bytes(a), bytes(t)),
            _ => "RAM unknown".into(),
        }],
        Section::Disk => {
            let f = &r.folders;
            vec![
                format!(
                    "data    {} ({})",
                    f.data,
                    free_of(f.data_disk_free_bytes, f.data_disk_total_bytes)
                ),
                format!("config  {}", f.config),
                format!("state   {}", f.state),
                format!("cache   {}", f.cache),
            ]
        }
        Section::HfCache => {
            let h = &r.hf_cache;
            let mut lines = vec![format!(
                "{}{} · HF_HUB_OFFLINE {} · {} model{}",
                h.path,
                h.disk_free_bytes
                    .map(|f| format!(" ({} free)", bytes(f)))
                    .unwrap_or_default(),
                if h.offline { "set" } else { "not set" },
                h.models.len(),
                if h.models.len() == 1 { "" } else { "s" }
            )];
            let width = h.models.iter().map(|m| m.id.len()).max().unwrap_or(0);
            for m in &h.models {
                let params = m
                    .params
                    .map(|p| format!(" · {} params", tunelab::units::count(p)))
                    .unwrap_or_default();
                let status = match &m.unsupported {
                    None => "supported".to_string(),
                    Some(why) => format!("unsupported: {why}"),
                };
                lines.push(format!(
                    "{:<width$}  {}{params} · {} · {status}",
                    m.id,
                    m.arch.as_deref().unwrap_or("unknown architecture"),
                    bytes(m.disk_bytes)
                ));
            }
            lines
        }
        Section::ApiKeys => doctor::api_keys()
            .iter()
            .map(|k| {
                let set = r.api_keys.get(k.name).copied().unwrap_or(false);
                format!(
                    "{:<18} {:<8} {}",
                    k.name,
                    if set { "set" } else { "not set" },
                    k.enables
                )
            })
            .collect(),
        Section::LlamaCpp => r
            .llama_cpp
            .iter()
            .map(|t| match &t.path {
                Some(p) => format!("{:<17} {p}", t.name),
                None => format!("{:<17} not found: {}", t.name, t.enables),
            })
            .collect(),
        Section::Engines => r
            .engines
            .iter()
            .map(|e| match (&e.version, &e.problem) {
                (Some(v), _) => format!(
                    "{:<13} {v} ({})",
                    e.name,
                    e.python.as_deref().unwrap_or("?")
                ),
                (None, Some(p)) => format!("{:<13} {p}", e.name),
                (None, None) => e.name.clone(),
            })
            .collect(),
    }
}
