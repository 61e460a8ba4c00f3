//! Numbers as people read them, shared by the CLI and the workbench.

/// Bytes in GiB with `decimals` places (no unit).
pub fn gib(bytes: u64, decimals: usize) -> String {
    format!("{:.*}", decimals, bytes as f64 / (1u64 << 30) as f64)
}

/// Bytes with a binary unit, the one byte format everywhere: `512 B`, `17.5 KiB`,
/// `3.2 MiB`, `1.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A count with a decimal unit: `950`, `205K`, `135M`, `7.6B` (parameters, tokens).
pub fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds as `HH:MM:SS`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Seconds for a glance: `4.2 s`, `48 s`, `3m 05s`, `2h 10m`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        let s = s.round() as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{}h {:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(gib(3 << 29, 2), "1.50");
        assert_eq!(bytes(17_920), "17.5 KiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(count(205_120), "205K");
        assert_eq!(duration(4.24), "4.2 s");
        assert_eq!(duration(48.4), "48 s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(7800.0), "2h 10m");
        assert_eq!(count(134_515_008), "135M");
        assert_eq!(count(7_615_616_512), "7.6B");
        assert_eq!(clock(3725.0), "01:02:05");
    }
}
