#!/usr/bin/env python3
"""Holds the memory estimate (what the Adapter tab shows, `model::estimate`) against the
measured peak RSS of real CPU training steps: `tunelab bench train` on random models of
several shapes and quantizations, each in a fresh process, its own peak RSS read from
`wait4`'s rusage and its estimate from the run's JSON. Prints a table and exits 1 when any run
is off by more than --tolerance (10% by default, the bound issue #35 sets).

    cargo build --release && python3 scripts/bench_memory.py [--tunelab target/release/tunelab]
"""
import argparse
import json
import os
import subprocess
import sys

# (shape, base quantization, batch, seq, extra arguments)
QLORA_8B = ["--quantize-head", "--rank", "16", "--checkpointing", "--warmup", "0"]
RUNS = [
    ("smollm2-135m", "none", 2, 128, []),
    ("smollm2-135m", "q8_0", 2, 128, []),
    ("smollm2-135m", "q4k", 4, 256, []),
    ("qwen2.5-0.5b", "none", 1, 128, []),
    ("qwen2.5-0.5b", "q4k", 1, 128, []),
    ("bench-tiny", "q4k", 8, 512, []),
    # The seed's headline: Llama-3.1-8B QLoRA, head quantized too, one step (issue #35).
    ("llama-3.1-8b", "q4k", 1, 128, QLORA_8B),
    ("llama-3.1-8b", "nf4", 1, 128, QLORA_8B),
    ("llama-3.1-8b", "q4_0", 1, 128, QLORA_8B),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tunelab", default="target/release/tunelab")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--only", help="run only the shapes whose name contains this")
    a = ap.parse_args()
    print(f"{'shape':<14} {'base':<5} {'batch×seq':>9} {'estimate MiB':>13} {'peak RSS MiB':>13} {'ratio':>6}")
    worst = 0.0
    for shape, q, batch, seq, extra in RUNS:
        if a.only and a.only not in shape:
            continue
        args = ["--steps", "1", *([] if "--warmup" in extra else ["--warmup", "1"]), *extra]
        p = subprocess.Popen(
            [a.tunelab, "bench", "train", "--shape", shape, "--quantization", q, "--batch", str(batch),
             "--seq", str(seq), *args, "--json"],
            stdout=subprocess.PIPE, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            sys.exit(f"{shape} {q}: tunelab exited {p.returncode}")
        peak = usage.ru_maxrss * 1024  # this child's own peak (kB on Linux)
        est = json.loads(out)["estimate_bytes"]
        ratio = peak / est
        worst = max(worst, abs(ratio - 1))
        print(f"{shape:<14} {q:<5} {f'{batch}×{seq}':>9} {est / 2**20:>13.0f} {peak / 2**20:>13.0f} {ratio:>6.2f}")
    print(f"largest deviation {worst:.1%} (tolerance {a.tolerance:.0%})")
    sys.exit(0 if worst <= a.tolerance else 1)


if __name__ == "__main__":
    main()
