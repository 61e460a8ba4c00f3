"""Parity fixtures for the model core, made with transformers + peft + torch (f32, CPU).

For three tiny random models (Llama with GQA and Llama 3.1 rope scaling, Qwen2 with q/k/v bias
and tied embeddings, Mistral) it writes an ordinary HF folder (config.json,
model.safetensors), a PEFT LoRA adapter with nonzero B saved by PEFT itself, and
expected.json: logits for a padded batch with and without the adapter, the HF causal-LM loss,
and (in grads.safetensors) the LoRA gradients of that loss. Only these small files are
committed.

    pip install torch transformers peft safetensors
    python tests/reference/make_model_fixtures.py
"""
import json
import pathlib

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "models"

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, hidden_act="silu")
CONFIGS = {
    "llama": LlamaConfig(**COMMON, rope_theta=10000.0, tie_word_embeddings=False,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "qwen2": Qwen2Config(**COMMON, rope_theta=1000000.0, tie_word_embeddings=True),
    "mistral": MistralConfig(**COMMON, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=None),
}

IDS = [[5, 17, 42, 8, 91, 33, 60, 2, 77], [11, 4, 29, 64, 3, 50, 0, 0, 0]]
MASK = [[1] * 9, [1] * 6 + [0] * 3]
LABELS = [[-100, -100, 42, 8, 91, 33, 60, 2, 77], [-100, 4, 29, -100, 3, 50, -100, -100, -100]]


def main():
    torch.manual_seed(0)
    for name, cfg in CONFIGS.items():
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32, attn_implementation="eager")
        with torch.no_grad():  # give norms and biases non-trivial values so they are tested too
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif n.endswith(".bias"):
                    p.copy_(0.05 * torch.randn_like(p))
        model.eval()
        model.save_pretrained(str(d / "model"), safe_serialization=True)
        ids = torch.tensor(IDS)
        mask = torch.tensor(MASK)
        labels = torch.tensor(LABELS)
        with torch.no_grad():
            base = model(input_ids=ids, attention_mask=mask, labels=labels)
        lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, lcfg)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.copy_(0.1 * torch.randn_like(p))
        peft_model.save_pretrained(str(d / "adapter"))
        peft_model.train()  # dropout is 0, so train mode only turns on autograd bookkeeping
        out = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        grads = {}
        for n, p in peft_model.named_parameters():
            if p.grad is not None and "lora_" in n:
                grads[n.replace(".default", "")] = p.grad.detach().contiguous()
        save_file(grads, str(d / "grads.safetensors"))
        real = [[t for t in range(len(r)) if m[t]] for r, m in zip(IDS, MASK)]
        expected = {
            "input_ids": IDS,
            "attention_mask": MASK,
            "labels": LABELS,
            "base_loss": base.loss.item(),
            "adapter_loss": out.loss.item(),
            "base_logits": [[base.logits[b, t].tolist() for t in real[b]] for b in range(len(IDS))],
            "adapter_logits": [[out.logits[b, t].tolist() for t in real[b]] for b in range(len(IDS))],
        }
        (d / "expected.json").write_text(json.dumps(expected) + "\n")
        print(name, "base loss", round(base.loss.item(), 6), "adapter loss", round(out.loss.item(), 6), "grads", len(grads))


if __name__ == "__main__":
    main()
