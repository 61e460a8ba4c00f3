"""tunelab → PEFT, for every model family: the Rust test `saved_adapters_round_trip_in_peft_format`
writes each fixture adapter (tests/fixtures/models/*/adapter) again with tunelab's own writer;
this loads every one of those with PEFT unchanged (`PeftModel.from_pretrained`) on the
transformers base, and checks its logits against the same base with PEFT's own adapter files.
Phi-3's fused `qkv_proj` / `gate_up_proj` and Gemma's tied embeddings included.

    python tests/reference/check_peft_roundtrip.py
"""
import os
import pathlib
import subprocess
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
IDS = torch.tensor([[5, 17, 42, 8, 91, 33, 60, 2, 77], [11, 4, 29, 64, 3, 50, 0, 0, 0]])
MASK = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])


def logits(fix, adapter):
    base = AutoModelForCausalLM.from_pretrained(str(fix / "model"), dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).logits


def main():
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TUNELAB_KEEP_ADAPTER=d)
        subprocess.run(["cargo", "test", "-q", "--test", "it", "model_lora::saved_adapters_round_trip_in_peft_format"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        names = sorted(p.name for p in pathlib.Path(d).iterdir())
        assert len(names) >= 8, names
        for name in names:
            fix = MODELS / name
            ours, theirs = logits(fix, pathlib.Path(d) / name), logits(fix, fix / "adapter")
            worst = ((ours - theirs).abs() / theirs.abs().clamp(min=1e-2))[MASK.bool()].max().item()
            print(f"{name:15} PEFT loaded tunelab's adapter; max relative logit difference {worst:.1e}")
            assert worst < 1e-6, name


if __name__ == "__main__":
    main()
