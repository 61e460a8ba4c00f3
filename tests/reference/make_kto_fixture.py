"""KTO-loss parity fixture made with transformers + peft + torch (f32, CPU).

Loads the model-core fixture tests/fixtures/models/llama (tiny Llama + PEFT LoRA adapter with
nonzero B, dropout 0) and scores ONE batch of four fixed unpaired examples of token ids (prompt,
completion, label True = desirable / False = undesirable). Every sequence prompt+completion is run
alone (batch 1, no padding); a completion's log-prob is the sum over its tokens of
log_softmax(logits[t-1])[ids[t]], for the policy (adapter on, with grad) and the reference (adapter
disabled, no grad). As in TRL's KTOTrainer, the KL estimate uses mismatched sequences built by
rotating the completions by +1 within the batch: example i is also scored as (prompt[i],
completion[(i-1) % n]), by the policy (no grad) and the reference. From these it computes, in
float64, TRL's KTO loss (loss_type "kto"):

  kl       = max(0, mean_i(policy_KL[i] - reference_KL[i]))   (detached; "kl_raw" = before the clamp)
  chosen   = 1 - sigmoid(beta * ((policy - reference) - kl))   for label True
  rejected = 1 - sigmoid(beta * (kl - (policy - reference)))   for label False
  loss     = mean(cat(desirable_weight * chosen, undesirable_weight * rejected))

and TRL's metrics (kl, rewards/chosen|rejected|margins, logps/chosen|rejected), for each case of
CASES, back-propagates each loss into the LoRA weights and writes to tests/fixtures/kto/:

  expected.json              examples, per-sequence log-probs (main and KL) and lengths, per-case
                             settings, loss, kl, kl_raw and metrics
  grads_<case>.safetensors   LoRA gradients of that case's loss (keys: PEFT names without
                             ".default", float32)

The examples are ordered so that kl_raw is positive (0.1187) and the KL term is exercised; the
clamp at 0 is covered by tunelab's unit tests. Whenever kl_raw is positive, a case "kl_off" (kl
fixed to 0, as when TRL does not compute the KL term) would
be added so that both branches are covered.

If trl is installed, every case is also cross-checked against TRL's own KTOTrainer._compute_loss
(called unbound on a lightweight stand-in object, no trainer is built): (a) fed our exact per-token
log-probs, comparing loss and metrics at 1e-6; (b) scoring a TRL-collated, right-padded batch with
its fused LM head on the real model + adapter (policy and reference), comparing loss and metrics at
1e-5 relative and the LoRA gradients of TRL's loss with ours. Without trl, or if that private API
has changed shape, the cross-check is skipped and the script still succeeds. Only these small files
are committed.

    pip install torch transformers peft safetensors   # optionally also: pip install trl
    python tests/reference/make_kto_fixture.py
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
OUT = FIX / "kto"

# token ids < vocab_size (96) of the fixture model; mixed labels
# In this order the KL estimate is positive (0.1187), so the loss's `- kl` term is exercised;
# the clamp at 0 is covered by tunelab's unit tests of the loss.
EXAMPLES = [
    {"prompt": [5, 17, 42, 8], "completion": [91, 33, 60], "label": True},
    {"prompt": [3, 12, 6], "completion": [64, 3, 50, 12, 7], "label": False},
    {"prompt": [11, 4, 29], "completion": [19, 23], "label": False},
    {"prompt": [7, 70, 14, 55, 9, 31], "completion": [40, 41], "label": True},
]
N = len(EXAMPLES)

# name -> settings (loss_type "kto" throughout); kl_zero: kl fixed to 0 instead of the clamped estimate
CASES = {
    "kto": dict(beta=0.1, desirable_weight=1.0, undesirable_weight=1.0, kl_zero=False),
    "weighted": dict(beta=0.5, desirable_weight=1.0, undesirable_weight=1.5, kl_zero=False),
    # A large beta makes the KL point move the loss at first order (beta * kl = 0.59), so a
    # loss that left out its `- kl` term would fail the loss check, not only the kl metric.
    "sharp": dict(beta=5.0, desirable_weight=1.0, undesirable_weight=1.0, kl_zero=False),
}
KL_OFF = dict(beta=0.1, desirable_weight=1.0, undesirable_weight=1.0, kl_zero=True)  # added if kl_raw > 0

METRICS = ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


def kl_completion(i):
    """TRL's KL rotation by +1: example i is paired with the completion of example i-1 (0 takes the last)."""
    return EXAMPLES[(i - 1) % N]["completion"]


def token_logps(model, prompt, completion):
    """float64 per-token log-probs of `completion` given `prompt` (batch 1, no padding)."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0]  # [T, V] float32
    logp = torch.log_softmax(logits, dim=-1)
    pos = torch.arange(len(prompt), len(prompt) + len(completion))  # completion positions t
    return logp[pos - 1, ids[0, pos]].double()  # log_softmax(logits[t-1])[ids[t]], cast before summing


def score(model):
    """Per-example list of per-token float64 log-prob tensors of (prompt, completion)."""
    return [token_logps(model, e["prompt"], e["completion"]) for e in EXAMPLES]


def score_kl(model):
    """Per-example list of per-token float64 log-prob tensors of the KL sequences (prompt, rotated completion)."""
    return [token_logps(model, e["prompt"], kl_completion(i)) for i, e in enumerate(EXAMPLES)]


def kl_raw_of(pol_kl, ref_kl):
    return (torch.stack([t.sum() for t in pol_kl]) - torch.stack([t.sum() for t in ref_kl])).mean()


def case_loss(cfg, pol, ref, pol_kl, ref_kl):
    """Scalar loss (float64), clamped kl, unclamped kl and metrics dict for one case."""
    beta, dw, uw = cfg["beta"], cfg["desirable_weight"], cfg["undesirable_weight"]
    p = torch.stack([t.sum() for t in pol])
    r = torch.stack([t.sum() for t in ref])
    kl_raw = kl_raw_of(pol_kl, ref_kl).detach()
    kl = torch.zeros((), dtype=torch.float64) if cfg["kl_zero"] else kl_raw.clamp(min=0)
    lab = torch.tensor([e["label"] for e in EXAMPLES])
    ci, ri = torch.nonzero(lab).view(-1), torch.nonzero(~lab).view(-1)
    c_lr, r_lr = p[ci] - r[ci], p[ri] - r[ri]
    chosen_losses = 1 - torch.sigmoid(beta * (c_lr - kl))
    rejected_losses = 1 - torch.sigmoid(beta * (kl - r_lr))
    losses = torch.cat((dw * chosen_losses, uw * rejected_losses))
    loss = losses.mean()
    rew_c, rew_r = (beta * c_lr.detach()).sum() / len(ci), (beta * r_lr.detach()).sum() / len(ri)
    metrics = {
        "kl": kl.item(),
        "rewards/chosen": rew_c.item(),
        "rewards/rejected": rew_r.item(),
        "rewards/margins": (rew_c - rew_r).item(),
        "logps/chosen": (p[ci].detach().sum() / len(ci)).item(),
        "logps/rejected": (p[ri].detach().sum() / len(ri)).item(),
    }
    return loss, kl.item(), kl_raw.item(), metrics


def _trl_stub(trainer_cls, model, cfg, precompute):
    """The attributes KTOTrainer._compute_loss reads, without building a trainer (plus its helper
    _compute_kl_logps, bound to the stand-in)."""
    ident = lambda x: x  # noqa: E731 -- single process: gather is the identity
    stub = types.SimpleNamespace(
        model=model, ref_model=None, beta=cfg["beta"], loss_type="kto", calculate_KL=not cfg["kl_zero"],
        desirable_weight=cfg["desirable_weight"], undesirable_weight=cfg["undesirable_weight"],
        aux_loss_enabled=False, router_aux_loss_coef=0.0, precompute_ref_logps=precompute,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
        accelerator=types.SimpleNamespace(device=torch.device("cpu"), gather=ident, gather_for_metrics=ident,
                                          unwrap_model=ident, autocast=contextlib.nullcontext))
    stub._compute_kl_logps = types.MethodType(trainer_cls._compute_kl_logps, stub)
    return stub


def _pad_batch(rows, prefix):
    """Right-padded input_ids/attention_mask/completion_mask, as TRL's DataCollatorForUnpairedPreference."""
    width = max(len(a) + len(b) for a, b in rows)
    ids, att, comp = (torch.zeros(len(rows), width, dtype=torch.long) for _ in range(3))
    for i, (a, b) in enumerate(rows):
        ids[i, : len(a) + len(b)] = torch.tensor(a + b)
        att[i, : len(a) + len(b)] = 1
        comp[i, len(a): len(a) + len(b)] = 1
    return {f"{prefix}input_ids": ids, f"{prefix}attention_mask": att, f"{prefix}completion_mask": comp}


def _trl_batch(ref=None, ref_kl=None):
    """A TRL-style KTO batch (TRL's own collator when importable), with float64 precomputed ref logps if given."""
    feats = [{"prompt_ids": e["prompt"], "completion_ids": e["completion"], "KL_completion_ids": kl_completion(i),
              "label": e["label"]} for i, e in enumerate(EXAMPLES)]
    try:
        from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference
        batch, how = DataCollatorForUnpairedPreference(pad_token_id=0)(feats), "trl collator"
    except Exception:  # noqa: BLE001
        batch = {**_pad_batch([(f["prompt_ids"], f["completion_ids"]) for f in feats], ""),
                 **_pad_batch([(f["prompt_ids"], f["KL_completion_ids"]) for f in feats], "KL_"),
                 "label": torch.tensor([f["label"] for f in feats])}
        how = "own collator"
    if ref is not None:  # float64, not through the collator (which would make float32 tensors)
        batch["ref_logps"] = torch.stack([t.sum() for t in ref])
        batch["ref_KL_logps"] = torch.stack([t.sum() for t in ref_kl])
    return batch, how


class _FixedLogps:
    """Stands in for a fused-LM-head model: returns our own per-token log-probs (float64) in TRL's layout."""

    training = False

    def __init__(self, batch, pol, pol_kl):
        self.tables = []
        for key, toks, comps in (("input_ids", pol, [e["completion"] for e in EXAMPLES]),
                                 ("KL_input_ids", pol_kl, [kl_completion(i) for i in range(N)])):
            ids = batch[key]
            lp = torch.zeros(ids.size(0), ids.size(1) - 1, dtype=torch.float64)
            for i, (e, t) in enumerate(zip(EXAMPLES, toks)):
                n = len(e["prompt"])
                assert ids[i, n: n + len(t)].tolist() == comps[i]
                lp[i, n - 1: n - 1 + len(t)] = t.detach()  # position t-1 scores token t
            self.tables.append((ids, lp))

    def __call__(self, input_ids, **kw):
        for ids, lp in self.tables:
            if ids.shape == input_ids.shape and torch.equal(ids, input_ids):
                z = torch.zeros_like(lp)
                return types.SimpleNamespace(log_probs=lp, entropy=z, mean_logits=z, is_top1=z.bool())
        raise ValueError("stand-in model called with unknown input_ids")


def _cmp(tag, name, ours, theirs_loss, theirs_m, tol_fn):
    """One line comparing loss + metrics; returns (ok, line)."""
    diffs = {"loss": (ours["loss"], theirs_loss)}
    for k in METRICS:
        diffs[k] = (ours["metrics"][k], theirs_m.get(k, float("nan")))
    bad = [k for k, (a, b) in diffs.items() if not abs(a - b) <= tol_fn(a)]
    worst = max(abs(a - b) for a, b in diffs.values())
    line = (f"({tag}) {name:9s} loss ours {ours['loss']:.12f} trl {theirs_loss:.12f}; kl ours {ours['kl']:.3e} "
            f"trl {theirs_m.get('kl', float('nan')):.3e}; max |diff| over loss+{len(METRICS)} metrics "
            f"{worst:.1e} " + ("OK" if not bad else f"MISMATCH in {bad}"))
    return not bad, line


def trl_cross_check(trl, pol, ref, pol_kl, ref_kl, cases, grads):
    """Compare every case with TRL's KTOTrainer._compute_loss; returns a message.

    TRL >= 1.x has no standalone kto_loss; the loss lives in KTOTrainer._compute_loss, which is called here
    unbound on a lightweight stand-in for the trainer. (a) feeds it our exact per-token log-probs (main and KL
    sequences) and precomputed reference log-probs (checks the loss formulas and metrics, tolerance 1e-6); (b) lets
    TRL score the collated batch itself with its fused LM head on a fresh copy of the model + adapter, policy and
    reference (adapter disabled) both, and back-propagates TRL's loss (checks our log-prob extraction, KL rotation
    and gradients too; float32, so it is reported with looser tolerances).
    """
    try:
        from trl.trainer.kto_trainer import KTOTrainer
        from trl.trainer.utils import add_fused_lm_head
    except Exception as e:  # noqa: BLE001
        return f"skipped: cannot import KTOTrainer/add_fused_lm_head from trl {trl.__version__} ({type(e).__name__}: {e})"
    fn = getattr(KTOTrainer, "_compute_loss", None)
    if fn is None or list(inspect.signature(fn).parameters) != ["self", "model", "inputs", "return_outputs"]:
        return f"skipped: trl {trl.__version__} has no KTOTrainer._compute_loss(self, model, inputs, return_outputs)"
    lines, ok_all = [], True
    try:
        batch, how = _trl_batch(ref, ref_kl)
        lines.append(f"batch built with {how}")
        fixed = _FixedLogps(batch, pol, pol_kl)
        for name, c in cases.items():
            stub = _trl_stub(KTOTrainer, fixed, c, precompute=True)
            theirs = fn(stub, fixed, batch, False).item()
            m = {k: v[-1] for k, v in stub._metrics["eval"].items() if v}
            ok, line = _cmp("a", name, c, theirs, m, lambda a: 1e-6)
            ok_all &= ok
            lines.append(line + " (tol 1e-6)")
    except Exception as e:  # noqa: BLE001
        return f"skipped: calling trl {trl.__version__} KTOTrainer._compute_loss failed ({type(e).__name__}: {e})"
    try:
        base = AutoModelForCausalLM.from_pretrained(str(D / "model"), dtype=torch.float32, attn_implementation="eager")
        add_fused_lm_head(base, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        model = PeftModel.from_pretrained(base, str(D / "adapter"), is_trainable=True)
        model.train()
        lora = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        batch, _ = _trl_batch()
        # TRL's KL-sequence log-probs (its rotation, collation and fused head), before the mean and the clamp
        stub = _trl_stub(KTOTrainer, model, dict(CASES["kto"], kl_zero=False), precompute=False)
        with torch.no_grad():
            t_pol_kl = stub._compute_kl_logps(model, batch).double()
            with model.disable_adapter():
                t_ref_kl = stub._compute_kl_logps(model, batch).double()
        ours_kl = torch.stack([t.sum() for t in pol_kl] + [t.sum() for t in ref_kl])
        d_kl = (torch.cat([t_pol_kl, t_ref_kl]) - ours_kl).abs().max().item()
        t_kl_raw, o_kl_raw = (t_pol_kl - t_ref_kl).mean().item(), kl_raw_of(pol_kl, ref_kl).item()
        ok = d_kl <= 1e-5 * max(1.0, ours_kl.abs().max().item()) and abs(t_kl_raw - o_kl_raw) <= 1e-5
        ok_all &= ok
        lines.append(f"(b) KL logps (policy+reference, {2 * N} seqs) max |diff| {d_kl:.1e}; kl_raw ours "
                     f"{o_kl_raw:+.8f} trl {t_kl_raw:+.8f} " + ("OK" if ok else "MISMATCH") + " (tol 1e-5 rel)")
        for name, c in cases.items():
            for _, p in lora:
                p.grad = None
            stub = _trl_stub(KTOTrainer, model, c, precompute=False)
            loss = fn(stub, model, batch, False)
            loss.backward()
            m = {k: v[-1] for k, v in stub._metrics["train"].items() if v}
            ok, line = _cmp("b", name, c, loss.item(), m, lambda a: 1e-5 * max(1.0, abs(a)))
            g_ours = grads[name]
            g_rel = max((p.grad.float() - g_ours[n.replace(".default", "")]).abs().max().item() for n, p in lora)
            g_rel /= max(g.abs().max().item() for g in g_ours.values())
            ok &= g_rel <= 1e-4
            ok_all &= ok
            lines.append(line + f" (tol 1e-5 rel); grads max|diff|/max|g| {g_rel:.1e} "
                         + ("OK" if g_rel <= 1e-4 else "MISMATCH") + " (tol 1e-4)")
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
    base = AutoModelForCausalLM.from_pretrained(str(D / "model"), dtype=torch.float32, attn_implementation="eager")
    vocab = base.config.vocab_size
    assert all(0 <= t < vocab for e in EXAMPLES for t in e["prompt"] + e["completion"])
    model = PeftModel.from_pretrained(base, str(D / "adapter"), is_trainable=True)
    model.train()  # dropout is 0 in the adapter, so train mode only turns on autograd bookkeeping
    lora = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n, _ in lora)

    with torch.no_grad(), model.disable_adapter():
        ref, ref_kl = score(model), score_kl(model)
    with torch.no_grad():
        pol0, pol_kl = score(model), score_kl(model)  # the KL sequences are scored without grad, as in TRL

    kl_raw = kl_raw_of(pol_kl, ref_kl).item()
    all_cases = dict(CASES)
    if kl_raw > 0:
        all_cases["kl_off"] = KL_OFF
    print(f"kl_raw {kl_raw:+.8f} -> " + ("clamped to 0 (clamp exercised)" if kl_raw < 0
                                          else "positive; adding case kl_off (kl fixed to 0)"))

    cases, grads_by_case = {}, {}
    for name, cfg in all_cases.items():
        for _, p in lora:
            p.grad = None
        pol = score(model)  # fresh forward with grad for every case
        assert all(torch.equal(a.detach(), b) for a, b in zip(pol, pol0))  # deterministic
        loss, kl, kr, metrics = case_loss(cfg, pol, ref, pol_kl, ref_kl)
        loss.backward()
        grads = {n.replace(".default", ""): p.grad.detach().float().contiguous() for n, p in lora}
        assert all(torch.isfinite(g).all() for g in grads.values())
        save_file(grads, str(OUT / f"grads_{name}.safetensors"))
        grads_by_case[name] = grads
        cases[name] = {**cfg, "loss": loss.item(), "kl": kl, "kl_raw": kr, "metrics": metrics}
        m = metrics
        print(f"{name:9s} loss {loss.item():.10f}  kl {kl:.3e}  kl_raw {kr:+.8f}  "
              f"rewards/chosen {m['rewards/chosen']:+.6f}  rewards/rejected {m['rewards/rejected']:+.6f}  "
              f"rewards/margins {m['rewards/margins']:+.6f}  logps/chosen {m['logps/chosen']:.6f}  "
              f"logps/rejected {m['logps/rejected']:.6f}")

    if trl is not None:
        print("TRL cross-check", trl_cross_check(trl, pol0, ref, pol_kl, ref_kl, cases, grads_by_case))
    else:
        print("TRL cross-check skipped: trl not installed")

    expected = {
        "model": "models/llama/model",
        "adapter": "models/llama/adapter",
        "examples": EXAMPLES,
        "policy": {
            "logps": [t.sum().item() for t in pol0],
            "lens": [len(e["completion"]) for e in EXAMPLES],
            "kl_logps": [t.sum().item() for t in pol_kl],
        },
        "reference": {
            "logps": [t.sum().item() for t in ref],
            "kl_logps": [t.sum().item() for t in ref_kl],
        },
        "cases": cases,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__ if trl is not None else None,
    }
    for v in (expected["policy"]["logps"] + expected["policy"]["kl_logps"] + expected["reference"]["logps"]
              + expected["reference"]["kl_logps"] + [c["loss"] for c in cases.values()]):
        assert math.isfinite(v)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("wrote", OUT / "expected.json", "and", len(cases), "grads_<case>.safetensors")


if __name__ == "__main__":
    main()
