"""GGUF fixtures for the newer families, written with llama.cpp's own gguf-py (PyPI `gguf`).

Converts the tiny models of make_family_fixtures.py (tests/fixtures/models/{qwen3,gemma2,
gemma3,phi3}/model) into GGUF the way llama.cpp's convert_hf_to_gguf.py does: tensor names
from gguf-py's TensorNameMap (the converter's own table), Gemma's norm weights stored as
`1 + w`, q/k rows left unpermuted (only the `llama` architecture permutes them), Phi-3's
LongRoPE factors as `rope_factors_long/short` tensors, and the converter's metadata keys
(sliding window and its per-layer pattern, soft-caps, Gemma 3's local RoPE base, the attention
scale). Weights stay f32 so the Rust test can demand the safetensors model's logits exactly;
quantized GGUF reading is covered by the SmolLM2 tests. The tokenizer metadata is a stub:
these files test the weights and the architecture mapping.

    pip install gguf safetensors torch
    python tests/reference/make_gguf_fixtures.py
"""
import json
import math
import pathlib

import gguf
import numpy as np
from safetensors.numpy import load_file

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
ARCH = {"qwen3": gguf.MODEL_ARCH.QWEN3, "gemma2": gguf.MODEL_ARCH.GEMMA2, "gemma3": gguf.MODEL_ARCH.GEMMA3,
        "phi3": gguf.MODEL_ARCH.PHI3}


def convert(name):
    src = ROOT / "models" / name / "model"
    cfg = json.loads((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    arch = ARCH[name]
    n_layers = cfg["num_hidden_layers"]
    names = gguf.get_tensor_name_map(arch, n_layers)
    out = ROOT / "gguf" / f"{name}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    rope = cfg.get("rope_parameters") or {}
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(n_layers)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    global_rope = rope.get("full_attention", rope)
    w.add_rope_freq_base(global_rope.get("rope_theta", 10000.0))
    rotary = int(head_dim * rope.get("partial_rotary_factor", 1.0))
    w.add_rope_dimension_count(rotary)
    if cfg.get("sliding_window") and (cfg.get("use_sliding_window", True)):
        w.add_sliding_window(cfg["sliding_window"])
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg["layer_types"]])
    if name.startswith("gemma"):
        w.add_attention_scale(cfg["query_pre_attn_scalar"] ** -0.5)
        if cfg.get("attn_logit_softcapping"):
            w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        if cfg.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    if name == "gemma3":
        w.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
        if global_rope.get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(global_rope["factor"])
    if name == "phi3":
        original = cfg["original_max_position_embeddings"]
        factor = cfg["max_position_embeddings"] / original
        w.add_rope_scaling_orig_ctx_len(original)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(factor) / math.log(original)))
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight",
                     np.array(rope["long_factor"], dtype=np.float32))
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight",
                     np.array(rope["short_factor"], dtype=np.float32))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(3, cfg["vocab_size"])]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    for hf, t in tensors.items():
        base, suffix = hf.rsplit(".", 1)
        new = names.get_name(base)
        assert new is not None, f"{name}: no llama.cpp name for {hf}"
        data = t.astype(np.float32)
        if name.startswith("gemma") and base.endswith("norm"):
            data = data + 1.0  # convert_hf_to_gguf's Gemma: norms are stored as 1 + w
        w.add_tensor(f"{new}.{suffix}", data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(name, out.stat().st_size, "bytes")


def main():
    for name in ARCH:
        convert(name)


if __name__ == "__main__":
    main()
