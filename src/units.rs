//! Numbers as people read them, shared by the CLI and the workbench.

/// Bytes in GiB with `decimals` places (no unit).
pub fn gib(bytes: u64, decimals: usize) -> String {
    format!("{:.*}", decimals, bytes as f64 / (1u64 << 30) as f64)
}

/// Bytes with a binary unit: `512B`, `17.5K`, `3.2M`, `1.1G`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1}G", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}M", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}K", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}

/// Seconds as `HH:MM:SS`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// At most `n` characters, with `…` when cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}…",
            s.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(gib(3 << 29, 2), "1.50");
        assert_eq!(human_bytes(17_920), "17.5K");
        assert_eq!(clock(3725.0), "01:02:05");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
