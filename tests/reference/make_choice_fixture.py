"""Multiple-choice parity fixture for `tunelab eval bench` (tests/it/eval/choice.rs).

For `tunelab model init-tiny` models (seed 0) of two families, llama and qwen2, loaded by
transformers (f32, eager attention), and the same models with a PEFT LoRA adapter (r 4 on
every linear layer, B drawn at random so it changes the answers; saved by PEFT into
tests/fixtures/eval/choice/adapter_<arch>), it scores tests/fixtures/eval/choice/items.jsonl
as lm-evaluation-harness scores a multiple-choice task, written out here without lm-eval:

  * the request of a choice is (context, " " + choice); with K few-shot examples the context
    is K solved examples drawn by lm-eval's default sampler from the file itself (one
    `random.Random(1234)` for the whole task, `sample(items, K + 1)` per item, the item
    itself dropped, the first K kept), each `context + " " + right choice + "\\n\\n"`;
  * HFLM's `_encode_pair` (lm-eval 0.4.13): the context's trailing whitespace moves onto the
    continuation, `context + continuation` and `context` are encoded with the tokenizer's
    default special tokens (none for the tiny tokenizers; a BOS for "llama-bos", whose
    tokenizer is patched to add one as Llama 3's does), and the continuation is the whole's
    tokens after the context's count;
  * `_loglikelihood_tokens`: the input is `(context + continuation)[-(max_length + 1):][:-1]`
    and the score the summed log-softmax of the continuation's tokens at the last positions;
  * acc = argmax of the scores is the answer, acc_norm = argmax of score / len(choice), their
    stderr the sample standard deviation over sqrt(n).

Cases: zero-shot, two-shot, and (llama) two-shot cut to 24 tokens, each with and without the
adapter. If lm-eval is importable, every request also goes through lm-eval's own
`HFLM.loglikelihood` (with `peft=` for the adapter) and the largest difference is recorded.
Writes tests/fixtures/eval/choice/expected.json.

    cargo build
    pip install torch transformers peft   # lm-eval optional
    python tests/reference/make_choice_fixture.py
"""
import json
import math
import os
import pathlib
import random
import shutil
import subprocess
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
TUNELAB = os.environ.get("TUNELAB", str(ROOT / "target" / "debug" / "tunelab"))
OUT = ROOT / "tests" / "fixtures" / "eval" / "choice"
ITEMS = OUT / "items.jsonl"
SEED = 1234
CASES = [  # (model, num_fewshot, max_length)
    ("llama", 0, None),
    ("llama", 2, None),
    ("llama", 2, 24),
    ("llama-bos", 2, None),
    ("qwen2", 0, None),
    ("qwen2", 2, None),
]
# "llama-bos": the llama model whose tokenizer adds a BOS (<|endoftext|>) as Llama 3's and
# Gemma's do, through tests/fixtures/eval/choice/bos_tokenizer.json (the Rust test applies
# the same patch).
BOS_PATCH = OUT / "bos_tokenizer.json"


def patch_bos(mdir):
    """Gives mdir's tokenizer a BOS its post-processor adds: bos_tokenizer.json's
    `post_processor` into tokenizer.json, its `tokenizer_config` keys into
    tokenizer_config.json."""
    patch = json.loads(BOS_PATCH.read_text())
    tj = json.loads((mdir / "tokenizer.json").read_text())
    tj["post_processor"] = patch["post_processor"]
    (mdir / "tokenizer.json").write_text(json.dumps(tj))
    tc = json.loads((mdir / "tokenizer_config.json").read_text())
    tc.update(patch["tokenizer_config"])
    (mdir / "tokenizer_config.json").write_text(json.dumps(tc))


def write_bos_patch(mdir):
    tj = json.loads((mdir / "tokenizer.json").read_text())
    bos = "<|endoftext|>"
    bos_id = next(t["id"] for t in tj["added_tokens"] if t["content"] == bos)
    special = {"SpecialToken": {"id": bos, "type_id": 0}}
    patch = {
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [special, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        },
        "tokenizer_config": {"bos_token": bos, "add_bos_token": True},
    }
    BOS_PATCH.write_text(json.dumps(patch, indent=1) + "\n")


def contexts(items, k, seed=SEED):
    """lm-eval's ContextSampler over the items' own split."""
    if k == 0:
        return [it["context"] for it in items]
    rnd = random.Random(seed)
    out = []
    for it in items:
        drawn = rnd.sample(items, k + 1)
        shots = [x for x in drawn if x != it][:k]
        prefix = "".join(x["context"] + " " + x["choices"][x["answer"]] + "\n\n" for x in shots)
        out.append(prefix + it["context"])
    return out


def prefix_token_id(tok):
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def tok_encode(tok, text):
    """HFLM.tok_encode (lm-eval 0.4.13, add_bos_token unset): the tokenizer's default special
    tokens, none when the text starts with the prefix token's text."""
    if text.startswith(tok.decode(prefix_token_id(tok))):
        return tok.encode(text, add_special_tokens=False)
    return tok.encode(text)


def encode_pair(tok, context, continuation):
    """HFLM._encode_pair (causal models), with an empty context as HFLM.loglikelihood does it."""
    if context == "":
        cont = tok.encode(continuation, add_special_tokens=False)
        p = prefix_token_id(tok)
        return ([p], cont) if p != cont[0] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok_encode(tok, context + continuation)
    ctx = tok_encode(tok, context)
    return ctx, whole[len(ctx):]


def loglikelihood(model, ctx, cont, max_length):
    inp = (ctx + cont)[-(max_length + 1):][:-1]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([inp])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)[len(inp) - len(cont):len(inp)]
    return float(logp.gather(1, torch.tensor(cont).unsqueeze(1)).sum())


def stderr(xs):
    n = len(xs)
    mu = sum(xs) / n
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def score(model, tok, items, k, max_length):
    per_item, requests = [], []
    for i, (it, ctx) in enumerate(zip(items, contexts(items, k))):
        lls = []
        for c in it["choices"]:
            c_ids, x_ids = encode_pair(tok, ctx, " " + c)
            lls.append(loglikelihood(model, c_ids, x_ids, max_length))
            requests.append((ctx, " " + c))
        pred = argmax(lls)
        pred_norm = argmax([ll / len(c) for ll, c in zip(lls, it["choices"])])
        per_item.append({"index": i, "loglikelihoods": lls, "pred": pred, "pred_norm": pred_norm, "answer": it["answer"]})
    acc = [float(p["pred"] == p["answer"]) for p in per_item]
    norm = [float(p["pred_norm"] == p["answer"]) for p in per_item]
    return {
        "acc": sum(acc) / len(acc), "acc_stderr": stderr(acc),
        "acc_norm": sum(norm) / len(norm), "acc_norm_stderr": stderr(norm),
        "items": len(per_item), "per_item": per_item,
    }, requests


def make_adapter(mdir, arch):
    if arch == "llama-bos":  # the llama model's own adapter
        return OUT / "adapter_llama"
    model = AutoModelForCausalLM.from_pretrained(str(mdir), dtype=torch.float32)
    torch.manual_seed(28)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn_like(p))
    dest = OUT / f"adapter_{arch}"
    shutil.rmtree(dest, ignore_errors=True)
    peft_model.save_pretrained(str(dest))
    # The adapter names no base: tunelab checks its tensors against the model it goes on.
    conf = json.loads((dest / "adapter_config.json").read_text())
    conf["base_model_name_or_path"] = ""
    (dest / "adapter_config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    readme = dest / "README.md"
    if readme.exists():
        readme.unlink()
    return dest


def lm_eval_check(mdir, adapter, requests, max_length):
    """The same requests through lm-eval's own HFLM; the largest absolute difference."""
    try:
        import lm_eval
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None
    kwargs = dict(pretrained=str(mdir), dtype="float32", batch_size=4, device="cpu")
    if adapter is not None:
        kwargs["peft"] = str(adapter)
    if max_length is not None:
        kwargs["max_length"] = max_length
    lm = HFLM(**kwargs)
    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    got = [ll for ll, _ in lm.loglikelihood(inst, disable_tqdm=True)]
    return getattr(lm_eval, "__version__", "?"), got


def write_arc_parquet():
    """A three-row ARC file as the hub serves ARC (Parquet, `choices` a struct of lists,
    answerKey a letter or a digit) for the layout test."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [
        {"id": "Mercury_1", "question": "Which gas do plants take in?",
         "choices": {"text": ["oxygen", "carbon dioxide", "helium", "neon"], "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
        {"id": "NYSEDREGENTS_2", "question": "Which of these is a mammal?",
         "choices": {"text": ["a trout", "a frog", "a whale", "a sparrow"], "label": ["1", "2", "3", "4"]}, "answerKey": "3"},
        {"id": "ACTAAP_3", "question": "What does a compass needle point to?",
         "choices": {"text": ["the Sun", "the Moon", "the east", "the sea", "magnetic north"], "label": ["A", "B", "C", "D", "E"]}, "answerKey": "E"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), str(OUT / "arc_tiny.parquet"))


def main():
    write_arc_parquet()
    items = [json.loads(line) for line in ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases, lm_eval_diffs, lm_eval_version = [], [], None
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TUNELAB_HOME=d, NO_COLOR="1")
        for arch in ["llama", "llama-bos", "qwen2"]:
            mdir = pathlib.Path(d) / arch
            family = arch.split("-")[0]
            subprocess.run([TUNELAB, "model", "init-tiny", "-o", str(mdir), "--arch", family], check=True, env=env, capture_output=True)
            if arch == "llama-bos":
                write_bos_patch(mdir)
                patch_bos(mdir)
            tok = AutoTokenizer.from_pretrained(str(mdir))
            first = encode_pair(tok, items[0]["context"], " " + items[0]["choices"][0])
            print(f"{arch}: first request's tokens {first}")
            assert (first[0][0] == tok.bos_token_id) == (arch == "llama-bos"), first
            base = AutoModelForCausalLM.from_pretrained(str(mdir), dtype=torch.float32, attn_implementation="eager").eval()
            adapter = make_adapter(mdir, arch)
            tuned = PeftModel.from_pretrained(
                AutoModelForCausalLM.from_pretrained(str(mdir), dtype=torch.float32, attn_implementation="eager"),
                str(adapter)).eval()
            for a, k, max_length in CASES:
                if a != arch:
                    continue
                limit = max_length or base.config.max_position_embeddings
                for name, model, ad in [("base", base, None), ("adapter", tuned, adapter)]:
                    result, requests = score(model, tok, items, k, limit)
                    result.update(arch=arch, adapter=ad is not None, num_fewshot=k, max_length=max_length)
                    cases.append(result)
                    print(f"{arch:6} {name:8} k={k} max_length={max_length}: acc {result['acc']:.4f} acc_norm {result['acc_norm']:.4f}")
                    checked = lm_eval_check(mdir, ad, requests, max_length)
                    if checked is not None:
                        lm_eval_version, got = checked
                        want = [ll for p in result["per_item"] for ll in p["loglikelihoods"]]
                        diff = max(abs(x - y) for x, y in zip(got, want))
                        lm_eval_diffs.append(diff)
                        print(f"       lm-eval HFLM.loglikelihood: max |diff| {diff:.2e}")
    expected = {
        "items": "items.jsonl",
        "seed": SEED,
        "lm_eval": None if lm_eval_version is None else {
            "version": lm_eval_version, "requests_checked": True, "max_abs_diff": max(lm_eval_diffs)},
        "cases": cases,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
