#!/usr/bin/env python3
"""DPO LoRA training throughput: tunelab's DPO step (with and without a precomputed reference) against
tunelab's SFT step on the same tokens and against TRL's DPOTrainer + PEFT, alternating in the same run.

Every repeat runs, each in its own process (clean memory and thread pools), in this order:

    tunelab sft            `tunelab bench train` with 2B rows of T tokens
    tunelab dpo            `--objective dpo`: B pairs of (T/2 prompt + T/2 chosen | T/2 rejected), i.e. the same
                           2B rows of T tokens, with a reference forward (adapter bypassed) in every step
    tunelab dpo precomp    the same with `--precompute-ref` (reference log-probs computed once before timing)
    TRL dpo                DPOTrainer, PEFT LoRA (reference = adapter disabled), reference forward in every step
    TRL dpo precomp        the same with `precompute_ref_log_probs=True`

and then prints a markdown table of medians and min–max over the repeats.

CPU (torch limited to --threads, default 2, like the 2-core CI box; tunelab keeps its own pool):

    cargo build --release && /root/venv-ref/bin/python scripts/bench_dpo.py

The TRL side runs this same script with the hidden `--trl-worker` flag under --trl-python (default: the
venv at /root/venv-ref if present, else this interpreter). Token ids reach TRL through a WordLevel
tokenizer over the words "w0".."w{V-1}" (word i <-> id i, no BOS, no post-processor), so TRL's own
preprocessing (prompt extraction, EOS, tokenization) runs unchanged and yields exactly T/2 prompt and
T/2 completion ids; each completion is T/2-1 random ids followed by EOS, so TRL adds no EOS of its own.
The worker reports the shapes its collator actually produced (`trained_seq_lens`).
"""
import argparse
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = pathlib.Path(__file__).resolve().parent
REF_PYTHON = pathlib.Path("/root/venv-ref/bin/python")
RESULT_TAG = "BENCH_DPO_RESULT "

# bench_train.py has no import-time side effects beyond importing torch / transformers / peft (its main()
# is behind `if __name__ == "__main__"`), so its SHAPES are reused. The orchestrator only needs the names;
# if this interpreter lacks torch, the names are not checked here (tunelab and the worker check them).
sys.path.insert(0, str(SCRIPTS))
sys.dont_write_bytecode = True  # leave no scripts/__pycache__ behind
try:
    from bench_train import SHAPES
except ImportError:  # no torch/transformers/peft in this interpreter
    SHAPES = None

VARIANTS = [  # (key, label)
    ("tunelab_sft", "tunelab SFT (2B rows)"),
    ("tunelab_dpo", "tunelab DPO"),
    ("tunelab_dpo_pre", "tunelab DPO precomputed ref"),
    ("trl_dpo", "TRL DPO + PEFT"),
    ("trl_dpo_pre", "TRL DPO + PEFT precomputed ref"),
]
SAME_REF_TRL = {"tunelab_dpo": "trl_dpo", "tunelab_dpo_pre": "trl_dpo_pre",
                "trl_dpo": "trl_dpo", "trl_dpo_pre": "trl_dpo_pre"}


# ----------------------------------------------------------------------------------------------- TRL worker

def trl_worker(a):
    """Runs in its own process: one DPOTrainer run of W+N steps, prints one tagged JSON line."""
    import resource
    import shutil
    import tempfile

    import torch
    torch.set_num_threads(a.threads)
    import datasets
    import peft
    import tokenizers
    import transformers
    import trl
    from bench_train import SHAPES as shapes
    from peft import LoraConfig
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    B, T, N, W = a.batch, a.seq, a.steps, a.warmup
    if T % 2 or T < 4:
        raise SystemExit("--seq must be even and >= 4")
    half = T // 2

    torch.manual_seed(0)
    cfg = shapes[a.shape]()
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    V = cfg.vocab_size

    # Word i <-> id i; w{V-1} is EOS, w{V-2} the pad token (never needed: all rows have the same length),
    # w0 the unknown token; random ids are drawn from [1, V-2).
    tk = Tokenizer(models.WordLevel(vocab={f"w{i}": i for i in range(V)}, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=f"w{V - 1}", pad_token=f"w{V - 2}", unk_token="w0")
    words = lambda ids: " ".join(f"w{i}" for i in ids)
    g = torch.Generator().manual_seed(0)
    n_pairs = B * (N + W)
    rnd = lambda n: torch.randint(1, V - 2, (n_pairs, n), generator=g).tolist()
    prompts, chosen, rejected = rnd(half), rnd(half - 1), rnd(half - 1)
    eos = [V - 1]
    data = datasets.Dataset.from_dict({
        "prompt": [words(p) for p in prompts],
        # leading space: TRL tokenizes prompt + completion as one concatenated string
        "chosen": [" " + words(c + eos) for c in chosen],
        "rejected": [" " + words(r + eos) for r in rejected],
    })

    marks = {"begin": {}, "end": {}}
    seen_shapes = []
    precompute_s = [0.0]

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            marks["begin"][state.global_step] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            marks["end"][state.global_step] = time.perf_counter()

    class BenchDPOTrainer(DPOTrainer):
        def _precompute_ref_logps(self, *args, **kw):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(*args, **kw)
            precompute_s[0] += time.perf_counter() - t0
            return out

        def training_step(self, *args, **kw):
            loss = super().training_step(*args, **kw)
            self._bench_last_loss = loss
            return loss

    out_dir = tempfile.mkdtemp(prefix="bench_dpo_trl_")
    conf = DPOConfig(
        output_dir=out_dir, per_device_train_batch_size=B, gradient_accumulation_steps=1, learning_rate=1e-4,
        max_grad_norm=1.0, beta=0.1, loss_type=["sigmoid"], max_steps=W + N, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to=[], disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False,
        precompute_ref_log_probs=a.trl_precompute, activation_checkpointing=False, bf16=False, fp16=False,
        max_length=None, seed=0,
    )
    lora = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # peft_config (not a ready PeftModel): TRL then computes the reference with the adapter disabled, like
    # tunelab; a PeftModel without ref_model would get a second "ref" LoRA adapter run in the reference pass.
    t_init = time.perf_counter()
    trainer = BenchDPOTrainer(model=model, args=conf, train_dataset=data, processing_class=tok,
                              peft_config=lora, callbacks=[Timer()])
    init_s = time.perf_counter() - t_init
    collate = trainer.data_collator

    def recording_collator(examples):
        batch = collate(examples)
        seen_shapes.append({"input_ids": list(batch["input_ids"].shape),
                            "attention_tokens": int(batch["attention_mask"].sum()),
                            "completion_tokens": int(batch["completion_mask"].sum())})
        return batch

    trainer.data_collator = recording_collator
    ds0 = trainer.train_dataset[0]
    trainer.train()

    end = marks["end"]
    if len(end) < W + N:
        raise RuntimeError(f"only {len(end)} optimizer steps ran, expected {W + N}")
    t0 = end[W] if W > 0 else marks["begin"][0]
    secs = end[W + N] - t0
    base = trainer.model.get_base_model()
    ckpt = bool(getattr(base, "is_activation_checkpointing", False))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    res = {
        "tokens_per_s": 2 * B * T * N / secs, "pairs_per_s": B * N / secs, "steps_per_s": N / secs,
        "seconds": secs, "precompute_s": precompute_s[0] if a.trl_precompute else None,
        "trainer_init_s": init_s, "last_loss": float(trainer._bench_last_loss),
        "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # peak RSS
        "trainable_params": trainable, "optim": getattr(conf.optim, "value", str(conf.optim)),
        "activation_checkpointing": ckpt, "torch_threads": torch.get_num_threads(),
        "dataset_lens": {k: len(ds0[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids")},
        "trained_seq_lens": sorted({tuple(s["input_ids"]) for s in seen_shapes}),
        "batches": seen_shapes[:1] + seen_shapes[-1:],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "trl": trl.__version__, "datasets": datasets.__version__, "tokenizers": tokenizers.__version__,
                     "python": platform.python_version()},
    }
    shutil.rmtree(out_dir, ignore_errors=True)  # save_strategy="no": nothing is written there
    print(RESULT_TAG + json.dumps(res), flush=True)


# --------------------------------------------------------------------------------------------- orchestrator

def run_tunelab(a, objective, precompute):
    rows = a.batch if objective == "dpo" else 2 * a.batch
    cmd = [a.tunelab, "bench", "train", "--objective", objective, "--shape", a.shape, "--batch", str(rows),
           "--seq", str(a.seq), "--rank", str(a.rank), "--steps", str(a.steps), "--warmup", str(a.warmup), "--json"]
    if precompute:
        cmd.append("--precompute-ref")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res.get("pairs_per_s") is None:  # SFT: 2B rows of T tokens <-> B pairs
        res["pairs_per_s_equiv"] = res["tokens_per_s"] / (2 * a.seq)
    return res


def run_trl(a, precompute):
    cmd = [a.trl_python, str(pathlib.Path(__file__).resolve()), "--trl-worker", "--shape", a.shape,
           "--batch", str(a.batch), "--seq", str(a.seq), "--rank", str(a.rank), "--steps", str(a.steps),
           "--warmup", str(a.warmup), "--threads", str(a.threads)]
    if precompute:
        cmd.append("--trl-precompute")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               OPENBLAS_NUM_THREADS=str(a.threads), TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", WANDB_DISABLED="true", HF_HUB_OFFLINE="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    lines = [l for l in p.stdout.splitlines() if l.startswith(RESULT_TAG)]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip() or p.stdout.strip())[-1500:]
        raise RuntimeError(f"TRL worker exited {p.returncode}: {tail}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def fmt(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


def machine():
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model, os.cpu_count(), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES) if SHAPES else None)
    p.add_argument("--batch", type=int, default=2, help="B preference pairs per step (tunelab SFT gets 2B rows)")
    p.add_argument("--seq", type=int, default=256, help="T tokens per row: T/2 prompt + T/2 completion")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps (N)")
    p.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps before them (W)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the TRL worker (tunelab: its own pool)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tunelab", default=str(ROOT / "target" / "release" / "tunelab"))
    p.add_argument("--trl-python", default=str(REF_PYTHON) if REF_PYTHON.exists() else sys.executable,
                   help="interpreter with torch, transformers, peft, trl for the TRL worker")
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--json", help="write every run and the summary to this file")
    p.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trl-precompute", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.trl_worker:
        return trl_worker(a)
    if a.seq % 2:
        p.error("--seq must be even (T/2 prompt + T/2 completion)")
    if not pathlib.Path(a.tunelab).exists():
        p.error(f"{a.tunelab} not found: run `cargo build --release` first")

    plan = [("tunelab_sft", lambda: run_tunelab(a, "sft", False)),
            ("tunelab_dpo", lambda: run_tunelab(a, "dpo", False)),
            ("tunelab_dpo_pre", lambda: run_tunelab(a, "dpo", True))]
    if not a.skip_trl:
        plan += [("trl_dpo", lambda: run_trl(a, False)), ("trl_dpo_pre", lambda: run_trl(a, True))]
    labels = dict(VARIANTS)
    runs = {k: [] for k, _ in VARIANTS}
    errors = {}
    for r in range(a.repeats):
        for key, fn in plan:
            if key in errors:  # a variant that failed once is not retried
                continue
            try:
                res = fn()
            except Exception as e:  # noqa: BLE001 -- report and carry on with the other variants
                errors[key] = str(e)
                print(f"[repeat {r + 1}/{a.repeats}] {labels[key]}: FAILED: {e}", flush=True)
                continue
            runs[key].append(res)
            extra = f", precompute {res['precompute_s']:.3f} s" if res.get("precompute_s") is not None else ""
            print(f"[repeat {r + 1}/{a.repeats}] {labels[key]:<31} {res['tokens_per_s']:>9.1f} tok/s  "
                  f"{res['seconds']:.3f} s{extra}  loss {res['last_loss']:.4f}  "
                  f"rss {res['rss_bytes'] / 2**20:.0f} MiB", flush=True)

    med = lambda xs: statistics.median(xs) if xs else None
    summary = {}
    for key, _ in VARIANTS:
        rs = runs[key]
        if not rs:
            continue
        tps = [x["tokens_per_s"] for x in rs]
        pps = [x.get("pairs_per_s") if x.get("pairs_per_s") is not None else x.get("pairs_per_s_equiv") for x in rs]
        pre = [x["precompute_s"] for x in rs if x.get("precompute_s") is not None]
        summary[key] = {"n": len(rs), "tokens_per_s_median": med(tps), "tokens_per_s_min": min(tps),
                        "tokens_per_s_max": max(tps), "pairs_per_s_median": med(pps),
                        "precompute_s_median": med(pre), "last_loss_median": med([x["last_loss"] for x in rs]),
                        "rss_bytes_max": max(x["rss_bytes"] for x in rs)}
    sft = summary.get("tunelab_sft", {}).get("tokens_per_s_median")
    for key, s in summary.items():
        s["ratio_to_tunelab_sft"] = s["tokens_per_s_median"] / sft if sft else None
        ref = SAME_REF_TRL.get(key)
        trl_med = summary.get(ref, {}).get("tokens_per_s_median") if ref else None
        s["ratio_to_trl_same_ref"] = s["tokens_per_s_median"] / trl_med if trl_med else None

    cpu, ncpu, affinity = machine()
    versions = next((x["versions"] for k in ("trl_dpo", "trl_dpo_pre") for x in runs[k]), None)
    try:
        tl_version = subprocess.run([a.tunelab, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        tl_version = "?"
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        rev += "+dirty" if dirty else ""
    except OSError:
        rev = "?"

    B, T = a.batch, a.seq
    print()
    print(f"## DPO LoRA r={a.rank}, {a.shape}, {B} pairs x (prompt {T // 2} + chosen {T // 2} | rejected {T // 2}) "
          f"= {2 * B} rows x {T} tokens per step; {a.warmup} warm-up + {a.steps} timed steps; "
          f"median of {a.repeats} alternating repeats")
    print()
    print(f"- command: `{shlex.join([sys.executable, *sys.argv])}`")
    print(f"- machine: {cpu}, nproc {affinity if affinity is not None else ncpu} (cpu_count {ncpu}), "
          f"{platform.system()} {platform.release()}")
    print(f"- tunelab: {tl_version} (git {rev}), own thread pool; tunelab SFT runs `--batch {2 * B}` (same tokens)")
    if versions:
        trl0 = next(x for k in ("trl_dpo", "trl_dpo_pre") for x in runs[k])
        print(f"- TRL side: " + ", ".join(f"{k} {v}" for k, v in versions.items())
              + f"; torch threads {trl0['torch_threads']}, optim {trl0['optim']}, f32, activation checkpointing "
              f"{'on' if trl0['activation_checkpointing'] else 'off'}, "
              f"sequence lengths trained on (input_ids shapes) {trl0['trained_seq_lens']}, "
              f"per-pair ids {trl0['dataset_lens']}")
    elif a.skip_trl:
        print("- TRL side: skipped (--skip-trl)")
    print()
    print("| variant | median tokens/s | min–max tokens/s | median pairs/s | ratio to tunelab SFT (tokens/s) "
          "| ratio to TRL DPO (same reference mode) | median precompute s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, label in VARIANTS:
        if key not in summary:
            if key in errors or (key.startswith("trl") and not a.skip_trl):
                print(f"| {label} | failed | | | | | |")
            continue
        s = summary[key]
        pairs = fmt(s["pairs_per_s_median"], 2) + (" (equiv.)" if key == "tunelab_sft" else "")
        print(f"| {label} | {fmt(s['tokens_per_s_median'])} | {fmt(s['tokens_per_s_min'])}–{fmt(s['tokens_per_s_max'])} "
              f"| {pairs} | {fmt(s['ratio_to_tunelab_sft'], 2)} | {fmt(s['ratio_to_trl_same_ref'], 2)} "
              f"| {fmt(s['precompute_s_median'], 3)} |")
    print()
    print(f"tokens/s counts all 2B*T = {2 * B * T} tokens of a step (the prompt once per row); "
          f"pairs/s = B*N/seconds (SFT: tokens/s / {2 * T}).")
    for key, err in errors.items():
        print(f"\n{labels[key]} failed: {err}")

    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({
            "args": vars(a), "argv": sys.argv, "machine": {"cpu": cpu, "cpu_count": ncpu, "nproc": affinity},
            "tunelab_version": tl_version, "git": rev, "versions": versions, "runs": runs,
            "summary": summary, "errors": errors}, indent=1))


if __name__ == "__main__":
    main()
