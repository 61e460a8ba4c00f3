#!/usr/bin/env python3
"""Writes a Hugging Face model folder (config.json + model.safetensors) with random weights
of a named shape, for load and quantization benchmarks that need real files but no real
model. The shapes match `tunelab bench train --shape` (src/model/random.rs).

    python scripts/make_random_model.py qwen2.5-0.5b /tmp/qwen-shape [--dtype bfloat16]

Needs torch and safetensors.
"""
import argparse
import json
import pathlib

import torch
from safetensors.torch import save_file

SHAPES = {
    "smollm2-135m": dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192,
                         tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
                         tie_word_embeddings=True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    a = ap.parse_args()
    c = dict(SHAPES[a.shape])
    c["architectures"] = ["Qwen2ForCausalLM" if c["model_type"] == "qwen2" else "LlamaForCausalLM"]
    c["torch_dtype"] = a.dtype
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(c, indent=1))
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def mat(o, n):
        return (torch.randn(o, n) * 0.02).to(dtype)

    def ones(n):
        return torch.ones(n, dtype=dtype)

    t = {"model.embed_tokens.weight": mat(v, h), "model.norm.weight": ones(h)}
    qwen = c["model_type"] == "qwen2"
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        t[f"{p}.input_layernorm.weight"] = ones(h)
        t[f"{p}.post_attention_layernorm.weight"] = ones(h)
        for name, (o, n) in {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q)}.items():
            t[f"{p}.self_attn.{name}.weight"] = mat(o, n)
            if qwen and name != "o_proj":
                t[f"{p}.self_attn.{name}.bias"] = torch.zeros(o, dtype=dtype)
        t[f"{p}.mlp.gate_proj.weight"] = mat(i, h)
        t[f"{p}.mlp.up_proj.weight"] = mat(i, h)
        t[f"{p}.mlp.down_proj.weight"] = mat(h, i)
    path = out / "model.safetensors"
    save_file(t, str(path))
    print(out, sum(x.numel() for x in t.values()), "parameters")


if __name__ == "__main__":
    main()
