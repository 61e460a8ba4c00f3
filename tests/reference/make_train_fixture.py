"""Optimizer-parity fixture: three AdamW steps of LoRA SFT with transformers + peft + torch.

Loads the model-core fixture tests/fixtures/models/llama (model + PEFT adapter with nonzero
B), trains only the LoRA weights for three steps on the fixture's padded batch with
torch.optim.AdamW (betas, eps and weight decay below; gradient clipping at MAX_NORM), and
writes the loss before each step and after the last one to
tests/fixtures/models/llama/train3.json.

    pip install torch transformers peft safetensors
    python tests/reference/make_train_fixture.py
"""
import json
import pathlib

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

D = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "models" / "llama"
LR, BETAS, EPS, WD, MAX_NORM = 0.01, (0.9, 0.999), 1e-8, 0.01, 1.0


def main():
    exp = json.loads((D / "expected.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(str(D / "model"), torch_dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, str(D / "adapter"), is_trainable=True)
    model.train()  # dropout is 0 in the adapter, so train mode changes nothing else
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    ids = torch.tensor(exp["input_ids"])
    mask = torch.tensor(exp["attention_mask"])
    labels = torch.tensor(exp["labels"])
    losses, norms = [], []
    for _ in range(3):
        opt.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, MAX_NORM)))
        losses.append(float(out.loss))
        opt.step()
    with torch.no_grad():
        losses.append(float(model(input_ids=ids, attention_mask=mask, labels=labels).loss))
    out = {"lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WD, "max_grad_norm": MAX_NORM,
           "losses": losses, "grad_norms": norms,
           "torch": torch.__version__}
    (D / "train3.json").write_text(json.dumps(out, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
