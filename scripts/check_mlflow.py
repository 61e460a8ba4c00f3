"""tunelab's MLflow reporting against a real MLflow tracking server.

Starts `mlflow server` on a free local port (SQLite store in a temporary folder), trains
tiny runs on the demo workspace with `train.report_to: [mlflow]`, and reads them back
through MLflow's own client:

  1. a 30-step SFT run: the experiment exists by name, the run is FINISHED and named by the
     run's id, the config is there as params, and every metric's history (key, step, value,
     timestamp) equals the numbers of the run's events.jsonl exactly;
  2. a run that fails (a NaN injected at step 7) is FAILED; resumed, it logs into the same
     MLflow run, which ends FINISHED with the repeated steps logged twice;
  3. the server stopped: a run still ends `done`, with one warning event.

    python3 -m venv ~/.cache/tunelab-ci/venv-trackers
    ~/.cache/tunelab-ci/venv-trackers/bin/pip install mlflow tensorboard
    cargo build && ~/.cache/tunelab-ci/venv-trackers/bin/python scripts/check_mlflow.py

TUNELAB_BIN picks the binary (default target/debug/tunelab). Exit status 0 when every check
passes; the output is what BENCHMARKS.md records.
"""
import json
import math
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import mlflow
from mlflow.tracking import MlflowClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
TUNELAB = os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "debug" / "tunelab"))
SYSTEM = {"rss", "gpu_mem", "gpu_util"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp, port):
    """`mlflow server` in its own process group, so stopping it stops its workers."""
    log = open(tmp / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
            "--default-artifact-root", str(tmp / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, uri
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"FAIL: mlflow server exited; see {tmp}/mlflow-server.log")
        time.sleep(0.5)
    stop_server(proc)
    sys.exit("FAIL: mlflow server did not answer /health in 120 s")


def stop_server(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def tunelab(home, *args, env=None, check=True):
    e = dict(os.environ, TUNELAB_HOME=str(home), NO_COLOR="1")
    e.pop("MLFLOW_EXPERIMENT_NAME", None)
    e.update(env or {})
    r = subprocess.run([TUNELAB, *args], env=e, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"FAIL: tunelab {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
    return r


def events(run):
    return [json.loads(l) for l in (run / "events.jsonl").read_text().splitlines() if l.strip()]


def tag_of(kind, key):
    if kind == "train":
        if key == "lr":
            return "train/learning_rate"
        return ("system/" if key in SYSTEM else "train/") + key
    return "eval/" + (key[len("eval_"):] if key.startswith("eval_") else key)


def expected(run):
    """Every metric point of events.jsonl: key -> [(step, value, timestamp ms)]."""
    out = {}
    for e in events(run):
        if e["type"] not in ("train", "eval"):
            continue
        for k, v in e.items():
            if k in ("type", "time", "step", "total_steps"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            out.setdefault(tag_of(e["type"], k), []).append(
                (e["step"], float(v), round(e["time"] * 1000))
            )
    return out


def step_ms(run):
    """The median time between consecutive train events, in milliseconds."""
    t = [e["time"] for e in events(run) if e["type"] == "train"]
    gaps = sorted(b - a for a, b in zip(t, t[1:]))
    return 1000 * gaps[len(gaps) // 2]


def history(client, run_id, keys):
    return {
        k: sorted(
            ((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, k)),
            key=lambda p: (p[2], p[0]),
        )
        for k in keys
    }


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tunelab-mlflow-"))
    home = tmp / "home"
    tunelab(home, "demo")
    demo = home / "data" / "demo"
    cfg = tmp / "small.yaml"
    cfg.write_text(
        "name: small\n"
        f"model: {{path: {demo / 'tiny-model'}}}\n"
        f"data: {{train: {demo / 'persona.jsonl'}, eval_split: 0.1, max_seq_len: 128}}\n"
        "lora: {r: 8, alpha: 16, target_modules: [all-linear]}\n"
        "train: {lr: 0.01, batch_size: 4, seed: 3, max_steps: 30, eval_every: 10, "
        "save_every: 5, report_to: [mlflow]}\n"
    )
    port = free_port()
    t0 = time.time()
    proc, uri = start_server(tmp, port)
    print(f"mlflow {mlflow.__version__} server at {uri} (up in {time.time() - t0:.1f} s)")
    client = MlflowClient(tracking_uri=uri)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "tunelab-check"}
    try:
        # 1. A whole run.
        run = tmp / "run"
        t0 = time.time()
        tunelab(home, "train", str(cfg), "--run-dir", str(run), env=env)
        took = time.time() - t0
        warnings = [e for e in events(run) if e["type"] == "warning"]
        check(not warnings, f"warnings: {warnings}")
        exp = client.get_experiment_by_name("tunelab-check")
        check(exp is not None, "the experiment tunelab-check exists")
        found = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'run'")
        check(len(found) == 1, f"one MLflow run named 'run', found {len(found)}")
        r = found[0]
        check(r.info.status == "FINISHED", f"status {r.info.status}")
        p = r.data.params
        check(p.get("train.lr") == "0.01" and p.get("lora.r") == "8", f"params {p}")
        check(p.get("train.report_to") == '["mlflow"]', f"report_to param {p.get('train.report_to')}")
        want = expected(run)
        got = history(client, r.info.run_id, want.keys())
        for k in want:
            check(got[k] == sorted(want[k], key=lambda q: (q[2], q[0])),
                  f"{k}: MLflow has {got[k][:3]}…, events.jsonl {want[k][:3]}…")
        check(set(r.data.metrics) == set(want), f"metric keys {sorted(r.data.metrics)} vs {sorted(want)}")
        points = sum(len(v) for v in want.values())
        # The same run without a tracker and with TensorBoard: what a step costs each way.
        paces = {"mlflow": step_ms(run)}
        for name, trackers in (("none", "[]"), ("tensorboard", "[tensorboard]")):
            other = tmp / f"run-{name}"
            tunelab(home, "train", str(cfg), "--set", f"train.report_to={trackers}",
                    "--run-dir", str(other), env=env)
            paces[name] = step_ms(other)
        print(
            f"1. run 'run' FINISHED in {took:.1f} s (30 steps): {len(p)} params, {len(want)} metric "
            f"keys, {points} points equal to events.jsonl (train/loss {want['train/loss'][0][1]:.4f} "
            f"-> {want['train/loss'][-1][1]:.4f}, eval/loss at steps "
            f"{[s for s, _, _ in want['eval/loss']]})"
        )
        print(
            "   median step (ms, train events' spacing, same config): "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(paces.items()))
        )

        # 2. Failed, then resumed into the same MLflow run.
        run2 = tmp / "run2"
        r2 = tunelab(home, "train", str(cfg), "--run-dir", str(run2), check=False,
                     env=dict(env, TUNELAB_FAULT_NAN_AT_STEP="7"))
        check(r2.returncode == 1, f"the NaN run exits 1, not {r2.returncode}")
        found = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'run2'")
        check(len(found) == 1 and found[0].info.status == "FAILED",
              f"run2 FAILED: {[f.info.status for f in found]}")
        tunelab(home, "train", "--resume", str(run2), env=env)
        found = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'run2'")
        check(len(found) == 1, f"still one MLflow run for run2, found {len(found)}")
        check(found[0].info.status == "FINISHED", f"run2 after resume: {found[0].info.status}")
        steps = [m.step for m in client.get_metric_history(found[0].info.run_id, "train/loss")]
        check(sorted(steps) == sorted(list(range(1, 31)) + [6]),
              f"run2 train/loss steps {sorted(steps)}")
        print(
            f"2. run 'run2' FAILED at the injected NaN (step 7), resumed from step 5 into the same "
            f"MLflow run {found[0].info.run_id[:8]}…, FINISHED; train/loss logged at "
            f"{len(steps)} steps (step 6 twice)"
        )
    finally:
        stop_server(proc)

    # 3. The server gone: the run is done, with one warning.
    run3 = tmp / "run3"
    t0 = time.time()
    r3 = tunelab(home, "train", str(cfg), "--run-dir", str(run3), env=env)
    took = time.time() - t0
    ev = events(run3)
    warnings = [e["message"] for e in ev if e["type"] == "warning"]
    check(ev[-1]["type"] == "done", f"run3 ends {ev[-1]['type']}")
    check(len(warnings) == 1 and warnings[0].startswith("mlflow: "), f"warnings {warnings}")
    print(f"3. server stopped: run 'run3' done in {took:.1f} s with one warning: {warnings[0]}")
    print(f"OK ({platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs; {TUNELAB})")


if __name__ == "__main__":
    main()
