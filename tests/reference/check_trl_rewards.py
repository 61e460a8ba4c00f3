"""Checks the `tunelab_rewards.py` a GRPO export to TRL writes against tunelab's own rewards:
the cases in tests/fixtures/rewards/cases.json, which tests/it/reward.rs scores with the Rust
rewards, must score the same here, with the same error messages.

    python3 tests/reference/check_trl_rewards.py EXPORT_DIR [CASES_JSON]

EXPORT_DIR is an export of a config whose rewards are the fixture's `rewards` plus a command
reward `protocol` running the fixture's protocol script (tests/it/scaleout.rs writes it).
Each case's reward is called as GRPOTrainer calls it, with conversational completions and
again with plain strings; the helpers are checked on the number and `\\boxed{}` cases, the
command class on the fixture's scripts (written to a temporary folder and run from there),
and the exported `protocol` reward must hand its program exactly the fixture's JSON Lines.
Only the standard library is needed. Prints one line per group and exits 1 on a mismatch.
"""

import importlib
import json
import os
import stat
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "fixtures" / "rewards" / "cases.json"


def load_module(folder):
    sys.path.insert(0, str(Path(folder).resolve()))
    try:
        sys.modules.pop("tunelab_rewards", None)
        return importlib.import_module("tunelab_rewards")
    finally:
        sys.path.pop(0)


def call(f, prompt, items, columns, conversational):
    """`f` called as GRPOTrainer calls a reward function."""
    n = len(items)
    if conversational:
        completions = [[{"role": "assistant", "content": it["completion"]}] for it in items]
        prompts = [prompt] * n
    else:
        completions = [it["completion"] for it in items]
        prompts = ["".join(m["content"] for m in prompt)] * n
    ids = [[0] * it["tokens"] for it in items]
    return f(prompts=prompts, completions=completions, completion_ids=ids, **columns)


def outcome(thunk):
    try:
        return ("scores", thunk())
    except Exception as e:
        return ("error", str(e))


def expected(case):
    return ("error", case["error"]) if "error" in case else ("scores", [float(x) for x in case["scores"]])


def check_cases(m, fx):
    for case in fx["cases"]:
        f = getattr(m, case["reward"])
        assert f.__name__ == case["reward"], f"{case['reward']}: __name__ is {f.__name__!r}"
        items = case["items"]
        columns = {"reference": [it.get("reference") for it in items]}
        for conversational in (True, False):
            got = outcome(lambda: call(f, fx["prompt"], items, columns, conversational))
            want = expected(case)
            form = "conversational" if conversational else "plain"
            assert got == want, f"{case['reward']} ({form}) on {items!r}: got {got!r}, tunelab gives {want!r}"
    return len(fx["cases"])


def check_helpers(m, fx):
    for text, want in fx["numbers"]:
        got = m._last_number(text)
        assert got == want, f"last_number({text!r}) = {got!r}, tunelab reads {want!r}"
    for text, want in fx["boxed"]:
        got = m._last_boxed(text)
        assert got == want, f"last_boxed({text!r}) = {got!r}, tunelab reads {want!r}"
    return len(fx["numbers"]) + len(fx["boxed"])


def build(m, spec):
    """A reward the way the export writes one (for specs the export would refuse)."""
    name = spec["name"]
    if "regex" in spec:
        return m._Regex(name, spec["regex"])
    if "answer" in spec:
        a = spec["answer"]
        return m._Answer(name, a["extract"], a.get("compare", "numeric"), a.get("reference_regex"), a.get("tolerance", 1e-6))
    if "length" in spec:
        return m._Length(name, spec["length"].get("min", 0), spec["length"]["max"])
    if "persona" in spec:
        return m._Persona(name, spec["persona"]["markers"])
    raise AssertionError(f"no builder for {spec}")


def check_invalid(m, fx):
    for spec in fx["invalid"]:
        try:
            build(m, spec)
        except ValueError as e:
            assert "reward `bad`" in str(e), f"{spec}: the error does not name the reward: {e}"
            continue
        raise AssertionError(f"{spec} was accepted; tunelab refuses it")
    return len(fx["invalid"])


def script(folder, name, body):
    p = Path(folder) / f"{name}.sh"
    p.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def check_commands(m, fx):
    prompt = fx["prompt"]
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)  # tunelab runs `./name.sh` from the run config's folder
        try:
            for c in fx["commands"]:
                script(d, c["name"], c["script"])
                r = m._Command(c["name"], [f"./{c['name']}.sh", "--flag"], c["timeout_s"], c["workers"], ["id"])
                items = [{"completion": x, "tokens": 3} for x in c["completions"]]
                n = len(items)
                columns = {"reference": ["42"] * n, "id": [7] * n}
                got = outcome(lambda: call(r, prompt, items, columns, True))
                assert got == expected(c), f"command {c['name']}: got {got!r}, tunelab gives {expected(c)!r}"
        finally:
            os.chdir(here)
    return len(fx["commands"])


def check_protocol(m, fx, folder):
    """The exported `protocol` reward on the export's own first record: its program must read
    exactly the lines tunelab writes."""
    f = m.protocol
    log = Path(f.run[0]).parent / "stdin.log"
    if log.exists():
        log.unlink()
    row = json.loads((Path(folder) / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["prompt"] == fx["prompt"], f"the export's first prompt is {row['prompt']!r}"
    p = fx["protocol"]
    n = len(p["completions"])
    columns = {k: [v] * n for k, v in row.items() if k != "prompt"}
    items = [{"completion": x, "tokens": 3} for x in p["completions"]]
    scores = call(f, row["prompt"], items, columns, True)
    assert scores == [1.0] * n, scores
    got = log.read_text(encoding="utf-8").splitlines()
    assert got == p["lines"], f"the program read {got!r}, tunelab writes {p['lines']!r}"
    return n


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    folder = sys.argv[1]
    fx = json.loads(Path(sys.argv[2] if len(sys.argv) == 3 else FIXTURE).read_text(encoding="utf-8"))
    m = load_module(folder)
    for what, check in [
        ("reward cases", lambda: check_cases(m, fx)),
        ("number and \\boxed{} readings", lambda: check_helpers(m, fx)),
        ("refused rewards", lambda: check_invalid(m, fx)),
        ("command cases", lambda: check_commands(m, fx)),
        ("command protocol lines", lambda: check_protocol(m, fx, folder)),
    ]:
        try:
            n = check()
        except Exception as e:
            print(f"FAIL {what}: {type(e).__name__}: {e}")
            return 1
        print(f"ok   {what}: {n} as tunelab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
