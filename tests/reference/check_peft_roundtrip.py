"""tunelab → PEFT: the Rust test `saved_adapters_round_trip_in_peft_format` writes the Qwen2
fixture adapter with tunelab's own writer; this loads it with PEFT unchanged
(`PeftModel.from_pretrained`) on the transformers base and checks the logits against
expected.json's adapter logits (which PEFT produced from its own files).

    python tests/reference/check_peft_roundtrip.py
"""
import json
import os
import pathlib
import subprocess
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
FIX = ROOT / "tests" / "fixtures" / "models" / "qwen2"


def main():
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TUNELAB_KEEP_ADAPTER=d)
        subprocess.run(["cargo", "test", "-q", "--test", "model_lora", "saved_adapters_round_trip_in_peft_format"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        base = AutoModelForCausalLM.from_pretrained(str(FIX / "model"), dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, d).eval()
        exp = json.loads((FIX / "expected.json").read_text())
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(exp["input_ids"]), attention_mask=torch.tensor(exp["attention_mask"])).logits
        worst = 0.0
        for b, rows in enumerate(exp["adapter_logits"]):
            for t, want in enumerate(rows):
                got = logits[b, t]
                want = torch.tensor(want)
                worst = max(worst, ((got - want).abs() / want.abs().clamp(min=1e-2)).max().item())
        print("PEFT loaded tunelab's adapter; max relative logit error", worst)
        assert worst < 1e-4


if __name__ == "__main__":
    main()
