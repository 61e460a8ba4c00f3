#!/usr/bin/env python3
"""Engine-launched runs with the real TRL (issue #30): `tunelab train --engine trl` on the CPU
with the demo workspace's tiny model (HF format), with a pass/fail table at the end.

    cargo build --release && python3 scripts/check_engine_trl.py [--work DIR]

1. live: `tunelab train tiny-demo --engine trl --detach` for 6 steps (save every 2, evaluate
   every 3). The run's events.jsonl is read every 50 ms while it runs: at least two train
   events must be readable while status.json still says `running`. The run ends `done` with
   train events for steps 1…6, eval events at steps 3 and 6 and the adapter in `adapter/`.
2. stop and resume: a second run of 100 steps (save every 2); once 3 train events are in,
   `tunelab runs stop`; the run must end `stopped` before its last step with a checkpoint in
   engine/output, and the Trainer must have saved the step it stopped at (the hook's
   `stopping` step has its checkpoint-N). Then `tunelab train --resume RUN` (foreground) must
   end `done` at step 100, its resume event naming the newest checkpoint and its step, and
   the train events after it must run N+1…100.
3. loss: the last eval_loss TRL logged for run 1 (its eval event, cross-checked against the
   newest checkpoint's trainer_state.json) against `tunelab eval --json` of the run's
   `adapter/` on the run's held-out file `engine/data/test.jsonl` (with the run's
   model.template, data.train_on and data.max_seq_len): |Δ| ≤ 1e-3. The batch size is 9, the
   held-out split's size, so TRL's eval_loss is one batch's token mean (with several eval
   batches it would be a mean of batch means).

TRL runs from $TRL_VENV (default ~/.cache/tunelab-ci/venv-torch: torch, transformers, peft,
trl==1.16.0, datasets); nothing is installed. Everything is offline, in a fresh TUNELAB_HOME
under the work folder. TUNELAB_BIN picks the binary (default target/release/tunelab). Exits 1
when a check failed.
"""
import argparse
import glob
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_exports_run import offline_env  # noqa: E402 (the same offline, telemetry-free environment)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
TUNELAB = os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "release" / "tunelab"))
VENV = pathlib.Path(os.environ.get("TRL_VENV", CACHE / "venv-torch"))
PYTHON = VENV / "bin" / "python"

LIVE_STEPS = 6
STOP_STEPS = 100
STOP_AFTER = 3  # train events in before `runs stop`
LOSS_TOL = 1e-3
# The demo preset holds 9 of its 90 records out (eval_split 0.1): a batch of 9 makes TRL's
# evaluation one batch.
BATCH = 9
POLL = 0.05
TIMEOUT = 900


def run(cmd, env, log=None, timeout=TIMEOUT):
    """Runs `cmd`; returns (exit code, stdout + stderr, seconds). The output also goes to `log`."""
    t = time.time()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        code, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}"
    secs = time.time() - t
    if log:
        pathlib.Path(log).write_text(f"$ {' '.join(map(str, cmd))}\n({secs:.1f} s, exit {code})\n{out}")
    return code, out, secs


def last_line(out):
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    return (lines[-1] if lines else "(no output)")[:300]


def events(run_dir):
    """The run's events so far (a line still being written is left for the next read)."""
    out = []
    try:
        text = (run_dir / "events.jsonl").read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def hook_lines(run_dir):
    out = []
    try:
        text = (run_dir / "engine" / "hook-events.jsonl").read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def state(run_dir):
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def of(evs, kind):
    return [e for e in evs if e.get("type") == kind]


def checkpoints(run_dir):
    """(step, folder) of every engine/output/checkpoint-N with a trainer state, by step."""
    found = []
    for p in glob.glob(str(run_dir / "engine" / "output" / "checkpoint-*")):
        m = re.search(r"checkpoint-(\d+)$", p)
        if m and os.path.isfile(os.path.join(p, "trainer_state.json")):
            found.append((int(m.group(1)), pathlib.Path(p)))
    return sorted(found)


def start_detached(args, env, log):
    """`tunelab train ... --detach`; returns the run id (the first line it prints)."""
    code, out, _ = run([TUNELAB, "train", *args, "--detach"], env, log=log, timeout=120)
    if code:
        raise RuntimeError(f"tunelab train --detach: exit {code}: {last_line(out)}")
    return out.strip().splitlines()[0].strip()


def wait_end(run_dir, timeout=TIMEOUT):
    """Waits until status.json leaves running/stopping (or queued/starting); returns it."""
    t = time.time()
    while time.time() - t < timeout:
        s = state(run_dir)
        if s.get("state") in ("done", "failed", "stopped", "pruned"):
            return s
        time.sleep(0.2)
    return state(run_dir)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, part, check, ok, numbers):
        self.rows.append((part, check, ok, numbers))
        print(f"{'pass' if ok else 'FAIL'}: {part}: {check}: {numbers}", file=sys.stderr, flush=True)

    @property
    def failed(self):
        return any(not ok for _, _, ok, _ in self.rows)


# --- 1. live events -----------------------------------------------------------------------


def live_run(env, work, table):
    sets = [
        f"train.max_steps={LIVE_STEPS}", "train.eval_every=3", "train.save_every=2",
        f"train.batch_size={BATCH}",
    ]
    args = ["tiny-demo", "--engine", "trl", "--python", str(PYTHON)]
    for s in sets:
        args += ["--set", s]
    t0 = time.time()
    rid = start_detached(args, env, work / "logs" / "live-train.log")
    run_dir = work / "home" / "data" / "runs" / rid
    seen_running = 0  # train events readable while status.json still said running
    first_seen = None  # (seconds after launch, count) when train events were first readable
    trl_training_then = None  # whether TRL's Trainer had not ended yet at that moment
    left_running = None
    while time.time() - t0 < TIMEOUT:
        n = len(of(events(run_dir), "train"))
        ended = any(h.get("event") == "end" for h in hook_lines(run_dir))
        s = state(run_dir).get("state")
        now = time.time() - t0
        if n and first_seen is None:
            first_seen = (now, n)
            trl_training_then = not ended
        if s in ("running", "starting", "queued", None):
            if s == "running":
                seen_running = max(seen_running, n)
        elif left_running is None:
            left_running = now
            break
        time.sleep(POLL)
    final = wait_end(run_dir)
    wall = time.time() - t0
    evs = events(run_dir)
    trains = of(evs, "train")
    evals = of(evs, "eval")
    hooks = {h["step"]: h["time"] for h in hook_lines(run_dir) if h.get("event") == "log" and "loss" in h.get("logs", {})}
    lags = [e["time"] - hooks[e["step"]] for e in trains if e["step"] in hooks]
    first_text = (
        f"first {first_seen[1]} at {first_seen[0]:.1f} s after launch "
        f"({'TRL still training' if trl_training_then else 'after the Trainer ended'})"
        if first_seen else "none seen"
    )
    table.add(
        "1 live", f"≥ 2 train events readable while the run is `running`", seen_running >= 2,
        f"{seen_running} of {LIVE_STEPS} readable while running; {first_text}; status left running at "
        + (f"{left_running:.1f} s" if left_running is not None else "never")
        + (f"; hook → events.jsonl lag ≤ {max(lags):.2f} s" if lags else ""),
    )
    steps = [e["step"] for e in trains]
    table.add(
        "1 live", f"ends `done` with train events 1…{LIVE_STEPS}, evals at 3 and 6, adapter/",
        final.get("state") == "done" and steps == list(range(1, LIVE_STEPS + 1))
        and [e["step"] for e in evals] == [3, 6]
        and (run_dir / "adapter" / "adapter_model.safetensors").is_file()
        and bool(of(evs, "done")),
        f"state {final.get('state')}, train steps {steps}, eval steps {[e['step'] for e in evals]}, "
        f"checkpoints at {[e['step'] for e in of(evs, 'checkpoint')]}, {wall:.1f} s wall"
        + (f"; error: {final.get('error')}" if final.get("error") else ""),
    )
    return run_dir, wall


# --- 2. stop and resume -------------------------------------------------------------------


def stop_resume(env, work, table):
    sets = [f"train.max_steps={STOP_STEPS}", "train.eval_every=0", "train.save_every=2", f"train.batch_size={BATCH}"]
    args = ["tiny-demo", "--engine", "trl", "--python", str(PYTHON)]
    for s in sets:
        args += ["--set", s]
    t0 = time.time()
    rid = start_detached(args, env, work / "logs" / "stop-train.log")
    run_dir = work / "home" / "data" / "runs" / rid
    n = 0
    while time.time() - t0 < TIMEOUT:
        n = len(of(events(run_dir), "train"))
        if n >= STOP_AFTER or state(run_dir).get("state") not in ("running", "starting", "queued", None):
            break
        time.sleep(POLL)
    t_stop = time.time()
    code, out, _ = run([TUNELAB, "runs", "stop", rid, "--wait", "300"], env, log=work / "logs" / "stop.log")
    final = wait_end(run_dir)
    stop_secs = time.time() - t_stop
    stopped_at = final.get("step")
    cks = checkpoints(run_dir)
    stopping = [h["step"] for h in hook_lines(run_dir) if h.get("event") == "stopping"]
    table.add(
        "2 stop", f"`runs stop` after {STOP_AFTER} train events: ends `stopped` before step {STOP_STEPS}",
        code in (0, 3) and final.get("state") == "stopped" and stopped_at is not None and 0 < stopped_at < STOP_STEPS,
        f"{n} train events in at the stop; `runs stop` exit {code} ({last_line(out)}); state {final.get('state')} "
        f"at step {stopped_at} {stop_secs:.1f} s after the stop",
    )
    table.add(
        "2 stop", "a checkpoint in engine/output",
        bool(cks),
        f"checkpoints {[s for s, _ in cks]}",
    )
    saved = {s for s, _ in cks}
    ends = [h for h in hook_lines(run_dir) if h.get("event") == "end"]
    table.add(
        "2 stop", "the Trainer saved the step it stopped at (hook's `stopping` step has its checkpoint)",
        bool(stopping) and stopping[-1] in saved,
        f"hook `stopping` at step {stopping[-1] if stopping else None}; newest checkpoint {cks[-1][0] if cks else None}; "
        f"run's status step {stopped_at}; the Trainer "
        + (f"ended at step {ends[-1].get('step')} (hook `end`)" if ends else "never ended (no hook `end`: the process was killed)"),
    )
    if not cks:
        return run_dir, time.time() - t0
    ck_step, ck_path = cks[-1]
    before = len(events(run_dir))
    t1 = time.time()
    code, out, secs = run([TUNELAB, "train", "--resume", rid], env, log=work / "logs" / "resume.log")
    final = state(run_dir)
    after = events(run_dir)[before:]
    resumes = of(after, "resume")
    trains = [e["step"] for e in of(after, "train")]
    r = resumes[0] if resumes else {}
    table.add(
        "2 resume", f"`train --resume` ends `done` at step {STOP_STEPS}",
        code == 0 and final.get("state") == "done" and final.get("step") == STOP_STEPS and bool(of(after, "done")),
        f"exit {code}, state {final.get('state')} at step {final.get('step')}/{final.get('total_steps')}, {secs:.1f} s"
        + (f"; {last_line(out)}" if code else ""),
    )
    same_path = bool(r.get("checkpoint")) and os.path.realpath(r["checkpoint"]) == os.path.realpath(ck_path)
    table.add(
        "2 resume", "the resume event names the newest checkpoint and its step",
        same_path and r.get("from_step") == ck_step,
        f"resume from_step {r.get('from_step')}, checkpoint {pathlib.Path(r['checkpoint']).name if r.get('checkpoint') else None} "
        f"(newest: {ck_path.name})",
    )
    table.add(
        "2 resume", f"train steps after the resume run {ck_step + 1}…{STOP_STEPS}",
        trains == list(range(ck_step + 1, STOP_STEPS + 1)),
        f"{len(trains)} train events, steps {trains[0] if trains else None}…{trains[-1] if trains else None}"
        + ("" if trains == sorted(set(trains)) else " (not increasing by one)"),
    )
    return run_dir, time.time() - t0


# --- 3. the imported adapter's loss -------------------------------------------------------


def loss_check(run_dir, env, work, table):
    evals = of(events(run_dir), "eval")
    if not evals:
        table.add("3 loss", "TRL's last eval_loss", False, "no eval events")
        return
    ev = evals[-1]
    cks = checkpoints(run_dir)
    state_loss = None
    if cks:
        hist = json.loads((cks[-1][1] / "trainer_state.json").read_text())["log_history"]
        ev_hist = [h for h in hist if "eval_loss" in h]
        if ev_hist:
            state_loss = (ev_hist[-1]["step"], ev_hist[-1]["eval_loss"])
    table.add(
        "3 loss", "the last eval event = trainer_state.json's last eval_loss",
        state_loss is not None and state_loss[0] == ev["step"] and abs(state_loss[1] - ev["eval_loss"]) < 1e-9,
        f"event: step {ev['step']} eval_loss {ev['eval_loss']:.6f}; "
        + (f"{cks[-1][1].name}/trainer_state.json: step {state_loss[0]} eval_loss {state_loss[1]:.6f}" if state_loss else "no eval in trainer_state.json"),
    )
    cfg = (run_dir / "config.yaml").read_text()

    def field(section, key):
        m = re.search(rf"^{section}:\n(?:  .*\n)*?  {key}: (.+)$", cfg, re.M)
        return m.group(1).strip() if m else None

    model, template = field("model", "path"), field("model", "template") or "model"
    train_on, seq = field("data", "train_on") or "assistant", field("data", "max_seq_len") or "2048"
    test = run_dir / "engine" / "data" / "test.jsonl"
    records = sum(1 for l in test.read_text().splitlines() if l.strip())
    run_sh = (run_dir / "engine" / "run.sh").read_text()
    m = re.search(r"--per_device_eval_batch_size (\d+)", run_sh)
    eval_batch = int(m.group(1)) if m else None
    table.add(
        "3 loss", "TRL evaluates the held-out file in one batch",
        eval_batch is not None and eval_batch >= records,
        f"{records} held-out records, per_device_eval_batch_size {eval_batch}",
    )
    cmd = [
        TUNELAB, "eval", "--model", model, "--adapter", str(run_dir / "adapter"), "--data", str(test),
        "--template", template, "--train-on", train_on, "--max-seq-len", seq, "--batch-size", str(records), "--json",
    ]
    code, out, secs = run(cmd, env, log=work / "logs" / "eval.log")
    if code:
        table.add("3 loss", "tunelab eval of adapter/", False, f"exit {code}: {last_line(out)}")
        return
    res = json.loads(out.strip().splitlines()[-1])
    d = abs(res["loss"] - ev["eval_loss"])
    table.add(
        "3 loss", f"tunelab eval of adapter/ on engine/data/test.jsonl = TRL's last eval_loss (|Δ| ≤ {LOSS_TOL:g})",
        d <= LOSS_TOL,
        f"tunelab {res['loss']:.6f} ({res['tokens']} tokens, {res['examples']} records, template {template}, "
        f"train_on {train_on}) vs TRL {ev['eval_loss']:.6f} at step {ev['step']}: Δ {d:.1e}",
    )


# --- the table ----------------------------------------------------------------------------


def machine():
    cpu = "?"
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, load average {load}"


def versions():
    code, out, _ = run(
        [str(PYTHON), "-c", "import importlib.metadata as m; print(' '.join(m.version(p) for p in ('trl', 'transformers', 'torch', 'peft', 'accelerate')))"],
        dict(os.environ),
    )
    return out.strip().split() if code == 0 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", help="a new folder for the home and logs (default: a temp folder, kept)")
    a = ap.parse_args()
    if not os.access(TUNELAB, os.X_OK):
        print(f"error: no tunelab binary at {TUNELAB} (cargo build --release, or set TUNELAB_BIN)", file=sys.stderr)
        return 2
    v = versions()
    if not v:
        print(f"error: no TRL in {VENV} (set TRL_VENV)", file=sys.stderr)
        return 2
    work = pathlib.Path(a.work) if a.work else pathlib.Path(tempfile.mkdtemp(prefix="tunelab-engine-trl."))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    env = offline_env(work / "home")
    load_before = machine()
    started = time.time()
    code, out, _ = run([TUNELAB, "demo"], env, log=work / "logs" / "demo.log")
    if code:
        print(f"error: tunelab demo: {last_line(out)}", file=sys.stderr)
        return 1
    table = Table()
    walls = {}
    live_dir = None
    for name, part in (("live", lambda: live_run(env, work, table)), ("stop", lambda: stop_resume(env, work, table))):
        print(f"… {name}", file=sys.stderr, flush=True)
        try:
            d, walls[name] = part()
            if name == "live":
                live_dir = d
        except Exception as e:  # a part that could not run is a failure, with its reason
            table.add(name, "could not run", False, f"{type(e).__name__}: {e}")
    if live_dir is not None:
        try:
            loss_check(live_dir, env, work, table)
        except Exception as e:
            table.add("3 loss", "could not run", False, f"{type(e).__name__}: {e}")

    print(f"\nissue #30: engine-launched runs with the real TRL (CPU, the demo's tiny model, `tunelab train --engine trl`)")
    print(f"machine: {load_before} (at the start); load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"tunelab: {TUNELAB}")
    print(f"TRL {v[0]} (transformers {v[1]}, torch {v[2]}, peft {v[3]}, accelerate {v[4]}) from {VENV}")
    print(
        f"wall: live run {walls.get('live', float('nan')):.1f} s ({LIVE_STEPS} steps), stop + resume "
        f"{walls.get('stop', float('nan')):.1f} s ({STOP_STEPS} steps), {time.time() - started:.0f} s in all; "
        f"work folder (home, logs): {work}\n"
    )
    print("| part | check | result | numbers |")
    print("|---|---|---|---|")
    for part, check, ok, numbers in table.rows:
        print(f"| {part} | {check} | {'pass' if ok else 'FAIL'} | {numbers} |")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
