#!/usr/bin/env python3
"""An exported experiment runs as it is (issue #36): `tunelab export-config` to TRL, Axolotl and
LLaMA-Factory, then `bash run.sh` in the export folder for 3 CPU steps, then `tunelab runs
import` of the result, for four models, with a pass/fail table at the end.

    cargo build --release && python3 scripts/check_exports_run.py [--work DIR] [--tools trl,axolotl,llamafactory]

Models: the tiny demo preset (`tiny-demo`, the demo workspace's tiny model with its ChatML
template), and three tiny models (`tunelab model init-tiny`: llama, qwen2, gemma3) that carry
the published Llama 3.1, Qwen2.5 and Gemma 3 chat templates with the small tokenizers of
tests/fixtures/templates/ (so the exact template and special tokens, offline). The templated
models train on eight conversations from the demo's persona data (system prompts, single and
two-turn); the demo preset on its own data.

Every cell: the export succeeds; `bash run.sh` (plus CPU switches: `--use_cpu true` for TRL,
Axolotl's LoRA kernels off) exits 0 after 3 optimizer steps with an adapter; `tunelab runs
import` brings it back with 3 train steps. For TRL also: (a) masks, every record of the
exported data rendered through the exported `chat_template.jinja` by transformers
(`apply_chat_template(return_assistant_tokens_mask=True)`, what TRL's assistant-only loss
uses) has tunelab's token ids and trained tokens (`tunelab data preview --json`), token for
token; (b) the first step's loss equals tunelab's first-step loss on the same batch within
1e-3: the batch is the whole train split (`train.batch_size` = its record count), so the two
trainers' data orders do not matter, and LoRA's B starts at zero, so the first loss is the base
model's on the masked tokens.

The tools run from their own virtual environments (nothing here installs anything):
  TRL            $TRL_VENV   (default ~/.cache/tunelab-ci/venv-torch: torch, transformers, peft,
                 trl==1.16.0, datasets)
  Axolotl        $AXOLOTL_VENV (default ~/.cache/tunelab-ci/venv-axolotl: pip install axolotl==0.19.0)
  LLaMA-Factory  $LLAMAFACTORY_VENV (default ~/.cache/tunelab-ci/venv-llamafactory: pip install
                 llamafactory==0.9.5)
A tool whose venv is missing gets "not run: <why>" cells. Everything is offline
(HF_HUB_OFFLINE=1, telemetry off). TUNELAB_BIN picks the binary (default
target/release/tunelab). Exits 1 when a cell that ran failed.
"""
import argparse
import glob
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("TUNELAB_MODEL_CACHE", pathlib.Path.home() / ".cache" / "tunelab-ci"))
TUNELAB = os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "release" / "tunelab"))
STEPS = 3
LOSS_TOL = 1e-3

VENVS = {
    "trl": pathlib.Path(os.environ.get("TRL_VENV", CACHE / "venv-torch")),
    "axolotl": pathlib.Path(os.environ.get("AXOLOTL_VENV", CACHE / "venv-axolotl")),
    "llamafactory": pathlib.Path(os.environ.get("LLAMAFACTORY_VENV", CACHE / "venv-llamafactory")),
}
# The command each venv must have, and the version shown in the table.
TOOL_BIN = {"trl": "trl", "axolotl": "axolotl", "llamafactory": "llamafactory-cli"}
TOOL_PACKAGE = {"trl": "trl", "axolotl": "axolotl", "llamafactory": "llamafactory"}
# Switches for a CPU-only run, passed to run.sh. Axolotl turns its Triton LoRA kernels on by
# itself, and they allocate on CUDA.
CPU_ARGS = {
    "trl": ["--use_cpu", "true"],
    "axolotl": ["--no-lora-mlp-kernel", "--no-lora-qkv-kernel", "--no-lora-o-kernel", "--no-lora-embedding-kernel"],
    "llamafactory": [],
}
LABEL = {"trl": "TRL", "axolotl": "Axolotl", "llamafactory": "LLaMA-Factory"}

# The templated tiny models: (name, init-tiny arch, fixture folder). The names are what
# LLaMA-Factory's template lookup reads (llama3, qwen, gemma3).
TEMPLATED = [
    ("tiny-llama3", "llama", "llama3_1"),
    ("tiny-qwen2.5", "qwen2", "qwen2_5"),
    ("tiny-gemma3", "gemma3", "gemma3"),
]


def offline_env(home):
    env = dict(os.environ)
    env.update(
        TUNELAB_HOME=str(home),
        NO_COLOR="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        AXOLOTL_DO_NOT_TRACK="1",
        WANDB_MODE="disabled",
        CUDA_VISIBLE_DEVICES="",
        TOKENIZERS_PARALLELISM="false",
        # LLaMA-Factory checks its pinned versions at start.
        DISABLE_VERSION_CHECK="1",
    )
    return env


def run(cmd, env, cwd=None, log=None, timeout=1800):
    """Runs `cmd`; returns (exit code, output). The output also goes to `log`."""
    t = time.time()
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        code, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}"
    if log:
        pathlib.Path(log).write_text(f"$ {' '.join(map(str, cmd))}\n(in {cwd}, {time.time() - t:.1f} s, exit {code})\n{out}")
    return code, out


def last_error(out):
    """The last line of a failed command's output that says what went wrong."""
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    for l in reversed(lines):
        if any(k in l for k in ("Error", "error", "Exception", "No such", "not found")):
            return l[:300]
    return (lines[-1] if lines else "(no output)")[:300]


# --- the models and their data -------------------------------------------------------------


def persona_conversations(home):
    """Eight conversations from the demo's persona data: four records as they are (some open
    with a system prompt), four two-turn conversations of two records each."""
    recs = [json.loads(l) for l in (home / "data" / "demo" / "persona.jsonl").read_text().splitlines() if l.strip()]
    out = [r["messages"] for r in recs[:4]]
    for i in range(4, 12, 2):
        a, b = recs[i]["messages"], recs[i + 1]["messages"]
        out.append(a + [m for m in b if m["role"] != "system"])
    return [{"messages": m} for m in out]


def make_templated_model(name, arch, fixture, models, env):
    """`init-tiny` with a vocabulary at least as large as the fixture tokenizer's, then that
    tokenizer and its template and special tokens in place of the tiny model's own."""
    dest = models / name
    models.mkdir(parents=True, exist_ok=True)
    corpus = models / "corpus.txt"
    if not corpus.exists():
        text = [ROOT.joinpath("README.md").read_text()]
        text += [p.read_text() for p in sorted((ROOT / "docs" / "src").glob("*.md"))]
        corpus.write_text("\n\n".join(text))
    code, out = run([TUNELAB, "model", "init-tiny", "--arch", arch, "--vocab", "1024", "--corpus", str(corpus), "-o", str(dest)], env)
    if code:
        raise RuntimeError(f"init-tiny {arch}: {last_error(out)}")
    src = ROOT / "tests" / "fixtures" / "templates" / fixture
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(src / f, dest / f)
    tok = json.loads((src / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    size = max([*tok["model"]["vocab"].values(), *ids.values()]) + 1
    config = json.loads((dest / "config.json").read_text())
    if config["vocab_size"] < size:
        raise RuntimeError(f"{name}: the tiny model's vocabulary ({config['vocab_size']}) is smaller than the tokenizer's ({size})")
    tc = json.loads((src / "tokenizer_config.json").read_text())
    gen = json.loads((src / "generation_config.json").read_text())
    eos = gen.get("eos_token_id")
    config["bos_token_id"] = ids.get(tc.get("bos_token")) if tc.get("bos_token") else gen.get("bos_token_id")
    config["eos_token_id"] = eos
    config["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest


def templated_config(name, model, data, path):
    """A run config for a templated model: the whole train split is one batch."""
    path.write_text(
        f"""name: {name}
model:
  path: {model}
data:
  train: {data}
  eval_split: 0.0
  max_seq_len: 512
  train_on: assistant
lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: [all-linear]
train:
  method: sft
  max_steps: {STEPS}
  lr: 0.001
  scheduler: constant
  warmup: 0
  batch_size: 8
  grad_accum: 1
  max_grad_norm: 1.0
  seed: 42
  save_every: {STEPS}
  eval_every: 0
  keep_checkpoints: 1
  dtype: f32
  device: cpu
"""
    )
    return path


# --- one cell ------------------------------------------------------------------------------


def tunelab_first_loss(spec, sets, work, env):
    """tunelab's loss at step 1 for `spec` with `sets`."""
    rd = work / "tunelab-runs" / f"{pathlib.Path(spec).stem}"
    if rd.exists():
        shutil.rmtree(rd)
    args = [TUNELAB, "train", spec, "--run-dir", str(rd), "--set", "train.max_steps=1"]
    for s in sets:
        args += ["--set", s]
    code, out = run(args, env, log=work / "logs" / f"tunelab-{rd.name}.log")
    if code:
        raise RuntimeError(f"tunelab train: {last_error(out)}")
    for line in (rd / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("type") == "train" and e.get("step") == 1:
            return e["loss"]
    raise RuntimeError("tunelab train wrote no step-1 event")


def trl_first_loss(output):
    """The step-1 loss in the newest checkpoint's trainer_state.json."""
    states = sorted(glob.glob(str(output / "checkpoint-*" / "trainer_state.json")), key=lambda p: int(p.split("checkpoint-")[1].split("/")[0]))
    if not states:
        states = [str(output / "trainer_state.json")]
    for h in json.loads(pathlib.Path(states[-1]).read_text())["log_history"]:
        if h.get("step") == 1 and "loss" in h:
            return h["loss"]
    raise RuntimeError("no step-1 loss in trainer_state.json")


def masks_worker(export, model, train_on="assistant", choice="model"):
    """(runs in TRL's venv) Every record of the export's data through its chat_template.jinja
    in transformers: ids and assistant masks against `tunelab data preview --json`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    template = (pathlib.Path(export) / "chat_template.jinja").read_text()
    equal = total = 0
    first_bad = None
    for split in ("train", "test"):
        path = pathlib.Path(export) / "data" / f"{split}.jsonl"
        if not path.exists():
            continue
        records = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
        out = subprocess.run(
            [TUNELAB, "data", "preview", str(path), "--model", model, "--template", choice, "--train-on", train_on, "--json", "-n", str(len(records))],
            capture_output=True, text=True, check=True,
        ).stdout
        ours = [json.loads(l) for l in out.splitlines() if l.strip()]
        assert len(ours) == len(records), (len(ours), len(records))
        for i, (r, o) in enumerate(zip(records, ours)):
            res = tok.apply_chat_template(
                r["messages"], tools=r.get("tools"), chat_template=template, tokenize=True,
                return_dict=True, return_assistant_tokens_mask=True,
            )
            ids, mask = list(res["input_ids"]), list(res["assistant_masks"])
            want = [0 if l == -100 else 1 for l in o["labels"]]
            total += 1
            if ids == o["input_ids"] and mask == want:
                equal += 1
            elif first_bad is None:
                diff = next((k for k, (a, b) in enumerate(zip(mask, want)) if a != b), None)
                first_bad = f"{split} record {i}: ids equal {ids == o['input_ids']}, first mask difference at token {diff}"
    print(json.dumps({"equal": equal, "total": total, "first_bad": first_bad}))


def check_masks(export, model, env, train_on="assistant", template="model"):
    py = VENVS["trl"] / "bin" / "python"
    code, out = run([str(py), __file__, "--masks-worker", str(export), str(model), train_on, template], env, log=export / "masks.log")
    if code:
        raise RuntimeError(f"mask check: {last_error(out)}")
    return json.loads(out.strip().splitlines()[-1])


def cell(tool, name, spec, sets, work, env, tunelab_loss):
    """Export, run, import; returns (ok, text)."""
    exp = work / "exports" / f"{name}-{tool}"
    logs = work / "logs"
    args = [TUNELAB, "export-config", spec, "--to", tool, "-o", str(exp)]
    for s in sets:
        args += ["--set", s]
    code, out = run(args, env, log=logs / f"{name}-{tool}-export.log")
    if code:
        return False, f"export failed: {last_error(out)}"
    notes = []
    if "warning:" in out:
        notes.append("export warned: " + last_error(out.split("warning:", 1)[1]))
    venv_env = dict(env)
    venv_env["PATH"] = f"{VENVS[tool] / 'bin'}:{env['PATH']}"
    venv_env["VIRTUAL_ENV"] = str(VENVS[tool])
    if (exp / "output").exists():
        shutil.rmtree(exp / "output")
    t = time.time()
    code, out = run(["bash", "run.sh", *CPU_ARGS[tool]], venv_env, cwd=exp, log=logs / f"{name}-{tool}-run.log")
    secs = time.time() - t
    if code:
        return False, f"run.sh exit {code}: {last_error(out)}"
    output = exp / "output"
    if not (output / "adapter_model.safetensors").exists():
        return False, "run.sh wrote no adapter"
    code, out = run([TUNELAB, "runs", "import", str(output), "--name", f"{name}-{tool}"], env, log=logs / f"{name}-{tool}-import.log")
    if code:
        return False, f"import failed: {last_error(out)}"
    if f"imported {STEPS} steps" not in out:
        return False, f"import: {out.strip().splitlines()[0]}"
    parts = [f"{STEPS} steps in {secs:.0f} s, imported"]
    ok = True
    if tool == "trl":
        model_path = next(l.split("--model_name_or_path", 1)[1].split()[0] for l in (exp / "run.sh").read_text().splitlines() if "--model_name_or_path" in l)
        if (exp / "chat_template.jinja").exists() and "generation" in (exp / "chat_template.jinja").read_text():
            m = check_masks(exp, model_path, env)
            parts.append(f"masks {m['equal']}/{m['total']}")
            if m["equal"] != m["total"]:
                ok = False
                parts.append(m["first_bad"])
        else:
            ok = False
            parts.append("no marked template")
        loss = trl_first_loss(output)
        d = abs(loss - tunelab_loss)
        parts.append(f"loss₁ {loss:.5f} vs tunelab {tunelab_loss:.5f} (Δ {d:.1e})")
        if d > LOSS_TOL:
            ok = False
    return ok, "; ".join(parts + notes)


# --- the second table: every fixture template's marks in transformers ----------------------

FAMILIES = ["llama3_1", "qwen2_5", "qwen3", "gemma3", "phi4", "mistral_v0_3", "gemma", "phi3", "phi4_mini"]
# Each built-in template with a tokenizer of its family (as tests/it/template_marked.rs).
BUILTINS = [
    ("chatml", "qwen2_5"), ("llama3", "llama3_1"), ("mistral", "mistral_v0_3"), ("alpaca", "llama3_1"),
    ("qwen3", "qwen3"), ("gemma", "gemma3"), ("phi4", "phi4"), ("phi4-mini", "phi4_mini"),
]
# The rows: (label, fixture tokenizer, model.template).
TEMPLATE_ROWS = [(f, f, "model") for f in FAMILIES] + [(f"builtin:{b}", f, b) for b, f in BUILTINS]
POLICIES = ["assistant", "answers", "last_assistant"]


def fixture_conversations(family, tok, template, work, env, persona):
    """The fixture's cases (every case a trained conversation can be: no generation prompt, no
    template arguments; with their tools) and the persona conversations, as exported data,
    those that tunelab encodes (not, for example, tool calls for a template that leaves them
    out, a system prompt for Gemma 1's template, which refuses it, or Mistral v0.3's, which the
    template moves once more turns follow): there are no masks to compare for the others.
    Returns the records and the names of those left out."""
    cases = json.loads((ROOT / "tests" / "fixtures" / "templates" / family / "cases.json").read_text())["cases"]
    named = []
    for c in cases:
        if c.get("add_generation_prompt") or "error" in c or "enable_thinking" in c:
            continue
        r = {"messages": c["messages"]}
        if c.get("tools"):
            r["tools"] = [t["function"] for t in c["tools"]]
        named.append((c["name"], r))
    named += [(f"persona {i + 1}", r) for i, r in enumerate(persona)]
    out, left_out = [], []
    for name, r in named:
        one = work / "tokenizers" / f"{family}-case.jsonl"
        one.write_text(json.dumps(r) + "\n")
        code, _ = run([TUNELAB, "data", "preview", str(one), "--model", str(tok), "--template", template, "--json"], env)
        if code:
            left_out.append(name)
        else:
            out.append(r)
    return out, left_out


def template_cell(label, family, template, policy, work, env, persona):
    """Exports the fixture's cases and the persona conversations to TRL with the fixture's
    tokenizer and template, then compares the marks in transformers with tunelab's masks."""
    tok = work / "tokenizers" / family
    if not tok.exists():
        shutil.copytree(ROOT / "tests" / "fixtures" / "templates" / family, tok)
    slug = label.replace(":", "-")
    data = work / "tokenizers" / f"{slug}.jsonl"
    cases, left_out = fixture_conversations(family, tok, template, work, env, persona)
    data.write_text("".join(json.dumps(r) + "\n" for r in cases))
    cfg = templated_config(f"{slug}-{policy}", tok, data, work / "tokenizers" / f"{slug}-{policy}.yaml")
    exp = work / "exports" / f"template-{slug}-{policy}"
    code, out = run(
        [TUNELAB, "export-config", str(cfg), "--to", "trl", "-o", str(exp), "--set", f"data.train_on={policy}", "--set", f"model.template={template}"],
        env, log=work / "logs" / f"template-{slug}-{policy}.log",
    )
    if code:
        return False, f"export failed: {last_error(out)}"
    if "warning:" in out:
        return False, "fell back: " + out.split("warning:", 1)[1].strip()[:200]
    m = check_masks(exp, tok, env, policy, template)
    text = f"{m['equal']}/{m['total']}"
    if m["first_bad"] is not None:
        text += f" ({m['first_bad']})"
    if left_out and policy == POLICIES[0]:
        text += f"; tunelab refuses {', '.join(left_out)}"
    return m["equal"] == m["total"], text


# --- the table -----------------------------------------------------------------------------


def tool_version(tool):
    py = VENVS[tool] / "bin" / "python"
    if not (VENVS[tool] / "bin" / TOOL_BIN[tool]).exists():
        return None
    code, out = run([str(py), "-c", f"import importlib.metadata as m; print(m.version('{TOOL_PACKAGE[tool]}'), m.version('torch'), m.version('transformers'))"], dict(os.environ))
    return out.strip() if code == 0 else None


def machine():
    cpu = "?"
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", help="a new folder for the homes, exports and logs (default: a temp folder, kept)")
    ap.add_argument("--tools", default="trl,axolotl,llamafactory")
    ap.add_argument("--models", default="tiny-demo," + ",".join(n for n, _, _ in TEMPLATED))
    ap.add_argument("--masks-worker", nargs=4, metavar=("EXPORT", "MODEL", "TRAIN_ON", "TEMPLATE"), help=argparse.SUPPRESS)
    ap.add_argument("--no-templates", action="store_true", help="leave out the second table (marked templates in transformers)")
    a = ap.parse_args()
    if a.masks_worker:
        masks_worker(*a.masks_worker)
        return 0
    if not os.access(TUNELAB, os.X_OK):
        print(f"error: no tunelab binary at {TUNELAB} (cargo build --release, or set TUNELAB_BIN)", file=sys.stderr)
        return 2
    work = pathlib.Path(a.work) if a.work else pathlib.Path(tempfile.mkdtemp(prefix="tunelab-exports-run."))
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    home = work / "home"
    env = offline_env(home)
    tools = [t for t in a.tools.split(",") if t]
    wanted = [m for m in a.models.split(",") if m]
    started = time.time()

    code, out = run([TUNELAB, "demo"], env)
    if code:
        print(f"error: tunelab demo: {last_error(out)}", file=sys.stderr)
        return 1
    # (name, spec, --set overrides): every model's whole train split is one batch.
    models = []
    if "tiny-demo" in wanted:
        # The demo preset holds 81 of its 90 records for training (eval_split 0.1).
        models.append(("tiny-demo", "tiny-demo", [f"train.max_steps={STEPS}", "train.batch_size=81"]))
    data = work / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in persona_conversations(home)))
    for name, arch, fixture in TEMPLATED:
        if name not in wanted:
            continue
        dest = make_templated_model(name, arch, fixture, work / "models", env)
        models.append((name, str(templated_config(name, dest, data, work / f"{name}.yaml")), []))

    skip = {}
    versions = {}
    for t in tools:
        v = tool_version(t)
        if v is None:
            skip[t] = f"not run: no {TOOL_BIN[t]} in {VENVS[t]}"
        else:
            versions[t] = v

    table = {}
    failed = False
    for name, spec, sets in models:
        loss = None
        if "trl" in tools and "trl" not in skip:
            try:
                loss = tunelab_first_loss(spec, sets, work, env)
            except RuntimeError as e:
                loss = e
        for t in tools:
            if t in skip:
                table[(name, t)] = skip[t]
                continue
            print(f"… {name} → {LABEL[t]}", file=sys.stderr, flush=True)
            try:
                if t == "trl" and isinstance(loss, Exception):
                    raise loss
                ok, text = cell(t, name, spec, sets, work, env, loss)
            except Exception as e:  # a check that could not run is a failure, with its reason
                ok, text = False, f"{type(e).__name__}: {e}"
            failed |= not ok
            table[(name, t)] = ("pass: " if ok else "FAIL: ") + text

    templates = {}
    if not a.no_templates and "trl" not in skip and "trl" in tools:
        persona = persona_conversations(home)
        for label, family, template in TEMPLATE_ROWS:
            for policy in POLICIES:
                print(f"… template {label} train_on {policy}", file=sys.stderr, flush=True)
                try:
                    ok, text = template_cell(label, family, template, policy, work, env, persona)
                except Exception as e:
                    ok, text = False, f"{type(e).__name__}: {e}"
                failed |= not ok
                templates[(label, policy)] = ("pass " if ok else "FAIL ") + text

    print(f"\nissue #36: exported experiments run as they are ({STEPS} CPU steps each, then `tunelab runs import`)")
    print(f"machine: {machine()}")
    print(f"tunelab: {TUNELAB}")
    for t in tools:
        if t in versions:
            v = versions[t].split()
            print(f"{LABEL[t]}: {v[0]} (torch {v[1]}, transformers {v[2]}) from {VENVS[t]}")
    print(f"work folder (exports, logs): {work}; {time.time() - started:.0f} s in all\n")
    print("| model | " + " | ".join(LABEL[t] for t in tools) + " |")
    print("|---|" + "---|" * len(tools))
    for name, _, _ in models:
        print(f"| {name} | " + " | ".join(table[(name, t)] for t in tools) + " |")
    if templates:
        print("\nThe exported chat_template.jinja in transformers (TRL's venv): records whose token ids and")
        print("assistant masks (`return_assistant_tokens_mask`) equal tunelab's, per fixture template and")
        print("train_on (the fixture's cases with tools and reasoning, and the persona conversations):\n")
        print("| template (tokenizer) | " + " | ".join(POLICIES) + " |")
        print("|---|" + "---|" * len(POLICIES))
        for label, family, _ in TEMPLATE_ROWS:
            print(f"| {label} ({family}) | " + " | ".join(templates[(label, p)] for p in POLICIES) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
