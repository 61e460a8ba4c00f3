"""Parity fixtures for the newer model families, made with transformers + peft + torch (f32, CPU).

Tiny random models of Qwen3, Gemma 2, Gemma 3 (text) and Phi-3, plus Mistral with a sliding
window, each with its distinctive features switched on and sized so they matter: q/k norms,
sliding windows shorter than the 9-token sequence, Gemma's soft-capping (caps small enough to
bend tiny random logits), query_pre_attn_scalar unlike head_dim, Gemma 3's local/global RoPE
bases, Phi-3's fused projections, partial rotary and LongRoPE with the long factors in use.

The weights are made and saved in f32, but every reference number is computed in f64 from
those same weights: transformers' own f32 logits already differ from exact ones by ~5e-5
relative on these fixtures, so an f32 reference would spend half the 1e-4 budget on its own
rounding.

For each it writes, like make_model_fixtures.py: the HF folder (model/), a PEFT adapter with
nonzero B saved by PEFT (adapter/), expected.json (logits with and without the adapter, HF
losses), grads.safetensors (the LoRA gradients) and train3.json (three AdamW steps, as
make_train_fixture.py). Only these small files are committed.

    pip install torch transformers peft safetensors
    python tests/reference/make_family_fixtures.py
"""
import json
import pathlib

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, MistralConfig, Phi3Config,
                          Qwen3Config)

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "models"

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5)
CONFIGS = {
    "qwen3": Qwen3Config(**COMMON, head_dim=12, hidden_act="silu", tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                         use_sliding_window=True, sliding_window=4, max_window_layers=1),
    "gemma2": Gemma2Config(**COMMON, head_dim=8, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=10,
                           sliding_window=4, attn_logit_softcapping=1.0, final_logit_softcapping=2.0,
                           tie_word_embeddings=True),
    "gemma3": Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 3}, head_dim=8,
                               hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=10, sliding_window=4,
                               layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                               rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                                "full_attention": {"rope_type": "linear", "factor": 4.0,
                                                                   "rope_theta": 1000000.0}},
                               tie_word_embeddings=True),
    "phi3": Phi3Config(**{**COMMON, "max_position_embeddings": 64}, hidden_act="silu", tie_word_embeddings=False,
                       original_max_position_embeddings=6, sliding_window=None, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                       rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                                        "short_factor": [1.0, 1.5, 2.0], "long_factor": [1.0, 3.0, 6.0],
                                        "original_max_position_embeddings": 6}),
    "mistral_window": MistralConfig(**COMMON, hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
                                    sliding_window=4),
}

IDS = [[5, 17, 42, 8, 91, 33, 60, 2, 77], [11, 4, 29, 64, 3, 50, 0, 0, 0]]
MASK = [[1] * 9, [1] * 6 + [0] * 3]
LABELS = [[-100, -100, 42, 8, 91, 33, 60, 2, 77], [-100, 4, 29, -100, 3, 50, -100, -100, -100]]
LR, BETAS, EPS, WD, MAX_NORM = 0.01, (0.9, 0.999), 1e-8, 0.01, 1.0


def adamw_steps(d, ids, mask, labels):
    base = AutoModelForCausalLM.from_pretrained(str(d / "model"), dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, str(d / "adapter"), is_trainable=True).double()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
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
    return {"lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WD, "max_grad_norm": MAX_NORM,
            "losses": losses, "grad_norms": norms, "torch": torch.__version__}


def main():
    torch.manual_seed(0)
    for name, cfg in CONFIGS.items():
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
        with torch.no_grad():  # non-trivial norms and a larger init, so every feature moves the logits
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_((0.0 if "gemma" in name else 1.0) + 0.1 * torch.randn_like(p))
                elif n.endswith(".bias"):
                    p.copy_(0.05 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
        model.eval()
        model.save_pretrained(str(d / "model"), safe_serialization=True)
        ids, mask, labels = torch.tensor(IDS), torch.tensor(MASK), torch.tensor(LABELS)
        with torch.no_grad():
            base = model.double()(input_ids=ids, attention_mask=mask, labels=labels)
        model.float()
        lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, lcfg)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.copy_(0.1 * torch.randn_like(p))
        peft_model.save_pretrained(str(d / "adapter"))
        peft_model.double()
        peft_model.train()
        out = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        grads = {n.replace(".default", ""): p.grad.detach().float().contiguous()
                 for n, p in peft_model.named_parameters() if p.grad is not None and "lora_" in n}
        save_file(grads, str(d / "grads.safetensors"))
        real = [[t for t in range(len(r)) if m[t]] for r, m in zip(IDS, MASK)]
        expected = {
            "input_ids": IDS,
            "attention_mask": MASK,
            "labels": LABELS,
            "base_loss": base.loss.item(),
            "adapter_loss": out.loss.item(),
            "lora_modules": sorted({n.split(".")[-3] for n in grads}),
            "base_logits": [[base.logits[b, t].tolist() for t in real[b]] for b in range(len(IDS))],
            "adapter_logits": [[out.logits[b, t].tolist() for t in real[b]] for b in range(len(IDS))],
        }
        (d / "expected.json").write_text(json.dumps(expected) + "\n")
        train3 = adamw_steps(d, ids, mask, labels)
        (d / "train3.json").write_text(json.dumps(train3, indent=1) + "\n")
        print(name, "base loss", round(base.loss.item(), 6), "adapter loss", round(out.loss.item(), 6),
              "grads", len(grads), "losses", [round(x, 5) for x in train3["losses"]])


if __name__ == "__main__":
    main()
