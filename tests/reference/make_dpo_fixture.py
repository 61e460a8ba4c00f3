"""Preference-loss parity fixture (DPO family) made with transformers + peft + torch (f32, CPU).

Loads the model-core fixture tests/fixtures/models/llama (tiny Llama + PEFT LoRA adapter with
nonzero B, dropout 0) and scores three fixed preference pairs of token ids. Every sequence
prompt+completion is run alone (batch 1, no padding); a completion's log-prob is the sum over its
tokens of log_softmax(logits[t-1])[ids[t]], for the policy (adapter on, with grad) and the
reference (adapter disabled, no grad). From these it computes, in float64, the losses and metrics
of seven cases (DPO sigmoid, sigmoid with label smoothing, IPO, hinge, SimPO as in TRL's CPO,
ORPO as in TRL's ORPO, and RPO = sigmoid + rpo_alpha * chosen NLL), back-propagates each loss
into the LoRA weights and writes to tests/fixtures/dpo/:

  expected.json              pairs, per-sequence log-probs and lengths, per-case loss + metrics
  grads_<case>.safetensors   LoRA gradients of that case's loss (keys: PEFT names without
                             ".default", float32)

If trl is installed, the sigmoid, ipo and hinge losses are also cross-checked against TRL's own
DPOTrainer._compute_loss (called unbound on a lightweight stand-in object, no trainer is built);
without trl, or if that private API has changed shape, the cross-check is skipped and the script
still succeeds. Only these small files are committed.

    pip install torch transformers peft safetensors   # optionally also: pip install trl
    python tests/reference/make_dpo_fixture.py
"""
import contextlib
import inspect
import json
import math
import pathlib
import types
from collections import defaultdict

import peft
import torch
import torch.nn.functional as F
import transformers
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
D = FIX / "models" / "llama"
OUT = FIX / "dpo"

PAIRS = [
    {"prompt": [5, 17, 42, 8], "chosen": [91, 33, 60], "rejected": [2, 77, 11, 4]},
    {"prompt": [11, 4, 29], "chosen": [64, 3, 50, 12, 7], "rejected": [19, 23]},
    {"prompt": [7, 70, 14, 55, 9, 31], "chosen": [40, 41], "rejected": [40, 88, 6]},
]

# name -> settings; loss_type is one of sigmoid|ipo|hinge|simpo|orpo (as in TRL)
CASES = {
    "sigmoid": dict(loss_type="sigmoid", beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, rpo_alpha=None),
    "sigmoid_smooth": dict(loss_type="sigmoid", beta=0.1, label_smoothing=0.1, simpo_gamma=0.5, rpo_alpha=None),
    "ipo": dict(loss_type="ipo", beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, rpo_alpha=None),
    "hinge": dict(loss_type="hinge", beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, rpo_alpha=None),
    "simpo": dict(loss_type="simpo", beta=2.0, label_smoothing=0.0, simpo_gamma=0.5, rpo_alpha=None),
    "orpo": dict(loss_type="orpo", beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, rpo_alpha=None),
    "rpo": dict(loss_type="sigmoid", beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, rpo_alpha=0.5),
}


def token_logps(model, prompt, completion):
    """float64 per-token log-probs of `completion` given `prompt` (batch 1, no padding)."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0]  # [T, V] float32
    logp = torch.log_softmax(logits, dim=-1)
    pos = torch.arange(len(prompt), len(prompt) + len(completion))  # completion positions t
    return logp[pos - 1, ids[0, pos]].double()  # log_softmax(logits[t-1])[ids[t]], cast before summing


def score(model):
    """Per-pair lists of per-token float64 log-prob tensors for chosen and rejected."""
    ch = [token_logps(model, p["prompt"], p["chosen"]) for p in PAIRS]
    rj = [token_logps(model, p["prompt"], p["rejected"]) for p in PAIRS]
    return ch, rj


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, computed stably."""
    return torch.log(-torch.expm1(x))


def case_loss(cfg, pol, ref):
    """Scalar loss (float64) and metrics dict for one case. pol/ref: (chosen, rejected) token lists."""
    beta, eps, lt = cfg["beta"], cfg["label_smoothing"], cfg["loss_type"]
    pc = torch.stack([t.sum() for t in pol[0]])
    pr = torch.stack([t.sum() for t in pol[1]])
    rc = torch.stack([t.sum() for t in ref[0]])
    rr = torch.stack([t.sum() for t in ref[1]])
    lc = torch.tensor([float(len(t)) for t in pol[0]], dtype=torch.float64)
    lr = torch.tensor([float(len(t)) for t in pol[1]], dtype=torch.float64)
    # token-level mean NLL over all chosen completion tokens of all pairs
    nll = -torch.cat(pol[0]).sum() / lc.sum()
    extra = {}
    if lt in ("sigmoid", "hinge"):
        delta = (pc - pr) - (rc - rr)
        if lt == "sigmoid":
            losses = -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(-beta * delta)
        else:
            losses = torch.relu(1 - beta * delta)
        rew_c, rew_r = beta * (pc - rc).detach(), beta * (pr - rr).detach()
        used_c, used_r = pc, pr
    elif lt == "ipo":
        pca, pra, rca, rra = pc / lc, pr / lr, rc / lc, rr / lr
        delta = (pca - pra) - (rca - rra)
        losses = (delta - 1 / (2 * beta)) ** 2
        rew_c, rew_r = beta * (pca - rca).detach(), beta * (pra - rra).detach()
        used_c, used_r = pca, pra
    elif lt == "simpo":
        pca, pra = pc / lc, pr / lr
        z = beta * (pca - pra) - cfg["simpo_gamma"]
        losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
        rew_c, rew_r = beta * pca.detach(), beta * pra.detach()
        used_c, used_r = pca, pra
    elif lt == "orpo":
        pca, pra = pc / lc, pr / lr
        lo = (pca - pra) - (log1mexp(pca) - log1mexp(pra))
        ratio = F.logsigmoid(lo)
        losses = nll - beta * ratio  # mean over pairs gives nll - mean(beta * ratio)
        rew_c, rew_r = beta * pca.detach(), beta * pra.detach()
        used_c, used_r = pca, pra
        extra = {"nll_loss": nll.item(), "log_odds_ratio": ratio.mean().item(), "log_odds_chosen": lo.mean().item()}
    else:
        raise ValueError(lt)
    loss = losses.mean()
    if cfg["rpo_alpha"] is not None:
        loss = loss + cfg["rpo_alpha"] * nll
        extra = {"nll_loss": nll.item()}
    metrics = {
        "rewards/chosen": rew_c.mean().item(),
        "rewards/rejected": rew_r.mean().item(),
        "rewards/margins": (rew_c - rew_r).mean().item(),
        "rewards/accuracies": (rew_c > rew_r).double().mean().item(),
        "logps/chosen": used_c.detach().mean().item(),
        "logps/rejected": used_r.detach().mean().item(),
        **extra,
    }
    return loss, metrics


CHECKED = ("sigmoid", "ipo", "hinge")


def _trl_stub(model, cfg, precompute):
    """The attributes DPOTrainer._compute_loss reads, without building a trainer."""
    ident = lambda x: x  # noqa: E731 -- single process: gather is the identity
    return types.SimpleNamespace(
        model=model, ref_model=None, beta=cfg["beta"], label_smoothing=cfg["label_smoothing"],
        loss_types=[cfg["loss_type"]], loss_weights=[1.0], ld_alpha=None, f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=1.0, use_weighting=False, aux_loss_enabled=False, precompute_ref_logps=precompute,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
        accelerator=types.SimpleNamespace(device=torch.device("cpu"), gather=ident, gather_for_metrics=ident,
                                          unwrap_model=ident, autocast=contextlib.nullcontext))


def _trl_batch(ref):
    """A right-padded TRL-style batch: rows are the 3 chosen then the 3 rejected prompt+completion sequences."""
    rows = [(p["prompt"], p["chosen"]) for p in PAIRS] + [(p["prompt"], p["rejected"]) for p in PAIRS]
    width = max(len(a) + len(b) for a, b in rows)
    ids, att, comp = (torch.zeros(len(rows), width, dtype=torch.long) for _ in range(3))
    for i, (a, b) in enumerate(rows):
        ids[i, : len(a) + len(b)] = torch.tensor(a + b)
        att[i, : len(a) + len(b)] = 1
        comp[i, len(a): len(a) + len(b)] = 1
    batch = {"input_ids": ids, "attention_mask": att, "completion_mask": comp}
    if ref is not None:
        batch["ref_chosen_logps"] = torch.stack([t.sum() for t in ref[0]])
        batch["ref_rejected_logps"] = torch.stack([t.sum() for t in ref[1]])
    return batch


class _FixedLogps:
    """Stands in for a fused-LM-head model: returns our own per-token log-probs (float64) in TRL's layout."""

    training = False

    def __init__(self, pol, width):
        self.lp = torch.zeros(6, width - 1, dtype=torch.float64)
        for i, (p, t) in enumerate([(p, t) for p, t in zip(PAIRS, pol[0])] + [(p, t) for p, t in zip(PAIRS, pol[1])]):
            n = len(p["prompt"])
            self.lp[i, n - 1: n - 1 + len(t)] = t.detach()  # position t-1 scores token t

    def __call__(self, **kw):
        z = torch.zeros_like(self.lp)
        return types.SimpleNamespace(log_probs=self.lp, entropy=z, mean_logits=z, is_top1=z.bool())


def trl_cross_check(trl, pol, ref, ours):
    """Compare sigmoid/ipo/hinge losses with TRL's DPOTrainer._compute_loss; returns a message.

    TRL >= 1.x has no standalone dpo_loss; the loss lives in DPOTrainer._compute_loss, which is called here
    unbound on a lightweight stand-in for the trainer. (a) feeds it our exact per-token log-probs (checks the
    loss formulas, tolerance 1e-6); (b) lets TRL score a right-padded batch itself with its fused LM head on a
    fresh copy of the model + adapter, policy and reference (adapter disabled) both (checks our log-prob
    extraction too; float32 sums, so it is reported with a looser tolerance).
    """
    try:
        from trl.trainer.dpo_trainer import DPOTrainer
        from trl.trainer.utils import add_fused_lm_head
    except Exception as e:  # noqa: BLE001
        return f"skipped: cannot import DPOTrainer/add_fused_lm_head from trl {trl.__version__} ({type(e).__name__}: {e})"
    fn = getattr(DPOTrainer, "_compute_loss", None)
    if fn is None or list(inspect.signature(fn).parameters) != ["self", "model", "inputs", "return_outputs"]:
        return f"skipped: trl {trl.__version__} has no DPOTrainer._compute_loss(self, model, inputs, return_outputs)"
    lines, ok_all = [], True
    try:
        batch = _trl_batch(ref)
        fixed = _FixedLogps(pol, batch["input_ids"].size(1))
        for name in CHECKED:
            stub = _trl_stub(fixed, CASES[name], precompute=True)
            theirs = fn(stub, fixed, batch, False).item()
            diff = abs(theirs - ours[name])
            ok_all &= diff <= 1e-6
            lines.append(f"(a) {name:8s} ours {ours[name]:.12f} trl {theirs:.12f} |diff| {diff:.1e} "
                         f"{'OK' if diff <= 1e-6 else 'MISMATCH'} (tol 1e-6)")
    except Exception as e:  # noqa: BLE001
        return f"skipped: calling trl {trl.__version__} DPOTrainer._compute_loss failed ({type(e).__name__}: {e})"
    try:
        base = AutoModelForCausalLM.from_pretrained(str(D / "model"), torch_dtype=torch.float32,
                                                    attn_implementation="eager")
        add_fused_lm_head(base, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        model = PeftModel.from_pretrained(base, str(D / "adapter"))
        model.eval()
        batch = _trl_batch(None)
        for name in CHECKED:
            stub = _trl_stub(model, CASES[name], precompute=False)
            with torch.no_grad():
                theirs = fn(stub, model, batch, False).item()
            diff = abs(theirs - ours[name])
            tol = 1e-5 * max(1.0, abs(ours[name]))
            ok_all &= diff <= tol
            m = {k: v[0] for k, v in stub._metrics["eval"].items()}
            lines.append(f"(b) {name:8s} ours {ours[name]:.12f} trl {theirs:.12f} |diff| {diff:.1e} "
                         f"{'OK' if diff <= tol else 'MISMATCH'} (tol {tol:.1e}); trl logps/chosen {m['logps/chosen']:.6f}")
    except Exception as e:  # noqa: BLE001
        lines.append(f"(b) skipped: TRL fused-head scoring failed ({type(e).__name__}: {e})")
    return ("ran, all OK" if ok_all else "ran, MISMATCH") + ":\n  " + "\n  ".join(lines)


def main():
    try:
        import trl
    except Exception as e:  # noqa: BLE001 -- trl is optional
        print(f"trl not available ({type(e).__name__}: {e}); cross-check will be skipped")
        trl = None
    OUT.mkdir(parents=True, exist_ok=True)
    base = AutoModelForCausalLM.from_pretrained(str(D / "model"), torch_dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, str(D / "adapter"), is_trainable=True)
    model.train()  # dropout is 0 in the adapter, so train mode only turns on autograd bookkeeping
    lora = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n, _ in lora)

    with torch.no_grad(), model.disable_adapter():
        ref = score(model)
    with torch.no_grad():
        pol0 = score(model)

    cases, ours = {}, {}
    for name, cfg in CASES.items():
        for _, p in lora:
            p.grad = None
        pol = score(model)  # fresh forward with grad for every case
        assert all(torch.equal(a.detach(), b) for a, b in zip(pol[0] + pol[1], pol0[0] + pol0[1]))  # deterministic
        loss, metrics = case_loss(cfg, pol, ref)
        loss.backward()
        grads = {n.replace(".default", ""): p.grad.detach().float().contiguous() for n, p in lora}
        assert all(torch.isfinite(g).all() for g in grads.values())
        save_file(grads, str(OUT / f"grads_{name}.safetensors"))
        ours[name] = loss.item()
        cases[name] = {**cfg, "loss": loss.item(), "metrics": metrics}
        m = metrics
        print(f"{name:15s} loss {loss.item():.8f}  rewards/margins {m['rewards/margins']:+.6f}  "
              f"rewards/accuracies {m['rewards/accuracies']:.4f}  logps/chosen {m['logps/chosen']:.6f}"
              + (f"  nll_loss {m['nll_loss']:.6f}" if "nll_loss" in m else ""))

    if trl is not None:
        print("TRL cross-check", trl_cross_check(trl, pol0, ref, ours))
    else:
        print("TRL cross-check skipped: trl not installed")

    expected = {
        "model": "models/llama/model",
        "adapter": "models/llama/adapter",
        "pairs": PAIRS,
        "policy": {
            "chosen": [t.sum().item() for t in pol0[0]],
            "rejected": [t.sum().item() for t in pol0[1]],
            "chosen_len": [len(p["chosen"]) for p in PAIRS],
            "rejected_len": [len(p["rejected"]) for p in PAIRS],
        },
        "reference": {
            "chosen": [t.sum().item() for t in ref[0]],
            "rejected": [t.sum().item() for t in ref[1]],
        },
        "cases": cases,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__ if trl is not None else None,
    }
    for v in expected["policy"]["chosen"] + expected["policy"]["rejected"] + [c["loss"] for c in cases.values()]:
        assert math.isfinite(v)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("wrote", OUT / "expected.json", "and", len(cases), "grads_<case>.safetensors")


if __name__ == "__main__":
    main()
