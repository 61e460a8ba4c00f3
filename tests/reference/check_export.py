"""tunelab's exports read by the Python stack.

Makes a tiny Llama-family model (and a Gemma 3 and a Phi-3 one), trains a LoRA adapter for a
few steps with tunelab, exports it, then:
  1. gguf-py (PyPI `gguf`, llama.cpp's own reader) reads the merged GGUF and the LoRA GGUF:
     architecture, block count, tensor names and shapes, tokenizer metadata, adapter keys;
  2. with torch installed: transformers loads the merged folder, and its logits equal
     transformers' base model with tunelab's adapter loaded by PEFT within 1e-4 (relative to
     each position's largest logit). tunelab's unmerged logits equal PEFT's
     (tests/it/model_parity.rs), so this closes the loop.

    pip install gguf numpy            # step 1
    pip install torch transformers peft safetensors   # step 2 (skipped, and said, without)
    cargo build --release && python tests/reference/check_export.py
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import gguf

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
TUNELAB = os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "release" / "tunelab"))


def tunelab(home, *args):
    env = dict(os.environ, TUNELAB_HOME=str(home))
    return subprocess.run([TUNELAB, *args], env=env, check=True, capture_output=True, text=True).stdout


def trained(home, arch):
    model = home / f"tiny-{arch}"
    tunelab(home, "model", "init-tiny", "--arch", arch, "-o", str(model))
    cfg = home / f"{arch}.yaml"
    cfg.write_text(
        f"name: {arch}\nmodel: {{path: {model}}}\n"
        f"data: {{train: {home}/data/demo/persona.jsonl, max_seq_len: 96}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [all-linear], use_rslora: false}\n"
        "train: {lr: 0.02, scheduler: constant, warmup: 0, batch_size: 4, max_steps: 4, seed: 1, save_every: 4}\n")
    run = home / f"run-{arch}"
    tunelab(home, "train", str(cfg), "--run-dir", str(run))
    return model, run


def check_gguf(path, arch, layers, lora_path):
    r = gguf.GGUFReader(str(path))
    field = lambda k: r.fields[k].contents()
    assert field("general.architecture") == arch, field("general.architecture")
    assert field(f"{arch}.block_count") == layers
    names = {t.name: tuple(int(x) for x in t.shape) for t in r.tensors}
    assert "token_embd.weight" in names and "output_norm.weight" in names, sorted(names)
    assert any(n.startswith(f"blk.{layers - 1}.") for n in names)
    assert field("tokenizer.ggml.model") == "gpt2"
    assert len(field("tokenizer.ggml.tokens")) == names["token_embd.weight"][1]
    lr = gguf.GGUFReader(str(lora_path))
    assert lr.fields["general.type"].contents() == "adapter"
    assert lr.fields["adapter.type"].contents() == "lora"
    pairs = [t.name for t in lr.tensors if t.name.endswith(".lora_a")]
    assert all(p[: -len(".lora_a")] in names for p in pairs), pairs[:3]
    return len(names), len(pairs)


def check_transformers(model, run, merged):
    try:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
    except ImportError:
        print("  transformers check SKIPPED: torch, transformers or peft not installed")
        return None
    ids = torch.tensor([[5, 17, 42, 8, 91, 33, 60, 2, 77, 12]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32, attn_implementation="eager")
        want = PeftModel.from_pretrained(base, str(run / "adapter")).eval()(input_ids=ids).logits[0]
        got = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32,
                                                   attn_implementation="eager")(input_ids=ids).logits[0]
    scale = want.abs().max(dim=-1).values
    worst = ((got - want).abs().max(dim=-1).values / scale).max().item()
    assert worst < 1e-4, worst
    return worst


def main():
    with tempfile.TemporaryDirectory() as d:
        home = pathlib.Path(d)
        tunelab(home, "demo")
        print(f"{'family':8} {'gguf tensors':>12} {'lora pairs':>10}  transformers (merged vs base+PEFT)")
        for arch, gguf_arch in [("llama", "llama"), ("gemma3", "gemma3"), ("phi3", "phi3")]:
            model, run = trained(home, arch)
            out = home / f"export-{arch}"
            tunelab(home, "export", str(run), "--merge", "--dtype", "f32", "--gguf", "--gguf-lora", "-o", str(out))
            layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
            n, pairs = check_gguf(out / "model-f16.gguf", gguf_arch, layers, out / "adapter.gguf")
            worst = check_transformers(model, run, out)
            shown = "skipped" if worst is None else f"max diff {worst:.1e} of the largest logit"
            print(f"{arch:8} {n:>12} {pairs:>10}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
