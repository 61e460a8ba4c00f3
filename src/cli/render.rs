//! Plain-text rendering helpers for CLI output.

use tunelab::data::scan::Lengths;
use tunelab::data::{Body, Location, Message, Record};

/// Shortens `text` to `max` characters, saying how much was cut.
pub fn clip(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}… ({} more chars)", n - max)
}

/// A record as labelled lines: `role  text`, continuation lines indented.
pub fn record(location: Location, r: &Record, max_chars: usize) -> String {
    let mut out = format!("── {location} ");
    out.push_str(&"─".repeat(60usize.saturating_sub(out.chars().count())));
    out.push('\n');
    let mut line = |label: &str, text: &str| {
        let text = clip(text, max_chars);
        let mut lines = text.lines();
        out.push_str(&format!("  {label:<11}{}\n", lines.next().unwrap_or("")));
        for l in lines {
            out.push_str(&format!("  {:<11}{l}\n", ""));
        }
    };
    let message = |m: &Message| {
        let mut text = m.text();
        for c in &m.tool_calls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("→ call {}({})", c.name, c.arguments));
        }
        text
    };
    match &r.body {
        Body::Text(t) => line("text", t),
        Body::Conversation(c) => {
            for m in &c.messages {
                line(m.role.as_str(), &message(m));
            }
        }
        Body::Preference(p) => {
            for m in &p.prompt {
                line(m.role.as_str(), &message(m));
            }
            for m in &p.chosen {
                line("✓ chosen", &message(m));
            }
            for m in &p.rejected {
                line("✗ rejected", &message(m));
            }
        }
        Body::Labeled(l) => {
            for m in l.prompt() {
                line(m.role.as_str(), &message(m));
            }
            // Thumbs up or down, as the rating was given.
            let tag = if l.desirable { "✓ good" } else { "✗ bad" };
            for m in l.completion() {
                line(tag, &message(m));
            }
        }
    }
    if !r.meta.is_empty() {
        let keys: Vec<String> = r
            .meta
            .iter()
            .map(|(k, v)| format!("{k}={}", clip(&v.to_string(), 40)))
            .collect();
        line("meta", &keys.join("  "));
    }
    out
}

/// `min 2 · p50 2 · mean 2.0 · p99 2 · max 2`.
pub fn lengths(l: &Lengths) -> String {
    if l.count == 0 {
        return "none".into();
    }
    format!(
        "min {} · p50 {} · mean {:.1} · p90 {} · p99 {} · max {}",
        l.min,
        l.quantile(0.5),
        l.mean(),
        l.quantile(0.9),
        l.quantile(0.99),
        l.max
    )
}

/// A row of a fixed-width table.
pub fn row(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        if i == 0 {
            out.push_str(&format!("{c:<w$}"));
        } else {
            out.push_str(&format!("  {c:>w$}"));
        }
    }
    out.trim_end().to_string()
}
