#!/usr/bin/env bash
# Fuzzes every reader of untrusted input (examples/fuzz.rs) for a fixed budget per target
# and prints the table recorded in BENCHMARKS.md (RELIABILITY). Crashing inputs are saved
# under fuzz-crashes/ (ignored by git); each one found gets a regression test.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
cargo build --release --example fuzz >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "budget: ${SECONDS_PER_TARGET} s per target, seed 1"
status=0
printf '%-16s %10s %8s %10s %12s\n' target execs crashes execs/s "peak MiB"
for t in jsonl json-array parquet gguf safetensors adapter-config run-config events template serve-request; do
  # One process per target, so each peak-memory figure is that target's own.
  ./target/release/examples/fuzz --seconds "$SECONDS_PER_TARGET" --target "$t" 2>>fuzz-crashes.log | tail -n +2 || status=1
done
exit $status
