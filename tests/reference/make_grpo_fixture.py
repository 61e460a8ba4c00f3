"""GRPO-loss parity fixture made with TRL 1.16's own GRPOTrainer._compute_loss (f32, CPU).

Loads the model-core fixture tests/fixtures/models/llama (tiny Llama + PEFT LoRA adapter with
nonzero B, dropout 0), patched with TRL's fused LM head exactly as GRPOTrainer.__init__ does
(`add_fused_lm_head(base, temperature=1.0, outputs=("log_probs", "entropy"))`, before PEFT wraps it),
and builds ONE GRPO micro-batch of 2 prompts x num_generations 4 completions of token ids (prompts
left-padded, completions right-padded with pad id 0, as _generate_and_score_completions pads them;
max_completion_length 6), with fixed rewards (one reward function, weight 1).

What it computes, all with TRL's own code where TRL has it:

  * per-token log-probs and entropies of the completion tokens with
    GRPOTrainer._get_per_token_logps_and_entropies (bound to a stand-in object), for the policy
    (adapter on) and the reference (adapter disabled through trl's use_adapter(model, None), no grad);
  * advantages for scale_rewards group, batch and none: the lines of _generate_and_score_completions
    (multi_objective_aggregation "sum_then_normalize") replayed with trl's own nanstd (unbiased):
    A = (r - mean_group) / (std + 1e-4), std per group ("group") or over the whole batch ("batch"),
    no division for "none";
  * "old" log-probs for the off-policy cases (as with num_iterations 2 after one update):
    old = per_token_logps + a fixed offset per token in [-0.35, 0.35] (0 on padding; float32), chosen so
    that tokens are clipped low and high at epsilon 0.2, some ratios fall between 1.2 and 1.28
    (clip_higher), and at the sequence level (GSPO) two completions clip low and two high;
  * for every case of CASES: loss = GRPOTrainer._compute_loss(stub, model, inputs), called UNBOUND on a
    types.SimpleNamespace stand-in carrying every attribute it reads (no trainer is built), on the
    real model + adapter in train mode; the metrics it appends to stub._metrics["train"]; and the LoRA
    gradients of that loss (loss.backward()).

On-policy cases leave old_per_token_logps out of `inputs`, so TRL uses per_token_logps.detach()
(ratio 1, but coef_1 = exp(logp - logp.detach()) still carries the gradient). For dapo,
inputs["num_items_in_batch"] = completion tokens of the whole batch (30), with
current_gradient_accumulation_steps = 1 and args.steps_per_generation = 1, so with one micro-batch and
one process dapo's normalizer equals bnpo's (mask.sum()) and the bnpo and dapo cases agree exactly.
With use_bias_correction_kl (TRL's default) the KL term is beta * kl * coef_1 with coef_1's gradient,
on policy too; case kl_heavy_on_policy (beta 1) makes that visible in the gradients (asserted: a
detached coef_1 would move them by > 1e-3 relative), where at beta 0.04 it is ~3e-4.

Self-consistency asserts (independent torch, float64, not TRL's code): TRL's per-token log-probs and
entropies equal a log_softmax gather on a batch-1, unpadded forward of each sequence (1e-5); the
advantages equal a float64 statistics.stdev recomputation; every case's loss, metrics and gradients
equal a line-by-line float64 re-implementation of _compute_loss over those batch-1 log-probs; the
on-policy beta-0 grpo loss equals -mean_i(A_i) and the on-policy beta-0 dapo loss equals
-sum_i(A_i * len_i) / num_items_in_batch; no clip ratio lies within 1e-3 of a clip bound.

Writes to tests/fixtures/grpo/:

  expected.json              groups (prompt ids, completion ids, rewards), advantages for the three
                             scale_rewards modes, per-token log-probs (policy, reference, old, offsets,
                             entropies), per-case settings, loss, grad_norm and TRL's metrics
  grads_<case>.safetensors   LoRA gradients of that case's loss (keys: PEFT names without
                             ".default", float32)
  groups.jsonl               one line per prompt: {"prompt": [{"role": "user", "content": "w5 w17 ..."}],
                             "completions": ["w91 w33 w60", ...], "rewards": [...]}; token id N is written
                             as the word "wN" (for a WordLevel tokenizer and a content-only template)

    pip install torch transformers peft safetensors trl==1.16.0
    python tests/reference/make_grpo_fixture.py
"""
import contextlib
import json
import math
import pathlib
import statistics
import types
from collections import defaultdict

import peft
import torch
import transformers
import trl
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head, nanstd, pad, use_adapter

FIX = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
D = FIX / "models" / "llama"
OUT = FIX / "grpo"

PAD = 0  # pad id; no real token is 0 (nor bos 1 / eos 2)
NUM_GENERATIONS = 4
MAX_COMPLETION_LENGTH = 6

# 2 prompts (4 and 6 tokens) x 4 completions (1..6 tokens); the groups' reward stds differ, none is 0
GROUPS = [
    {"prompt": [5, 17, 42, 8],
     "completions": [[91, 33, 60], [12, 47, 88, 19, 64, 3], [77], [30, 51, 9, 22]],
     "rewards": [1.0, 0.0, 0.5, 0.25]},
    {"prompt": [7, 70, 14, 55, 9, 31],
     "completions": [[40, 41], [63, 15, 84, 27, 6], [11, 95, 38, 72, 50, 13], [29, 44, 81]],
     "rewards": [2.0, -1.0, 0.5, 3.0]},
]
ROWS = [(g["prompt"], c) for g in GROUPS for c in g["completions"]]  # the 8 completions, TRL's order
B = len(ROWS)
STARTS = [sum(len(c) for _, c in ROWS[:i]) for i in range(B)]  # running index of each completion's first token


# per-completion bias of the old-minus-new log-prob offsets: with the advantage signs (+ - + - | + - - +) it makes
# completions 0 and 7 clip high and 1 and 6 clip low at the sequence level (GSPO) too
OFFSET_BIAS = [-0.24, 0.27, 0.0, 0.05, 0.1, -0.05, 0.28, -0.21]


def offset(i, k):
    """Fixed old-minus-new log-prob offset of completion i's token that is the k-th real completion token of the
    batch: a per-completion bias plus a wiggle, clamped to [-0.35, 0.35]."""
    return round(max(-0.35, min(0.35, OFFSET_BIAS[i] + 0.16 * math.sin(2.3 * k + 0.7))), 4)


BETA, EPS = 0.04, 0.2


def case(loss_type, old, beta=BETA, epsilon_high=EPS, level="token", scale="group"):
    return dict(loss_type=loss_type, beta=beta, epsilon=EPS, epsilon_high=epsilon_high,
                importance_sampling_level=level, scale_rewards=scale, old=old)


CASES = {}
for _lt in ("grpo", "bnpo", "dr_grpo", "dapo"):
    CASES[f"{_lt}_moved"] = case(_lt, "moved")
    CASES[f"{_lt}_on_policy"] = case(_lt, "on_policy")
CASES["dapo_on_policy_beta0"] = case("dapo", "on_policy", beta=0.0)
CASES["gspo_moved"] = case("grpo", "moved", level="sequence")
CASES["clip_higher"] = case("dapo", "moved", epsilon_high=0.28)
CASES["batch_scale"] = case("dapo", "moved", scale="batch")
CASES["no_scale"] = case("dapo", "moved", scale="none")
# beta 1: at beta 0.04 the KL's share of the gradient is ~1e-4 of the whole, too small to pin down that TRL
# multiplies the KL by coef_1 = exp(logp - logp.detach()) WITH its gradient even on policy (asserted below)
CASES["kl_heavy_on_policy"] = case("grpo", "on_policy", beta=1.0)

METRICS = ("kl", "entropy", "clip_ratio/low_mean", "clip_ratio/low_min", "clip_ratio/high_mean",
           "clip_ratio/high_max", "clip_ratio/region_mean")


# ----------------------------------------------------------------------------------------------- TRL side
def trl_stub(model, cfg=None):
    """Every attribute GRPOTrainer._compute_loss and _get_per_token_logps_and_entropies read (single process,
    no vLLM, no entropy bonus/mask, no off-policy mask, no aux loss), without building a trainer."""
    cfg = cfg or CASES["grpo_on_policy"]
    ident = lambda x: x  # noqa: E731 -- single process: gather/reduce are the identity
    stub = types.SimpleNamespace(
        model=model, ref_model=None,
        beta=cfg["beta"], loss_type=cfg["loss_type"], epsilon_low=cfg["epsilon"], epsilon_high=cfg["epsilon_high"],
        importance_sampling_level=cfg["importance_sampling_level"], scale_rewards=cfg["scale_rewards"],
        temperature=1.0, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        use_vllm=False, vllm_importance_sampling_correction=False,
        _entropy_bonus_enabled=False, aux_loss_enabled=False,
        max_completion_length=MAX_COMPLETION_LENGTH, num_generations=NUM_GENERATIONS,
        current_gradient_accumulation_steps=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=types.SimpleNamespace(delta=None, use_bias_correction_kl=True, steps_per_generation=1,
                                   gradient_accumulation_steps=1, per_device_train_batch_size=B),
        accelerator=types.SimpleNamespace(
            num_processes=1, process_index=0, is_main_process=True, device=torch.device("cpu"),
            gather=ident, gather_for_metrics=ident, reduce=lambda t, reduction="sum": t,
            pad_across_processes=lambda t, dim=0, pad_index=0: t,
            unwrap_model=ident, autocast=contextlib.nullcontext, sync_gradients=True))
    stub._get_per_token_logps_and_entropies = types.MethodType(GRPOTrainer._get_per_token_logps_and_entropies, stub)
    return stub


def trl_batch():
    """prompt_ids (left-padded), completion_ids (right-padded) and masks, padded with trl's own `pad`."""
    p = [torch.tensor(a) for a, _ in ROWS]
    c = [torch.tensor(b) for _, b in ROWS]
    batch = {
        "prompt_ids": pad(p, padding_value=PAD, padding_side="left"),
        "prompt_mask": pad([torch.ones_like(t) for t in p], padding_value=0, padding_side="left"),
        "completion_ids": pad(c, padding_value=PAD, padding_side="right"),
        "completion_mask": pad([torch.ones_like(t) for t in c], padding_value=0, padding_side="right"),
    }
    batch["num_items_in_batch"] = batch["completion_mask"].sum()  # gather(loss_mask.sum()).sum(), 1 process
    return batch


def trl_advantages(scale):
    """_generate_and_score_completions, sum_then_normalize, one reward function of weight 1 (float32)."""
    rewards_per_func = torch.tensor([[r] for g in GROUPS for r in g["rewards"]], dtype=torch.float32)
    reward_weights = torch.ones(1)
    n = NUM_GENERATIONS
    unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)
    rewards[unscorable_mask] = torch.nan
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, n), dim=1).repeat_interleave(n, dim=0)
    if scale in ("group", "none"):
        std_rewards = nanstd(rewards.view(-1, n), dim=1).repeat_interleave(n, dim=0)
    elif scale == "batch":
        std_rewards = nanstd(rewards).expand_as(rewards)
    else:
        raise ValueError(scale)
    advantages = rewards - mean_grouped_rewards
    if scale != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


# --------------------------------------------------------------------------------------- independent side
def batch1_logps_entropies(model):
    """float64 per-token log-probs and entropies of every completion (batch 1, unpadded, plain logits)."""
    lps, ents = [], []
    for prompt, comp in ROWS:
        ids = torch.tensor([prompt + comp])
        logits = model(input_ids=ids).logits[0].double()  # original forward (fused_lm_head=False)
        logp = torch.log_softmax(logits, dim=-1)
        pos = torch.arange(len(prompt), len(prompt) + len(comp))
        lps.append(logp[pos - 1, ids[0, pos]])
        ents.append(-(logp[pos - 1].exp() * logp[pos - 1]).sum(-1))
    return lps, ents


def to_padded(rows, width=MAX_COMPLETION_LENGTH):
    out = torch.zeros(len(rows), width, dtype=torch.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def own_loss(cfg, lp, ent, mask, adv, ref, old, n_items, detach_kl_ratio=False):
    """Line-by-line float64 re-implementation of _compute_loss (grpo/bnpo/dr_grpo/dapo) for the cross-check."""
    a = adv.double().unsqueeze(1)
    old = lp.detach() if old is None else old
    log_ratio = lp - old
    if cfg["importance_sampling_level"] == "token":
        liw = log_ratio
    else:
        liw = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(liw)
    beta = cfg["beta"]
    if beta != 0.0:
        kl = (torch.exp(ref - lp) - (ref - lp) - 1) * (coef_1.detach() if detach_kl_ratio else coef_1)
    coef_2 = torch.clamp(coef_1, 1 - cfg["epsilon"], 1 + cfg["epsilon_high"])
    ptl = -torch.min(coef_1 * a, coef_2 * a)
    if beta != 0.0:
        ptl = ptl + beta * kl
    lt = cfg["loss_type"]
    if lt == "grpo":
        loss = ((ptl * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif lt == "bnpo":
        loss = (ptl * mask).sum() / mask.sum().clamp(min=1.0)
    elif lt == "dr_grpo":
        loss = (ptl * mask).sum() / (ptl.size(0) * MAX_COMPLETION_LENGTH)
    elif lt == "dapo":
        loss = (ptl * mask).sum() / n_items
    else:
        raise ValueError(lt)

    def gmean(x):
        return (x.sum() / x.size(0)) if x.shape[1] == 1 else ((x * mask).sum() / mask.sum())

    def smean(x):
        return x.squeeze(1) if x.shape[1] == 1 else (x * mask).sum(-1) / mask.sum(-1)

    lo = ((coef_1 < 1 - cfg["epsilon"]) & (a < 0)).double()
    hi = ((coef_1 > 1 + cfg["epsilon_high"]) & (a > 0)).double()
    m = {"entropy": gmean(ent).item(), "clip_ratio/low_mean": gmean(lo).item(),
         "clip_ratio/high_mean": gmean(hi).item(), "clip_ratio/region_mean": gmean(torch.maximum(lo, hi)).item(),
         "clip_ratio/low_min": smean(lo).min().item(), "clip_ratio/high_max": smean(hi).max().item()}
    if beta != 0.0:
        m["kl"] = gmean(kl.detach()).item()
    return loss, m, coef_1.detach()


# ------------------------------------------------------------------------------------------------------ main
def words(ids):
    return " ".join(f"w{t}" for t in ids)


def main():
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    base = AutoModelForCausalLM.from_pretrained(str(D / "model"), dtype=torch.float32, attn_implementation="eager")
    vocab = base.config.vocab_size
    assert all(2 < t < vocab for a, b in ROWS for t in a + b)
    assert all(1 <= len(b) <= MAX_COMPLETION_LENGTH for _, b in ROWS)
    assert len({len(g["prompt"]) for g in GROUPS}) == 2
    # as GRPOTrainer.__init__: on the base model, before PEFT
    add_fused_lm_head(base, temperature=1.0, cast_lm_head_to_fp32=False, outputs=("log_probs", "entropy"))
    model = PeftModel.from_pretrained(base, str(D / "adapter"), is_trainable=True)
    model.train()  # dropout 0: train mode only makes TRL log under _metrics["train"] and scale for accumulation
    lora = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n, _ in lora)

    batch = trl_batch()
    mask = batch["completion_mask"]
    n_items = int(batch["num_items_in_batch"])
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    ltk = batch["completion_ids"].size(1)
    assert ltk == MAX_COMPLETION_LENGTH

    # per-token log-probs, TRL's way (as _generate_and_score_completions scores old/ref, and _compute_loss the policy)
    stub = trl_stub(model)
    with torch.no_grad():
        logps, ents, _ = stub._get_per_token_logps_and_entropies(model, input_ids, attention_mask, ltk,
                                                                  compute_entropy=True)
        with use_adapter(model, adapter_name=None):
            ref_logps, _, _ = stub._get_per_token_logps_and_entropies(model, input_ids, attention_mask, ltk)
    assert logps.dtype == torch.float32 and logps.shape == (B, ltk)
    assert (logps * (1 - mask)).abs().max() == 0 and (ref_logps * (1 - mask)).abs().max() == 0

    # cross-check: independent batch-1 unpadded forwards (float64 softmax)
    with torch.no_grad():
        own_lp, own_ent = batch1_logps_entropies(model)
        with model.disable_adapter():
            own_ref, _ = batch1_logps_entropies(model)
    for name, trl_t, own in (("policy", logps, own_lp), ("reference", ref_logps, own_ref), ("entropy", ents, own_ent)):
        d = (trl_t.double() * mask - to_padded(own)).abs().max().item()
        print(f"TRL {name:9s} per-token vs batch-1 log_softmax gather: max |diff| {d:.1e}")
        assert d < 1e-5, name
    assert (logps - ref_logps).abs().max() > 1e-2  # the adapter matters

    # advantages (TRL's lines) + independent float64 check
    adv = {s: trl_advantages(s) for s in ("group", "batch", "none")}
    flat = [r for g in GROUPS for r in g["rewards"]]
    stds = [statistics.stdev(g["rewards"]) for g in GROUPS]
    assert min(stds) > 0 and abs(stds[0] - stds[1]) > 0.1
    for s, a in adv.items():
        for i, r in enumerate(flat):
            g = GROUPS[i // NUM_GENERATIONS]
            want = r - statistics.mean(g["rewards"])
            if s == "group":
                want /= stds[i // NUM_GENERATIONS] + 1e-4
            elif s == "batch":
                want /= statistics.stdev(flat) + 1e-4
            assert abs(a[i].item() - want) < 1e-6 and abs(want) > 1e-3, (s, i)

    # old log-probs: moved by a fixed offset per real token
    offs = torch.zeros(B, ltk)
    for i, (_, c) in enumerate(ROWS):
        for t in range(len(c)):
            offs[i, t] = offset(i, STARTS[i] + t)
    old_logps = (logps + offs) * mask  # float32; 0 on padding like TRL's scored logps

    base_inputs = {key: batch[key] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask",
                                               "num_items_in_batch")}
    cases, grads_by_case = {}, {}
    own_lp_pad_detached = to_padded(own_lp)
    for name, cfg in CASES.items():
        inputs = dict(base_inputs, advantages=adv[cfg["scale_rewards"]].clone())
        if cfg["beta"] != 0.0:
            inputs["ref_per_token_logps"] = ref_logps.clone()
        if cfg["old"] == "moved":
            inputs["old_per_token_logps"] = old_logps.clone()
        for _, p in lora:
            p.grad = None
        stub = trl_stub(model, cfg)
        loss = GRPOTrainer._compute_loss(stub, model, inputs)
        loss.backward()
        metrics = {k: v[-1] for k, v in stub._metrics["train"].items() if v}
        assert set(metrics) == set(METRICS) - ({"kl"} if cfg["beta"] == 0.0 else set()), sorted(metrics)
        grads = {n.replace(".default", ""): p.grad.detach().float().contiguous() for n, p in lora}
        assert all(torch.isfinite(g).all() for g in grads.values())
        gnorm = math.sqrt(sum(g.double().pow(2).sum().item() for g in grads.values()))

        # independent float64 re-implementation on batch-1 log-probs, loss + metrics + gradients
        for _, p in lora:
            p.grad = None
        lp64, _ = batch1_logps_entropies(model)
        lp64 = to_padded(lp64)
        old64 = old_logps.double() if cfg["old"] == "moved" else None
        own, own_m, coef = own_loss(cfg, lp64, to_padded(own_ent), mask.double(), adv[cfg["scale_rewards"]],
                                    ref_logps.double(), old64, float(n_items))
        own.backward()
        assert abs(own.item() - loss.item()) < 1e-5 * max(1.0, abs(loss.item())), (name, own.item(), loss.item())
        for key, v in own_m.items():
            assert abs(v - metrics[key]) < 1e-5, (name, key, v, metrics[key])
        g_scale = max(g.abs().max().item() for g in grads.values())
        g_diff = max((p.grad.float() - grads[n.replace(".default", "")]).abs().max().item() for n, p in lora) / g_scale
        assert g_diff < 1e-4, (name, g_diff)
        if name == "kl_heavy_on_policy":  # the KL's ratio gradient is visible in this case's gradients
            for _, p in lora:
                p.grad = None
            lp64, _ = batch1_logps_entropies(model)
            own_loss(cfg, to_padded(lp64), to_padded(own_ent), mask.double(), adv[cfg["scale_rewards"]],
                     ref_logps.double(), None, float(n_items), detach_kl_ratio=True)[0].backward()
            g_det = max((p.grad.float() - grads[n.replace(".default", "")]).abs().max().item()
                        for n, p in lora) / g_scale
            print(f"{name}: with coef_1 detached in the KL the grads would differ by {g_det:.1e} (max|diff|/max|g|)")
            assert g_det > 1e-3
        # no ratio within 1e-3 of a clip bound (tunelab's own log-probs differ from TRL's in the last bits)
        if cfg["old"] == "moved":
            sel = coef if coef.shape[1] == 1 else coef[mask.bool()]
            for bound in (1 - cfg["epsilon"], 1 + cfg["epsilon_high"]):
                assert (sel - bound).abs().min() > 1e-3, (name, bound)

        save_file(grads, str(OUT / f"grads_{name}.safetensors"))
        grads_by_case[name] = grads
        cases[name] = {**cfg, "loss": loss.item(), "grad_norm": gnorm, "metrics": metrics,
                       "grads": f"grads_{name}.safetensors"}
        m = metrics
        print(f"{name:21s} loss {loss.item():+.10f} |g| {gnorm:.6e} kl {m.get('kl', float('nan')):.3e} "
              f"low {m['clip_ratio/low_mean']:.4f} (min {m['clip_ratio/low_min']:.3f}) high "
              f"{m['clip_ratio/high_mean']:.4f} (max {m['clip_ratio/high_max']:.3f}) region "
              f"{m['clip_ratio/region_mean']:.4f}  [own f64 |dloss| {abs(own.item() - loss.item()):.1e}, "
              f"grads {g_diff:.1e}]")

    # cheap closed forms
    a = adv["group"].double()
    lens = mask.sum(-1).double()
    for lt, want in (("grpo", -a.mean().item()), ("dapo", -(a * lens).sum().item() / n_items)):
        stub = trl_stub(model, case(lt, "on_policy", beta=0.0))
        with torch.no_grad():
            got = GRPOTrainer._compute_loss(stub, model, dict(base_inputs, advantages=adv["group"])).item()
        assert abs(got - want) < 1e-6, (lt, got, want)
    # the moved cases exercise both clip sides, clip_higher differs from dapo_moved, KL is on where beta > 0
    for name in ("grpo_moved", "dapo_moved"):
        assert cases[name]["metrics"]["clip_ratio/low_mean"] > 0 and cases[name]["metrics"]["clip_ratio/high_mean"] > 0
    assert cases["clip_higher"]["metrics"]["clip_ratio/high_mean"] < cases["dapo_moved"]["metrics"]["clip_ratio/high_mean"]
    assert cases["clip_higher"]["metrics"]["clip_ratio/high_mean"] > 0
    assert cases["gspo_moved"]["metrics"]["clip_ratio/region_mean"] > 0
    for name, c in cases.items():
        assert c["old"] == "moved" or c["metrics"]["clip_ratio/region_mean"] == 0
        assert math.isfinite(c["loss"]) and c["grad_norm"] > 0

    def rows(t):
        return [[t[i, j].item() for j in range(len(c))] for i, (_, c) in enumerate(ROWS)]

    expected = {
        "trl_version": trl.__version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "model": "tests/fixtures/models/llama",
        "num_generations": NUM_GENERATIONS,
        "max_completion_length": MAX_COMPLETION_LENGTH,
        "pad_token_id": PAD,
        "num_items_in_batch": n_items,
        "groups": GROUPS,
        "advantages": {s: a.tolist() for s, a in adv.items()},
        "per_token_logps": rows(logps),
        "ref_per_token_logps": rows(ref_logps),
        "old_per_token_logps": rows(old_logps),
        # the offsets as chosen (old = float32(per_token_logps + offset); the stored old values are authoritative)
        "old_offsets": [[offset(i, k) for k in range(start, start + len(c))]
                        for i, (start, (_, c)) in enumerate(zip(STARTS, ROWS))],
        "per_token_entropy": rows(ents),
        "trl_call": "GRPOTrainer._compute_loss(stub, model, inputs) unbound; model = PeftModel over the base patched "
                    "with add_fused_lm_head(outputs=(log_probs, entropy)), train mode; one micro-batch of 8",
        "cases": cases,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    with open(OUT / "groups.jsonl", "w") as f:
        for g in GROUPS:
            f.write(json.dumps({"prompt": [{"role": "user", "content": words(g["prompt"])}],
                                "completions": [words(c) for c in g["completions"]],
                                "rewards": g["rewards"]}) + "\n")
    print("wrote", OUT / "expected.json", OUT / "groups.jsonl", "and", len(cases), "grads_<case>.safetensors")


if __name__ == "__main__":
    main()
