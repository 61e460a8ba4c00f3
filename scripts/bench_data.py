#!/usr/bin/env python3
"""Convert-throughput benchmark: tunelab vs a plain Python json.loads/json.dumps converter.

Generates an alpaca JSONL file of --size-mb megabytes, converts it to OpenAI-chat JSONL with
both, and prints MB/s, peak RSS and the ratio. Run from the repository root after
`cargo build --release`:

    python3 scripts/bench_data.py --size-mb 1024
    python3 scripts/bench_data.py --shape short --size-mb 120 --runs 5

Two record shapes (`--shape`):
  long   (default) 5-40-word instructions, 0-30-word inputs on 40% of records, 20-300-word
         outputs, words partly non-ASCII: few records per MB, so the bytes dominate.
  short  ASCII only, 12-word instructions, 0-30-word inputs, 20-120-word outputs: many
         records per MB, so per-record overhead dominates.

With --runs N (default 1) the two converters run alternately N times each (tunelab first),
and the median and min-max of each side's MB/s and of the per-pair ratio are reported.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

PY_CONVERTER = r'''
import json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as dst:
    for line in src:
        if not line.strip():
            continue
        r = json.loads(line)
        messages = []
        if r.get("system"):
            messages.append({"role": "system", "content": r["system"]})
        for q, a in r.get("history") or []:
            messages.append({"role": "user", "content": q})
            messages.append({"role": "assistant", "content": a})
        user = r["instruction"] + ("\n" + r["input"] if r.get("input") else "")
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": r["output"]})
        dst.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
'''

ASCII_WORDS = ("the model learns from each example and the loss falls as training goes on while "
               "tokens flow through attention layers with rotary positions grouped queries and "
               "low rank adapters a short answer with plain words").split()

WORDS = ("the model learns from each example and the loss falls as training goes on while "
         "tokens flow through attention layers with rotary positions grouped queries and "
         "low rank adapters über naïve café 東京 🙂").split()


SHAPES = ("long", "short")


def record(rng, shape):
    if shape == "short":
        return {
            "instruction": " ".join(rng.choices(ASCII_WORDS, k=12)),
            "input": " ".join(rng.choices(ASCII_WORDS, k=rng.randint(0, 30))),
            "output": " ".join(rng.choices(ASCII_WORDS, k=rng.randint(20, 120))),
        }
    return {
        "instruction": " ".join(rng.choices(WORDS, k=rng.randint(5, 40))),
        "input": " ".join(rng.choices(WORDS, k=rng.randint(0, 30))) if rng.random() < 0.4 else "",
        "output": " ".join(rng.choices(WORDS, k=rng.randint(20, 300))),
    }


def generate(path, size_mb, seed=0, shape="long"):
    rng = random.Random(seed)
    target = size_mb * 1_000_000
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            rec = record(rng, shape)
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
    return written


def measure(cmd):
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, rusage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed: {err}")
    return elapsed, rusage.ru_maxrss * 1024


def median_range(xs):
    return statistics.median(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--shape", choices=SHAPES, default="long", help="record shape (see the module doc)")
    ap.add_argument("--runs", type=int, default=1, help="alternating runs of each converter")
    ap.add_argument("--tunelab", default="target/release/tunelab")
    ap.add_argument("--dir", default=None, help="where to write the generated files")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        src = os.path.join(d, "alpaca.jsonl")
        size = generate(src, args.size_mb, shape=args.shape)
        py_script = os.path.join(d, "convert.py")
        with open(py_script, "w") as f:
            f.write(PY_CONVERTER)
        out_t = os.path.join(d, "t.jsonl")
        out_p = os.path.join(d, "p.jsonl")
        env_home = os.path.join(d, "home")
        os.environ["TUNELAB_HOME"] = env_home
        mb = size / 1e6
        t_runs, p_runs = [], []
        n_t = None
        for i in range(max(1, args.runs)):
            t_runs.append(measure([args.tunelab, "data", "convert", src, "--format", "alpaca", "--to", "openai", "-o", out_t]))
            p_runs.append(measure([sys.executable, py_script, src, out_p]))
            if n_t is None:
                with open(out_t, encoding="utf-8") as a, open(out_p, encoding="utf-8") as b:
                    n_t = sum(1 for _ in a)
                    n_p = sum(1 for _ in b)
                assert n_t == n_p, (n_t, n_p)
            os.unlink(out_t)
            os.unlink(out_p)
        t_mbs = [mb / secs for secs, _ in t_runs]
        p_mbs = [mb / secs for secs, _ in p_runs]
        ratios = [p[0] / t[0] for t, p in zip(t_runs, p_runs)]
        t_med, t_min, t_max = median_range(t_mbs)
        p_med, p_min, p_max = median_range(p_mbs)
        r_med, r_min, r_max = median_range(ratios)
        result = {
            "shape": args.shape,
            "input_mb": round(mb, 1),
            "records": n_t,
            "runs": len(ratios),
            "tunelab_mb_per_s": round(t_med, 1),
            "tunelab_mb_per_s_range": [round(t_min, 1), round(t_max, 1)],
            "python_mb_per_s": round(p_med, 1),
            "python_mb_per_s_range": [round(p_min, 1), round(p_max, 1)],
            "ratio": round(r_med, 2),
            "ratio_range": [round(r_min, 2), round(r_max, 2)],
            "tunelab_peak_rss_mb": round(max(r for _, r in t_runs) / 1e6, 1),
            "python_peak_rss_mb": round(max(r for _, r in p_runs) / 1e6, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        if args.json:
            print(json.dumps(result))
        else:
            spread = lambda lo, hi: f"({lo:.1f}–{hi:.1f})" if len(ratios) > 1 else ""
            print(f"input            {result['input_mb']} MB ({args.shape}), {n_t} alpaca records → openai JSONL, "
                  f"{len(ratios)} alternating run(s), median (min–max)")
            print(f"tunelab          {t_med:>8.1f} MB/s {spread(t_min, t_max)}   peak RSS {result['tunelab_peak_rss_mb']} MB")
            print(f"python json      {p_med:>8.1f} MB/s {spread(p_min, p_max)}   peak RSS {result['python_peak_rss_mb']} MB")
            r_spread = f"({r_min:.2f}–{r_max:.2f})" if len(ratios) > 1 else ""
            print(f"ratio            {r_med:.2f}x {r_spread}")
            print(f"load average     {' '.join(str(x) for x in result['load_average'])}")


if __name__ == "__main__":
    main()
