"""Checks the `trl sft|dpo|kto|grpo` command in a `run.sh` written by
`tunelab export-config --to trl` against TRL itself.

    /root/venv-ref/bin/python tests/reference/check_trl_command.py EXPORT_DIR [...]

(Any Python with TRL 1.16 and its `trl` command on PATH or beside the interpreter.)

For each folder: every flag in run.sh must be one `trl <command> --help` lists (the only
exception is `--accelerate_config`, which the `trl` launcher itself takes: its file must
exist), and the whole argument list must parse with TRL's own parser for that command
(`trl.scripts.<command>.make_parser`, the dataclasses `trl` builds: ScriptArguments, the
trainer's config, ModelConfig) with nothing left over, with the values read back equal to
the ones written. `--use_cpu true` is added for the parse only, so a bf16 run parses on a
machine without a GPU. For `trl grpo`, the reward functions are then loaded as `trl grpo`
loads them (`--reward_funcs` import paths, from the folder) and called the way GRPOTrainer
calls them, on the first train record as `datasets` reads it back (conversational
completions, `completion_ids`, one list per column): one float per completion, under the
reward's tunelab name. Exits 1 on the first folder that fails.
"""

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


def command(folder):
    """(subcommand, [args]) of the `trl …` line in run.sh, line continuations joined."""
    text = (Path(folder) / "run.sh").read_text(encoding="utf-8")
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) >= 2 and words[0] == "trl":
            args = [w for w in words[2:] if w != "$@"]
            return words[1], args
    raise AssertionError("no `trl <command>` line in run.sh")


def help_flags(sub):
    trl = shutil.which("trl") or str(Path(sys.executable).with_name("trl"))
    out = subprocess.run([trl, sub, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(?<![\w-])(--[A-Za-z0-9_-]+)", out))


def flags(args):
    return [a for a in args if a.startswith("--")]


def check(folder):
    sub, args = command(folder)
    known = help_flags(sub)
    for f in flags(args):
        if f == "--accelerate_config":
            continue
        assert f in known, f"{f} is not an option of `trl {sub}` (TRL {trl_version()})"
    script_args = list(args)
    if "--accelerate_config" in script_args:
        i = script_args.index("--accelerate_config")
        cfg = Path(folder) / script_args[i + 1]
        assert cfg.is_file(), f"--accelerate_config {cfg} missing"
        del script_args[i : i + 2]
    module = __import__(f"trl.scripts.{sub}", fromlist=["make_parser"])
    parser = module.make_parser()
    here = os.getcwd()
    os.chdir(folder)
    try:
        *parsed, rest = parser.parse_args_and_config(script_args + ["--use_cpu", "true"], return_remaining_strings=True)
    finally:
        os.chdir(here)
    assert not rest, f"left over: {rest}"
    # Each value written is the value TRL read.
    by_dest = {}
    for obj in parsed:
        by_dest.update(vars(obj))
    i = 0
    while i < len(script_args):
        flag = script_args[i]
        values = []
        i += 1
        while i < len(script_args) and not script_args[i].startswith("--"):
            values.append(script_args[i])
            i += 1
        dest = flag[2:].replace("-", "_")
        if dest not in by_dest:
            continue
        got = by_dest[dest]
        if hasattr(got, "value"):
            got = got.value
        want = values if len(values) != 1 else values[0]
        assert same(got, want), f"{flag}: wrote {want!r}, TRL read {got!r}"
    if sub == "grpo":
        check_rewards(folder, by_dest)
    return sub, len(flags(args))


def check_rewards(folder, parsed):
    """The reward functions load and score a record the way GRPOTrainer hands it to them."""
    from datasets import load_dataset

    funcs, weights = parsed["reward_funcs"], parsed["reward_weights"]
    assert funcs and len(funcs) == len(weights), f"{len(funcs or [])} reward functions, {len(weights or [])} weights"
    here = os.getcwd()
    os.chdir(folder)
    sys.path.insert(0, os.getcwd())
    try:
        for name in [m for m in list(sys.modules) if m == "tunelab_rewards"]:
            del sys.modules[name]
        loaded = []
        for path in funcs:
            module_path, attr = path.rsplit(".", 1)  # as trl/scripts/grpo.py splits it
            loaded.append(getattr(importlib.import_module(module_path), attr))
        row = load_dataset("data", split="train")[0]
    finally:
        sys.path.pop(0)
        os.chdir(here)
    prompt = row["prompt"]
    reply = row.get("reference") or "42"
    if isinstance(prompt, list):
        completions = [[{"role": "assistant", "content": reply}], [{"role": "assistant", "content": "no"}]]
    else:
        completions = [reply, "no"]
    columns = {k: [v, v] for k, v in row.items() if k != "prompt"}
    for f in loaded:
        assert isinstance(f.__name__, str) and f.__name__, f"{f!r} has no __name__ for TRL's metrics"
        try:
            out = f(prompts=[prompt, prompt], completions=completions, completion_ids=[[1, 2, 3], [4]], **columns)
        except ValueError as e:
            # A record this reward cannot read (no reference, one its reference_regex misses)
            # stops tunelab's run too, with this message.
            assert str(e).startswith(f"reward `{f.__name__}`: line "), f"{f!r}: {e}"
            continue
        assert len(out) == 2 and all(isinstance(x, float) for x in out), f"{f!r} returned {out!r}"


def same(got, want):
    if isinstance(got, dict):
        return got == json.loads(want)  # a dict flag (--chat_template_kwargs) takes JSON
    if want == "none" and got in ([], None, "none"):
        return True  # report_to none: no integrations
    if isinstance(got, (list, tuple)) and not isinstance(want, list):
        want = [want]
    if isinstance(want, list):
        got = got if isinstance(got, (list, tuple)) else [got]
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    if isinstance(got, bool):
        return got == (want.lower() in ("true", "1", "yes"))
    if isinstance(got, (int, float)):
        return abs(float(got) - float(want)) <= 1e-12 * max(1.0, abs(float(want)))
    return str(got) == want


def trl_version():
    import trl

    return trl.__version__


def main():
    import warnings

    warnings.filterwarnings("ignore")
    folders = sys.argv[1:]
    if not folders:
        print(__doc__)
        return 2
    for f in folders:
        try:
            sub, n = check(f)
        except Exception as e:
            print(f"FAIL {f}: {type(e).__name__}: {e}")
            return 1
        print(f"ok   {f}: trl {sub}, {n} flags known to TRL {trl_version()} and parsed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
