//! Command rewards: any executable scores completions. A batch is split into `workers`
//! contiguous chunks, one process per chunk, all running at once; each reads JSON Lines on
//! stdin (one [`Scored`] object per completion) and writes exactly one finite number per
//! line on stdout. Everything that can go wrong is an error naming the command and the
//! batch lines at fault: a crash (with the end of its stderr), a timeout, too few or too
//! many lines, a line that is not a finite number. Nothing is scored 0 in place of an
//! answer.

use super::error::RewardError;
use super::process::{self, Failure, Finished};
use super::scored::Scored;
use crate::config::grpo::CommandReward;
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How much of a failed command's stderr an error quotes (its end: where tracebacks say
/// what happened).
const STDERR_TAIL: usize = 600;

#[derive(Debug, Clone)]
pub struct Command {
    program: PathBuf,
    args: Vec<String>,
    /// Where it runs: the run config's folder, so relative arguments mean what they say there.
    dir: PathBuf,
    /// The command line as the config wrote it, for messages.
    line: String,
    timeout_s: f64,
    workers: usize,
}

impl Command {
    /// The command with its program found: a path with a `/` relative to `base_dir`, a bare
    /// name on `PATH`. It must be an executable file.
    pub fn new(spec: &CommandReward, base_dir: &Path) -> Result<Self, String> {
        let line = spec.run.join(" ");
        let Some(name) = spec.run.first().filter(|p| !p.trim().is_empty()) else {
            return Err("command.run must name a program (and its arguments)".into());
        };
        if !(spec.timeout_s > 0.0 && spec.timeout_s.is_finite()) {
            return Err(format!(
                "command.timeout_s must be > 0 (it is {})",
                spec.timeout_s
            ));
        }
        if spec.workers == 0 {
            return Err("command.workers must be at least 1".into());
        }
        let program =
            find_program(name, base_dir).map_err(|why| format!("command `{line}`: {why}"))?;
        Ok(Command {
            program,
            args: spec.run[1..].to_vec(),
            dir: base_dir.to_path_buf(),
            line,
            timeout_s: spec.timeout_s,
            workers: spec.workers,
        })
    }

    /// One score per completion of `batch`, in order.
    pub fn score(&self, reward: &str, batch: &[Scored]) -> Result<Vec<f64>, RewardError> {
        let chunks = chunks(batch.len(), self.workers);
        let results: Vec<Result<Vec<f64>, RewardError>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|r| s.spawn(|| self.score_chunk(reward, batch, r.clone())))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(self.error(reward, "its worker thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut out = Vec::with_capacity(batch.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    fn score_chunk(
        &self,
        reward: &str,
        batch: &[Scored],
        range: Range<usize>,
    ) -> Result<Vec<f64>, RewardError> {
        let mut input = Vec::new();
        for s in &batch[range.clone()] {
            serde_json::to_writer(&mut input, s)
                .map_err(|e| self.error(reward, format!("cannot write its input as JSON: {e}")))?;
            input.push(b'\n');
        }
        let limit = Duration::from_secs_f64(self.timeout_s);
        let lines = lines_of(&range);
        let done = process::run(&self.program, &self.args, &self.dir, input, limit).map_err(
            |f| match f {
                Failure::Start(source) => self.process_error(reward, "cannot start it", source),
                Failure::Wait(source) => {
                    self.process_error(reward, &format!("waiting for it on {lines}"), source)
                }
                Failure::TimedOut { exited } => self.error(
                    reward,
                    format!(
                        "timed out after {} s on {lines} (killed{})",
                        self.timeout_s,
                        if exited {
                            "; it had exited, but something it started kept its output open"
                        } else {
                            ""
                        }
                    ),
                ),
            },
        )?;
        self.read_scores(reward, &done, range)
    }

    /// The scores a finished process wrote for `range`.
    fn read_scores(
        &self,
        reward: &str,
        done: &Finished,
        range: Range<usize>,
    ) -> Result<Vec<f64>, RewardError> {
        let lines = lines_of(&range);
        let stderr = tail(&done.stderr);
        if !done.status.success() {
            let how = match (done.status.code(), done.status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => "failed".into(),
            };
            let said = if stderr.is_empty() {
                "; nothing on stderr".to_string()
            } else {
                format!("; stderr ends: {stderr}")
            };
            return Err(self.error(reward, format!("{how} on {lines}{said}")));
        }
        let text = String::from_utf8_lossy(&done.stdout);
        // Blank lines at the very end (an extra `print()`) are forgiven; any other line counts.
        let written: Vec<&str> = text.trim_end().lines().collect();
        let mut out = Vec::with_capacity(range.len());
        for (k, raw) in written.iter().enumerate().take(range.len()) {
            let at = range.start + k + 1;
            let v = raw.trim();
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => out.push(x),
                Ok(_) => {
                    return Err(self.error(
                        reward,
                        format!("line {at} of the batch: {v:?} is not a finite number"),
                    ))
                }
                Err(_) => {
                    return Err(self.error(
                        reward,
                        format!(
                            "line {at} of the batch: {:?} is not a number (one number per input line expected)",
                            crate::synth::provider::clip(v, 80)
                        ),
                    ))
                }
            }
        }
        if written.len() != range.len() {
            let said = if stderr.is_empty() {
                String::new()
            } else {
                format!("; stderr ends: {stderr}")
            };
            return Err(self.error(
                reward,
                format!(
                    "wrote {} line{} for the {} completions on {lines} (one number per input line expected){said}",
                    written.len(),
                    if written.len() == 1 { "" } else { "s" },
                    range.len(),
                ),
            ));
        }
        Ok(out)
    }

    fn error(&self, reward: &str, message: String) -> RewardError {
        RewardError::Command {
            reward: reward.to_string(),
            command: self.line.clone(),
            message,
        }
    }

    fn process_error(&self, reward: &str, what: &str, source: std::io::Error) -> RewardError {
        RewardError::Process {
            reward: reward.to_string(),
            command: self.line.clone(),
            what: what.to_string(),
            source,
        }
    }
}

/// `n` items split into at most `workers` contiguous, near-equal ranges (none empty).
pub fn chunks(n: usize, workers: usize) -> Vec<Range<usize>> {
    let k = workers.clamp(1, n.max(1));
    let (base, extra) = (n / k, n % k);
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for i in 0..k {
        let len = base + usize::from(i < extra);
        if len > 0 {
            out.push(start..start + len);
        }
        start += len;
    }
    out
}

/// `lines 3–4 of the batch` (1-based), or `line 3 of the batch`.
fn lines_of(r: &Range<usize>) -> String {
    if r.len() == 1 {
        format!("line {} of the batch", r.start + 1)
    } else {
        format!("lines {}–{} of the batch", r.start + 1, r.end)
    }
}

/// The end of a stream's text, whitespace collapsed, cut at a character boundary.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = flat.chars().count();
    if count <= STDERR_TAIL {
        flat
    } else {
        let cut: String = flat.chars().skip(count - STDERR_TAIL).collect();
        format!("…{cut}")
    }
}

/// `name` as an executable file: with a `/`, relative to `base_dir`; else on `PATH`.
fn find_program(name: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if name.contains('/') {
        let p = base_dir.join(name);
        return match std::fs::metadata(&p) {
            Err(e) => Err(format!("{}: {e}", p.display())),
            Ok(m) if !m.is_file() => Err(format!("{}: not a file", p.display())),
            Ok(_) if !is_executable(&p) => Err(format!(
                "{}: not executable (chmod +x it, and give it a #! line)",
                p.display()
            )),
            Ok(_) => Ok(p),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
    {
        return Ok(p);
    }
    let beside = base_dir.join(name);
    Err(if beside.is_file() {
        format!(
            "{name} is not on PATH; to run the one in {}, write ./{name}",
            base_dir.display()
        )
    } else {
        format!("{name} is not on PATH")
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    /// An executable `#!/bin/sh` script in `dir`.
    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn command(dir: &Path, name: &str, timeout_s: f64, workers: usize) -> Command {
        let spec = CommandReward {
            run: vec![format!("./{name}"), "--flag".into()],
            timeout_s,
            workers,
        };
        Command::new(&spec, dir).unwrap()
    }

    struct Batch {
        completions: Vec<String>,
        messages: Vec<Value>,
        metadata: Map<String, Value>,
    }

    impl Batch {
        fn new(completions: &[&str]) -> Batch {
            let mut metadata = Map::new();
            metadata.insert("id".into(), json!(7));
            Batch {
                completions: completions.iter().map(|c| c.to_string()).collect(),
                messages: vec![json!({"role": "user", "content": "Say a number."})],
                metadata,
            }
        }

        fn scored(&self) -> Vec<Scored<'_>> {
            self.completions
                .iter()
                .map(|c| Scored {
                    prompt: "Say a number.",
                    messages: &self.messages,
                    completion: c,
                    completion_tokens: 3,
                    reference: Some("42"),
                    metadata: &self.metadata,
                })
                .collect()
        }
    }

    fn message(e: RewardError) -> String {
        e.to_string()
    }

    #[test]
    fn chunks_are_contiguous_near_equal_and_never_empty() {
        assert_eq!(chunks(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(chunks(2, 4), vec![0..1, 1..2]);
        assert_eq!(chunks(5, 1), vec![0..5]);
        assert!(chunks(0, 4).is_empty());
    }

    #[test]
    fn scores_come_back_in_batch_order_across_workers() {
        let dir = tempfile::tempdir().unwrap();
        // Checks each input line's fields, answers the number in its completion (`c5` → 5),
        // and notes its process id (it runs in the reward's folder).
        script(
            dir.path(),
            "score.sh",
            r#"[ "$1" = --flag ] || exit 9
echo $$ >> pids
while IFS= read -r line; do
  case "$line" in *'"prompt":"Say a number."'*) ;; *) echo "no prompt: $line" >&2; exit 8;; esac
  case "$line" in *'"reference":"42"'*) ;; *) echo "no reference" >&2; exit 8;; esac
  case "$line" in *'"metadata":{"id":7}'*) ;; *) echo "no metadata" >&2; exit 8;; esac
  case "$line" in *'"completion_tokens":3'*) ;; *) echo "no tokens" >&2; exit 8;; esac
  case "$line" in *'"messages":[{"role":"user"'*) ;; *) echo "no messages" >&2; exit 8;; esac
  echo "$line" | sed -n 's/.*"completion":"c\([0-9]*\)".*/\1.5/p'
done"#,
        );
        let b = Batch::new(&["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
        let c = command(dir.path(), "score.sh", 5.0, 3);
        let got = c.score("numbers", &b.scored()).unwrap();
        assert_eq!(got, vec![0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]);
        let pids = std::fs::read_to_string(dir.path().join("pids")).unwrap();
        assert_eq!(
            pids.lines().collect::<std::collections::HashSet<_>>().len(),
            3,
            "{pids}"
        );
        assert_eq!(c.score("numbers", &[]).unwrap(), Vec::<f64>::new());
    }

    #[test]
    fn a_big_batch_echoed_to_stderr_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        // Its stderr fills while its stdin is still being written: both must flow at once.
        script(dir.path(), "echo.sh", "tee /dev/stderr | sed 's/.*/1/'");
        let long = "x".repeat(10_000);
        let texts: Vec<&str> = vec![long.as_str(); 60];
        let b = Batch::new(&texts);
        let got = command(dir.path(), "echo.sh", 10.0, 2)
            .score("echo", &b.scored())
            .unwrap();
        assert_eq!(got, vec![1.0; 60]);
    }

    #[test]
    fn a_crash_names_the_command_its_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "crash.sh",
            "cat > /dev/null\necho 'Traceback: KeyError: answer' >&2\nexit 3",
        );
        let b = Batch::new(&["c0", "c1", "c2", "c3"]);
        let err = message(
            command(dir.path(), "crash.sh", 5.0, 2)
                .score("crashy", &b.scored())
                .unwrap_err(),
        );
        assert_eq!(
            err,
            "reward `crashy`: command `./crash.sh --flag`: exited with status 3 on lines 1–2 of the batch; stderr ends: Traceback: KeyError: answer"
        );
    }

    #[test]
    fn a_hang_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        // The shell's `sleep` child holds the pipes: the whole group must die.
        script(dir.path(), "hang.sh", "sleep 30\necho 1");
        let b = Batch::new(&["c0"]);
        let t = Instant::now();
        let err = message(
            command(dir.path(), "hang.sh", 0.5, 1)
                .score("slow", &b.scored())
                .unwrap_err(),
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(
            err,
            "reward `slow`: command `./hang.sh --flag`: timed out after 0.5 s on line 1 of the batch (killed)"
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_line_in_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "garbage.sh",
            r#"while IFS= read -r line; do
  case "$line" in *'"completion":"bad"'*) echo abc;; *'"completion":"inf"'*) echo inf;; *) echo 1;; esac
done"#,
        );
        let c = command(dir.path(), "garbage.sh", 5.0, 1);
        let err = message(
            c.score("g", &Batch::new(&["ok", "bad", "ok"]).scored())
                .unwrap_err(),
        );
        assert_eq!(
            err,
            "reward `g`: command `./garbage.sh --flag`: line 2 of the batch: \"abc\" is not a number (one number per input line expected)"
        );
        // The second worker's first line is the batch's third.
        let c2 = command(dir.path(), "garbage.sh", 5.0, 2);
        let err = message(
            c2.score("g", &Batch::new(&["ok", "ok", "bad", "ok"]).scored())
                .unwrap_err(),
        );
        assert!(err.contains("line 3 of the batch: \"abc\""), "{err}");
        let err = message(c.score("g", &Batch::new(&["inf"]).scored()).unwrap_err());
        assert!(
            err.ends_with("line 1 of the batch: \"inf\" is not a finite number"),
            "{err}"
        );
    }

    #[test]
    fn too_few_or_too_many_lines_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "few.sh", "read -r line\necho 1");
        script(
            dir.path(),
            "many.sh",
            "cat > /dev/null\necho 1; echo 2; echo 3\necho 'debug' >&2",
        );
        let b = Batch::new(&["c0", "c1"]);
        let err = message(
            command(dir.path(), "few.sh", 5.0, 1)
                .score("few", &b.scored())
                .unwrap_err(),
        );
        assert_eq!(
            err,
            "reward `few`: command `./few.sh --flag`: wrote 1 line for the 2 completions on lines 1–2 of the batch (one number per input line expected)"
        );
        let err = message(
            command(dir.path(), "many.sh", 5.0, 1)
                .score("many", &b.scored())
                .unwrap_err(),
        );
        assert!(
            err.contains("wrote 3 lines for the 2 completions on lines 1–2 of the batch"),
            "{err}"
        );
        assert!(err.ends_with("stderr ends: debug"), "{err}");
    }

    #[test]
    fn the_program_must_exist_and_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain.sh"), "#!/bin/sh\necho 1\n").unwrap();
        let spec = |run: &[&str]| CommandReward {
            run: run.iter().map(|s| s.to_string()).collect(),
            timeout_s: 1.0,
            workers: 1,
        };
        let err = Command::new(&spec(&["./plain.sh"]), dir.path()).unwrap_err();
        assert!(err.contains("plain.sh: not executable"), "{err}");
        let err = Command::new(&spec(&["./missing.sh"]), dir.path()).unwrap_err();
        assert!(
            err.starts_with("command `./missing.sh`: ") && err.contains("missing.sh"),
            "{err}"
        );
        let err = Command::new(&spec(&["plain.sh"]), dir.path()).unwrap_err();
        assert!(
            err.contains("plain.sh is not on PATH; to run the one in"),
            "{err}"
        );
        assert!(err.ends_with("write ./plain.sh"), "{err}");
        assert!(Command::new(&spec(&["sh", "-c", "cat"]), dir.path()).is_ok());
        assert!(Command::new(&spec(&[]), dir.path()).is_err());
    }
}
