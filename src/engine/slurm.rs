//! An engine run as a SLURM batch job: the `sbatch` script (nodes, GPUs per node, the
//! rendezvous on the first node, the tool's `run.sh` once per node), its submission, and its
//! state followed with `squeue` and, once it has left the queue, `sacct`. Events arrive
//! through the shared filesystem (the hook writes into the run folder); stop is `scancel`.

use super::job::{file_tail, Job, JobEnd};
use super::{EngineError, Launchable};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The script's file name in `engine/`.
pub const SCRIPT: &str = "job.sbatch";
/// One node's part of the job, in `engine/`.
pub const NODE: &str = "node.sh";

/// `node.sh`: `run.sh` in a process group of its own; SIGTERM is passed to the whole group
/// once, and the script waits until every process of it has ended, so workers that save a
/// checkpoint before they exit are not killed with the job step when the launcher exits.
pub const NODE_SCRIPT: &str = r#"#!/usr/bin/env bash
# One node's part of a tunelab engine job (written by tunelab): run.sh in its own process
# group; SIGTERM (`tunelab runs stop` through scancel) goes to the whole group, and this waits
# until every process of it has ended.
cd "$(dirname "$0")"
set -m
bash run.sh "$@" &
pid=$!
# The Trainer processes of this node (the hook leaves <host>-<pid> in trainer-pids/), else
# the whole group: launchers end when their trainers do.
stop() {
  local found=""
  for f in trainer-pids/"$(hostname)"-*; do
    [ -e "$f" ] || continue
    kill -TERM "${f##*-}" 2>/dev/null && found=1
  done
  [ -n "$found" ] || kill -TERM -- "-$pid" 2>/dev/null
}
trap stop TERM
rc=0
wait "$pid" || rc=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || rc=$?; done
while kill -0 -- "-$pid" 2>/dev/null; do sleep 1; done
exit "$rc"
"#;
/// The job's id and last state, in `engine/`.
pub const STATE: &str = "job.json";
/// The rendezvous port on the first node, unless `MASTER_PORT` is set.
const PORT: u16 = 29500;
/// How often the queue is asked.
const POLL: Duration = Duration::from_secs(2);
/// After a stop, how long the job has to save before it is cancelled outright.
const STOP_GRACE: Duration = Duration::from_secs(600);

/// Single-quotes `s` for bash.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script for `l`.
pub fn script(l: &Launchable) -> String {
    let mut s = String::from("#!/usr/bin/env bash\n");
    let name: String = l
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.push_str(&format!("#SBATCH --job-name=tunelab-{name}\n"));
    s.push_str(&format!("#SBATCH --nodes={}\n", l.launch.nodes.max(1)));
    s.push_str("#SBATCH --ntasks-per-node=1\n");
    if !l.cpu {
        s.push_str(&format!(
            "#SBATCH --gpus-per-node={}\n",
            l.launch.gpus.max(1)
        ));
    }
    s.push_str(&format!("#SBATCH --output={}\n", l.log.display()));
    s.push_str("#SBATCH --open-mode=append\n");
    for extra in &l.slurm {
        let opt = extra.trim();
        let opt = opt.strip_prefix("#SBATCH").unwrap_or(opt).trim();
        s.push_str(&format!("#SBATCH {opt}\n"));
    }
    s.push_str(&format!(
        "# Written by tunelab for the run in {}: {} over {} node(s) × {} GPU(s).\n# Events reach the run through the shared filesystem; `tunelab runs stop` cancels the job.\nset -euo pipefail\n",
        l.run_root.display(),
        l.tool.label(),
        l.launch.nodes.max(1),
        l.launch.gpus.max(1)
    ));
    for (k, v) in &l.env {
        if k == "PATH" || k == "PYTHONPATH" {
            continue;
        }
        s.push_str(&format!("export {k}={}\n", q(v)));
    }
    s.push_str(&format!(
        "export PATH={}:\"$PATH\"\n",
        q(&l.bin_dir.display().to_string())
    ));
    s.push_str(&format!(
        "export PYTHONPATH={}\"${{PYTHONPATH:+:$PYTHONPATH}}\"\n",
        q(&l.hook_dir.display().to_string())
    ));
    let run = format!(
        "bash {}/{NODE}{}",
        q(&l.engine_dir.display().to_string()),
        l.args
            .iter()
            .map(|a| format!(" {}", q(a)))
            .collect::<String>()
    );
    if l.launch.nodes > 1 {
        // The batch shell passes a stop to srun, which passes it to every node's node.sh.
        s.push_str(&format!(
            "export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\nexport MASTER_PORT=\"${{MASTER_PORT:-{PORT}}}\"\nsrun --kill-on-bad-exit=1 bash -c 'NODE_RANK=$SLURM_NODEID exec {}' &\nstep=$!\ntrap 'kill -TERM \"$step\" 2>/dev/null' TERM\nrc=0\nwait \"$step\" || rc=$?\nwhile kill -0 \"$step\" 2>/dev/null; do wait \"$step\" || rc=$?; done\nexit \"$rc\"\n",
            run.replace('\'', r"'\''")
        ));
    } else {
        s.push_str(&format!("export NODE_RANK=0\nexec {run}\n"));
    }
    s
}

/// A submitted batch job.
pub struct SlurmJob {
    id: String,
    state: String,
    state_file: PathBuf,
    log: PathBuf,
    last_poll: Option<Instant>,
    stopping: Option<Instant>,
    cancelled: bool,
}

/// Runs a SLURM command, its stdout when it succeeds.
fn slurm(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl SlurmJob {
    /// Submits `script` with `sbatch --parsable`.
    pub fn submit(script: &Path, engine: &Path, log: &Path) -> Result<SlurmJob, EngineError> {
        let out = slurm("sbatch", &["--parsable", &script.display().to_string()])
            .map_err(|e| EngineError::Launch(format!("submitting the SLURM job: {e}")))?;
        // `ID` or `ID;CLUSTER`.
        let id = out
            .lines()
            .last()
            .and_then(|l| l.split(';').next())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '_'))
            .ok_or_else(|| {
                EngineError::Launch(format!("sbatch printed no job id (it printed {out:?})"))
            })?
            .to_string();
        let job = SlurmJob {
            id,
            state: "SUBMITTED".into(),
            state_file: engine.join(STATE),
            log: log.to_path_buf(),
            last_poll: None,
            stopping: None,
            cancelled: false,
        };
        job.record();
        Ok(job)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn record(&self) {
        let v = serde_json::json!({"launcher": "slurm", "job": self.id, "state": self.state});
        let _ = crate::files::write_atomic(&self.state_file, v.to_string().as_bytes());
    }

    /// The job's final state from the accounting database.
    fn accounted(&self) -> JobEnd {
        let out = slurm(
            "sacct",
            &["-j", &self.id, "-X", "-n", "-P", "-o", "State,ExitCode"],
        );
        let line = out
            .as_deref()
            .ok()
            .and_then(|o| o.lines().find(|l| !l.trim().is_empty()))
            .map(str::to_string);
        match line {
            Some(l) => {
                let mut parts = l.split('|');
                let state = parts.next().unwrap_or("").trim().to_string();
                let code = parts.next().unwrap_or("").trim().to_string();
                JobEnd {
                    ok: Some(state.starts_with("COMPLETED")),
                    what: format!("SLURM job {} ended {state} (exit code {code})", self.id),
                }
            }
            None => JobEnd {
                ok: None,
                what: format!(
                    "SLURM job {} left the queue (sacct has no record of how it ended)",
                    self.id
                ),
            },
        }
    }
}

impl Job for SlurmJob {
    fn poll(&mut self) -> Option<JobEnd> {
        if self.last_poll.is_some_and(|t| t.elapsed() < POLL) {
            return None;
        }
        self.last_poll = Some(Instant::now());
        if let Some(at) = self.stopping {
            if at.elapsed() > STOP_GRACE && !self.cancelled {
                let _ = slurm("scancel", &[&self.id]);
                self.cancelled = true;
            }
        }
        match slurm("squeue", &["-h", "-j", &self.id, "-o", "%T"]) {
            Ok(out) if !out.is_empty() => {
                let state = out.lines().next().unwrap_or("").trim().to_string();
                if state != self.state {
                    self.state = state;
                    self.record();
                }
                None
            }
            // Gone from the queue (squeue says nothing, or that the id is invalid).
            _ => {
                let end = self.accounted();
                self.state = end.what.clone();
                self.record();
                Some(end)
            }
        }
    }

    fn stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
        }
        // TERM to the batch shell, which passes it on once (node.sh): the Trainer saves, then
        // the job ends.
        let _ = slurm("scancel", &["--signal=TERM", "--batch", &self.id]);
    }

    fn describe(&self) -> String {
        format!("SLURM job {}", self.id)
    }

    fn waiting(&self) -> Option<String> {
        matches!(self.state.as_str(), "SUBMITTED" | "PENDING" | "CONFIGURING")
            .then(|| format!("SLURM job {} {}", self.id, self.state))
    }

    fn last_lines(&self) -> Vec<String> {
        file_tail(&self.log, 40)
    }
}
