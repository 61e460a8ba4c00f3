//! Who may ask, and how often: API keys (`Authorization: Bearer KEY`, compared in constant
//! time, never logged) and a requests-per-minute window per key (or per client address when
//! the server has no keys). Plain data and clocks: the HTTP layer asks here and answers.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The keys a server accepts; none means every request is let in.
#[derive(Clone, Default)]
pub struct Keys(Vec<Vec<u8>>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} configured)", self.0.len())
    }
}

/// What a request's `Authorization` header amounted to (what the access log records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The server has no keys.
    Open,
    /// The key at this index matched.
    Matched(usize),
    Missing,
    Wrong,
}

impl KeyCheck {
    /// For the access log: whether a key matched, never which text was sent.
    pub fn log_word(self) -> &'static str {
        match self {
            KeyCheck::Open => "none",
            KeyCheck::Matched(_) => "ok",
            KeyCheck::Missing => "missing",
            KeyCheck::Wrong => "wrong",
        }
    }
}

/// Why the keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: an API key must be at least 8 characters and hold no spaces")]
    Weak(String),
}

impl Keys {
    /// Keys from `--api-key` values, a file of one key per line (blank lines and `#`
    /// comments skipped) and `TUNELAB_API_KEY` (comma-separated), in that order.
    pub fn gather(
        given: &[String],
        file: Option<&std::path::Path>,
        env: Option<&str>,
    ) -> Result<Keys, KeyError> {
        let mut keys: Vec<(String, String)> = given
            .iter()
            .map(|k| ("--api-key".to_string(), k.trim().to_string()))
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
                path: path.to_path_buf(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    keys.push((format!("{}: line {}", path.display(), i + 1), line.into()));
                }
            }
        }
        if let Some(env) = env {
            for k in env.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                keys.push(("TUNELAB_API_KEY".into(), k.into()));
            }
        }
        for (from, k) in &keys {
            if k.len() < 8 || k.chars().any(char::is_whitespace) {
                return Err(KeyError::Weak(from.clone()));
            }
        }
        Ok(Keys(
            keys.into_iter().map(|(_, k)| k.into_bytes()).collect(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks an `Authorization` header value against every key, each in constant time and
    /// all of them always, so neither a key's content nor which key matched shows in the
    /// time taken.
    pub fn check(&self, header: Option<&str>) -> KeyCheck {
        if self.0.is_empty() {
            return KeyCheck::Open;
        }
        let Some(sent) = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return KeyCheck::Missing;
        };
        let mut matched = None;
        for (i, k) in self.0.iter().enumerate() {
            if constant_time_eq(sent.as_bytes(), k) && matched.is_none() {
                matched = Some(i);
            }
        }
        matched.map_or(KeyCheck::Wrong, KeyCheck::Matched)
    }
}

/// Equal bytes, compared without an early exit: the time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Whose requests a rate window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Key(usize),
    Address(IpAddr),
}

/// At most `per_minute` requests per caller in any 60-second window.
#[derive(Debug)]
pub struct RateLimit {
    per_minute: usize,
    windows: Mutex<HashMap<Caller, VecDeque<Instant>>>,
}

/// Callers remembered at most (addresses of a server without keys); the quietest are
/// forgotten first, so memory stays bounded whoever connects.
const MAX_CALLERS: usize = 4096;
const WINDOW: Duration = Duration::from_secs(60);

impl RateLimit {
    /// `per_minute` 0 is no limit.
    pub fn new(per_minute: usize) -> Self {
        RateLimit {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(&self) -> usize {
        self.per_minute
    }

    /// Counts a request of `caller` at `now`; `Err(wait)` when it is over the limit, with how
    /// long until the window has room (a request refused is not counted).
    pub fn admit(&self, caller: Caller, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        if windows.len() >= MAX_CALLERS && !windows.contains_key(&caller) {
            windows.retain(|_, w| w.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if windows.len() >= MAX_CALLERS {
                let quietest = windows
                    .iter()
                    .min_by_key(|(_, w)| w.back().copied())
                    .map(|(c, _)| *c);
                if let Some(c) = quietest {
                    windows.remove(&c);
                }
            }
        }
        let w = windows.entry(caller).or_default();
        while w.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            w.pop_front();
        }
        if w.len() >= self.per_minute {
            let oldest = w.front().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        w.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_in_full_and_only_in_full() {
        let k = Keys::gather(&["sk-one-12345".into()], None, Some("sk-two-67890, ")).unwrap();
        assert_eq!(k.check(Some("Bearer sk-one-12345")), KeyCheck::Matched(0));
        assert_eq!(k.check(Some("Bearer sk-two-67890")), KeyCheck::Matched(1));
        assert_eq!(k.check(Some("Bearer sk-one-1234")), KeyCheck::Wrong);
        assert_eq!(k.check(Some("Bearer sk-one-123456")), KeyCheck::Wrong);
        assert_eq!(k.check(Some("sk-one-12345")), KeyCheck::Missing);
        assert_eq!(k.check(Some("Bearer ")), KeyCheck::Missing);
        assert_eq!(k.check(None), KeyCheck::Missing);
        assert_eq!(Keys::default().check(None), KeyCheck::Open);
        assert!(matches!(
            Keys::gather(&["short".into()], None, None),
            Err(KeyError::Weak(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys");
        std::fs::write(&f, "# team keys\nsk-file-key-1\n\n  sk-file-key-2  \n").unwrap();
        let k = Keys::gather(&[], Some(&f), None).unwrap();
        assert_eq!(k.check(Some("Bearer sk-file-key-2")), KeyCheck::Matched(1));
        assert!(format!("{k:?}").contains("2 configured") && !format!("{k:?}").contains("sk-"));
    }

    #[test]
    fn the_window_admits_per_minute_then_says_when() {
        let r = RateLimit::new(2);
        let t0 = Instant::now();
        let me = Caller::Key(0);
        assert!(r.admit(me, t0).is_ok());
        assert!(r.admit(me, t0 + Duration::from_secs(10)).is_ok());
        let wait = r.admit(me, t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(
            r.admit(Caller::Key(1), t0).is_ok(),
            "each key has its own window"
        );
        assert!(r.admit(me, t0 + Duration::from_secs(61)).is_ok());
        assert!(RateLimit::new(0).admit(me, t0).is_ok());
    }

    #[test]
    fn callers_stay_bounded() {
        let r = RateLimit::new(5);
        let t0 = Instant::now();
        for i in 0..(MAX_CALLERS as u32 + 100) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(r.admit(Caller::Address(ip), t0).is_ok());
        }
        assert!(r.windows.lock().unwrap().len() <= MAX_CALLERS);
    }
}
