#!/usr/bin/env python3
"""Convert-throughput benchmark: tunelab vs a plain Python json.loads/json.dumps converter.

Generates an alpaca JSONL file of --size-mb megabytes, converts it to OpenAI-chat JSONL with
both, and prints MB/s, peak RSS and the ratio. Run from the repository root after
`cargo build --release`:

    python3 scripts/bench_data.py --size-mb 1024
"""
import argparse
import json
import os
import random
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

WORDS = ("the model learns from each example and the loss falls as training goes on while "
         "tokens flow through attention layers with rotary positions grouped queries and "
         "low rank adapters über naïve café 東京 🙂").split()


def generate(path, size_mb, seed=0):
    rng = random.Random(seed)
    target = size_mb * 1_000_000
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            rec = {
                "instruction": " ".join(rng.choices(WORDS, k=rng.randint(5, 40))),
                "input": " ".join(rng.choices(WORDS, k=rng.randint(0, 30))) if rng.random() < 0.4 else "",
                "output": " ".join(rng.choices(WORDS, k=rng.randint(20, 300))),
            }
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--tunelab", default="target/release/tunelab")
    ap.add_argument("--dir", default=None, help="where to write the generated files")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        src = os.path.join(d, "alpaca.jsonl")
        size = generate(src, args.size_mb)
        py_script = os.path.join(d, "convert.py")
        with open(py_script, "w") as f:
            f.write(PY_CONVERTER)
        out_t = os.path.join(d, "t.jsonl")
        out_p = os.path.join(d, "p.jsonl")
        env_home = os.path.join(d, "home")
        os.environ["TUNELAB_HOME"] = env_home
        t_secs, t_rss = measure([args.tunelab, "data", "convert", src, "--format", "alpaca", "--to", "openai", "-o", out_t])
        p_secs, p_rss = measure([sys.executable, py_script, src, out_p])
        with open(out_t, encoding="utf-8") as a, open(out_p, encoding="utf-8") as b:
            n_t = sum(1 for _ in a)
            n_p = sum(1 for _ in b)
        assert n_t == n_p, (n_t, n_p)
        mb = size / 1e6
        result = {
            "input_mb": round(mb, 1),
            "records": n_t,
            "tunelab_mb_per_s": round(mb / t_secs, 1),
            "python_mb_per_s": round(mb / p_secs, 1),
            "ratio": round(p_secs / t_secs, 2),
            "tunelab_peak_rss_mb": round(t_rss / 1e6, 1),
            "python_peak_rss_mb": round(p_rss / 1e6, 1),
        }
        if args.json:
            print(json.dumps(result))
        else:
            print(f"input            {result['input_mb']} MB, {n_t} alpaca records → openai JSONL")
            print(f"tunelab          {result['tunelab_mb_per_s']:>8} MB/s   peak RSS {result['tunelab_peak_rss_mb']} MB")
            print(f"python json      {result['python_mb_per_s']:>8} MB/s   peak RSS {result['python_peak_rss_mb']} MB")
            print(f"ratio            {result['ratio']}x")


if __name__ == "__main__":
    main()
