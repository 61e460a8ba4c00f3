#!/usr/bin/env python3
"""Render + tokenize + mask throughput: tunelab vs transformers, on the real datasets.

For each dataset in ../shared/datasets (repeated to a few thousand examples) and each fixture
tokenizer/template (Llama 3.1, Qwen2.5), it times `tunelab data stats --model` (which renders,
tokenizes and masks every record; its own timer excludes the JSON scan) and transformers'
`apply_chat_template` + the fast tokenizer with offsets (render + tokenize; no mask, which
favours transformers). It also checks that both produce the same token ids on the first
records. Needs transformers (no torch). Run after `cargo build --release`:

    python scripts/bench_template.py
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("TUNELAB_SHARED_DATA", ROOT.parent / "shared" / "datasets"))
TUNELAB = str(ROOT / "target" / "release" / "tunelab")
MODELS = ["llama3_1", "qwen2_5"]
REPEAT = 4

ROLE = {"human": "user", "gpt": "assistant", "system": "system", "observation": "tool", "function_call": "assistant"}


def to_messages(rec):
    """The same canonical conversation tunelab builds, as transformers input."""
    if "messages" in rec:
        return rec["messages"], None
    if "conversations" in rec:
        msgs = []
        if rec.get("system"):
            msgs.append({"role": "system", "content": rec["system"]})
        for m in rec["conversations"]:
            if m["from"] == "function_call":
                call = json.loads(m["value"])
                msgs.append({"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]})
            else:
                msgs.append({"role": ROLE[m["from"]], "content": m["value"]})
        tools = json.loads(rec["tools"]) if rec.get("tools") else None
        tools = [{"type": "function", "function": t} for t in tools] if tools else None
        return msgs, tools
    user = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
    if "context" in rec and rec["context"]:
        user = rec["instruction"] + "\n" + rec["context"]
    out = rec.get("output", rec.get("response"))
    return [{"role": "user", "content": user}, {"role": "assistant", "content": out}], None


def load(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(l) for l in text.splitlines() if l.strip()]
    return json.loads(text)


def main():
    from transformers import PreTrainedTokenizerFast

    rows = []
    for name in ["alpaca_en_demo.json", "glaive_toolcall_en_demo.json", "kto_en_demo.json"]:
        records = load(SHARED / name) * REPEAT
        with tempfile.TemporaryDirectory() as d:
            big = pathlib.Path(d) / "data.jsonl"
            big.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
            for model in MODELS:
                mdir = ROOT / "tests" / "fixtures" / "templates" / model
                env = dict(os.environ, TUNELAB_HOME=str(pathlib.Path(d) / "home"))
                res = {}
                for threads in ["1", str(os.cpu_count() or 1)]:
                    env["TUNELAB_THREADS"] = threads
                    out = subprocess.run([TUNELAB, "data", "stats", str(big), "--model", str(mdir), "--json"],
                                         capture_output=True, text=True, env=env, check=True)
                    t = json.loads(out.stdout)["tokens"]
                    res[threads] = t["examples"] / t["seconds"]
                tok = PreTrainedTokenizerFast.from_pretrained(str(mdir))
                convs = [to_messages(r) for r in records]
                start = time.perf_counter()
                py_ids = []
                for msgs, tools in convs:
                    text = tok.apply_chat_template(msgs, tools=tools, tokenize=False)
                    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
                    if len(py_ids) < 20:
                        py_ids.append(enc["input_ids"])
                py_secs = time.perf_counter() - start
                prev = subprocess.run([TUNELAB, "data", "preview", str(big), "--model", str(mdir), "--json", "-n", "20",
                                       "--max-seq-len", "100000"], capture_output=True, text=True, env=env, check=True)
                tl_ids = [json.loads(l)["input_ids"] for l in prev.stdout.splitlines()]
                same = tl_ids == py_ids
                rows.append((name, model, len(records), res["1"], res[str(os.cpu_count() or 1)], len(records) / py_secs, same))
    print(f"{'dataset':<30} {'template':<9} {'examples':>8} {'tunelab 1t':>11} {'tunelab all':>12} {'transformers':>13} {'ratio':>6} ids")
    for name, model, n, t1, tn, py, same in rows:
        print(f"{name:<30} {model:<9} {n:>8} {t1:>9.0f}/s {tn:>10.0f}/s {py:>11.0f}/s {tn / py:>5.1f}x {'same' if same else 'DIFFERENT'}")
    if not all(r[-1] for r in rows):
        sys.exit("token ids differ from transformers")


if __name__ == "__main__":
    main()
