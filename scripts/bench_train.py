#!/usr/bin/env python3
"""SFT LoRA training throughput: `tunelab bench train` against transformers + PEFT (torch
AdamW, the same shape, batch, rank and number of steps) in the same run.

CPU (the issue's benchmark; torch limited to 2 threads like the 2-core CI box):

    cargo build --release && python scripts/bench_train.py

GPU (scripts/gpu-check.sh runs this): --device cuda --dtype bf16 --shape qwen2.5-0.5b.
Prints a table and, with --json FILE, writes both results.
"""
import argparse
import json
import os
import pathlib
import subprocess
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHAPES = {
    "bench-tiny": lambda: LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5,
                                      rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=False),
    "qwen2.5-0.5b": lambda: Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                        num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6,
                                        rope_theta=1000000.0, max_position_embeddings=32768, tie_word_embeddings=True),
    "smollm2-135m": lambda: LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                        num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5,
                                        rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True),
}


def torch_bench(a):
    dev = torch.device(a.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(SHAPES[a.shape](), dtype=dtype).to(dev)
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=getattr(a, "dropout", 0.0),
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), device=dev)

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    res = {"tokens_per_s": a.batch * a.seq * a.steps / secs, "seconds": secs, "last_loss": float(loss)}
    if dev.type == "cuda":
        res["peak_vram_bytes"] = torch.cuda.max_memory_reserved()
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="bench-tiny", choices=sorted(SHAPES))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout on both sides")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32")
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--autograd", action="store_true", help="tunelab through candle's autograd instead of its hand-written backward")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--tunelab", default=str(ROOT / "target" / "release" / "tunelab"))
    p.add_argument("--json", help="write both results to this file")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    args = ["bench", "train", "--shape", a.shape, "--batch", str(a.batch), "--seq", str(a.seq), "--rank", str(a.rank),
            "--dropout", str(a.dropout), "--steps", str(a.steps), "--warmup", str(a.warmup), "--device", a.device, "--dtype", a.dtype, "--json"]
    if a.checkpointing:
        args.append("--checkpointing")
    if a.autograd:
        args.append("--autograd")
    ours = json.loads(subprocess.run([a.tunelab, *args], check=True, capture_output=True, text=True).stdout)
    theirs = torch_bench(a)
    gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "-"
    print(f"SFT LoRA r={a.rank}, {a.shape}, batch {a.batch}x{a.seq}, {a.device} {a.dtype}"
          f"{' +checkpointing' if a.checkpointing else ''}, {a.steps} steps")
    print(f"{'':<22} {'tokens/s':>10} {'peak VRAM':>12}")
    print(f"{'tunelab':<22} {ours['tokens_per_s']:>10.0f} {gib(ours.get('peak_vram_bytes')):>12}")
    print(f"{'transformers + PEFT':<22} {theirs['tokens_per_s']:>10.0f} {gib(theirs.get('peak_vram_bytes')):>12}")
    print(f"{'ratio (tunelab/torch)':<22} {ours['tokens_per_s'] / theirs['tokens_per_s']:>10.2f}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"tunelab": ours, "torch": theirs, "args": vars(a)}, indent=1))


if __name__ == "__main__":
    main()
