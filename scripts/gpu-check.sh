#!/usr/bin/env bash
# GPU check: CUDA build, GPU tests, the SFT training benchmark against transformers + PEFT,
# tunelab's DPO step, and a QLoRA step on random Llama-3.1-8B-shaped weights (q4k base and
# head, 1 x 2048, checkpointing) whose peak VRAM is held against the Adapter tab's estimate.
#
#   scripts/gpu-check.sh build   # where cargo and a CUDA 13 toolkit are (nvcc; PyPI's
#                                # nvidia-cuda-nvcc, -nvvm and -crt of one version, plus
#                                # -runtime, -cublas, -curand, -nvrtc, -cccl: set CUDA_LIB,
#                                # see link_stubs): builds the CUDA binary and the GPU test
#                                # binary into .gpu/ and bundles them (about 44 MB)
#   scripts/gpu-check.sh         # on the GPU machine (torch, transformers, peft installed):
#                                # builds first if .gpu/ is missing and cargo exists, then runs
#                                # the GPU tests and the benchmark and prints a table.
#
# Environment: CUDA_COMPUTE_CAP (default 90, Hopper), STEPS (default 20), SHAPE (default
# qwen2.5-0.5b), BATCH×SEQ (default 8×512). Results also go to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
BUNDLE_DIR=.gpu-bundle
OUT_DIR=${OUT:-$GPU_DIR}
STEPS=${STEPS:-20}
SHAPE=${SHAPE:-qwen2.5-0.5b}
BATCH=${BATCH:-8}
SEQ=${SEQ:-512}

# Where the toolkit has no unversioned libraries and no driver (PyPI's CUDA wheels on a
# machine without a GPU): a folder of links to libcublas.so.13 & co. and a stub libcuda.so.1
# that defines the driver symbols cudarc links against (scripts/cuda-driver-symbols.txt).
# The binary then loads the real driver on the GPU machine. CUDA_LIB names the wheels' lib
# folder (…/site-packages/nvidia/cu13/lib).
link_stubs() {
  [ -n "${CUDA_LIB:-}" ] || return 0
  local dir=$GPU_DIR/link
  mkdir -p "$dir"
  for f in "$CUDA_LIB"/lib*.so.*; do
    local base=${f##*/}
    ln -sf "$f" "$dir/${base%%.so.*}.so"
  done
  sed 's/.*/void &(void){}/' scripts/cuda-driver-symbols.txt > "$dir/stub.c"
  gcc -shared -o "$dir/libcuda.so" -Wl,-soname,libcuda.so.1 "$dir/stub.c" || exit 1
  export LIBRARY_PATH="$dir:$CUDA_LIB:${LIBRARY_PATH:-}"
}

build() {
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
  link_stubs
  cargo build --release --features cuda --bin tunelab || exit 1
  local test_bin
  test_bin=$(cargo test --release --features cuda --test it --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it":
        print(m["executable"])' | tail -1)
  [ -n "$test_bin" ] || { echo "could not build the GPU test binary"; exit 1; }
  mkdir -p "$GPU_DIR"
  local target=${CARGO_TARGET_DIR:-target}
  cp "$target/release/tunelab" "$GPU_DIR/tunelab"
  cp "$test_bin" "$GPU_DIR/gpu-tests"
  strip "$GPU_DIR/tunelab" "$GPU_DIR/gpu-tests"
  # One compressed bundle travels to a GPU machine that has no Rust toolchain.
  mkdir -p "$BUNDLE_DIR"
  tar -C "$GPU_DIR" -czf "$BUNDLE_DIR/bundle.tgz" tunelab gpu-tests
  ls -la "$GPU_DIR" "$BUNDLE_DIR"
}

if [ "${1:-}" = "build" ]; then build; exit 0; fi
if [ ! -x "$GPU_DIR/tunelab" ] && [ -f "$BUNDLE_DIR/bundle.tgz" ]; then
  mkdir -p "$GPU_DIR" && tar -C "$GPU_DIR" -xzf "$BUNDLE_DIR/bundle.tgz"
fi
if [ ! -x "$GPU_DIR/tunelab" ]; then
  command -v cargo >/dev/null || { echo "no $GPU_DIR/tunelab and no cargo: run 'scripts/gpu-check.sh build' where cargo is"; exit 1; }
  build
fi
mkdir -p "$OUT_DIR"

# CUDA libraries: the driver's libcuda, and cuBLAS/cuRAND/NVRTC/cudart 13 from the CUDA pip
# wheels that PyTorch installs.
libdirs=$(python3 - <<'PY'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
seen = []
for r in roots:
    for pat in ("nvidia/cu13/lib", "nvidia/*/lib"):
        for d in glob.glob(os.path.join(r, pat)):
            if d not in seen:
                seen.append(d)
print(":".join(seen))
PY
)
export LD_LIBRARY_PATH="${libdirs}:/usr/local/nvidia/lib64:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT_DIR/gpu.txt"

echo "== GPU tests"
export TUNELAB_REPO_ROOT=$PWD
"$GPU_DIR/gpu-tests" gpu:: --test-threads=1 2>&1 | tee "$OUT_DIR/gpu-tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== SFT LoRA benchmark: $SHAPE, ${BATCH}x${SEQ}, bf16, $STEPS steps"
for ckpt in "" "--checkpointing"; do
  name=bench${ckpt:+-ckpt}
  python3 scripts/bench_train.py --tunelab "$GPU_DIR/tunelab" --device cuda --dtype bf16 --shape "$SHAPE" \
    --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --warmup 3 $ckpt --json "$OUT_DIR/$name.json" 2>&1 \
    | grep -v -i warn | tee "$OUT_DIR/$name.txt"
done

echo "== DPO step: $SHAPE, $((BATCH / 2)) pairs x ${SEQ}, bf16 (tunelab; same tokens as the SFT rows)"
for pre in "" "--precompute-ref"; do
  name=dpo${pre:+-pre}
  "$GPU_DIR/tunelab" bench train --objective dpo $pre --device cuda --dtype bf16 --shape "$SHAPE" \
    --batch "$((BATCH / 2 > 0 ? BATCH / 2 : 1))" --seq "$SEQ" --steps "$STEPS" --warmup 3 --json \
    > "$OUT_DIR/$name.json" 2> "$OUT_DIR/$name.err" || echo "$name failed: $(tail -1 "$OUT_DIR/$name.err")"
done

echo "== QLoRA step: llama-3.1-8b shape (random weights), q4k base + head, 1x2048, r16, bf16, checkpointing"
"$GPU_DIR/tunelab" bench train --shape llama-3.1-8b --quantization q4k --quantize-head --device cuda \
  --dtype bf16 --batch 1 --seq 2048 --rank 16 --checkpointing --steps 3 --warmup 1 --json \
  > "$OUT_DIR/qlora-8b.json" 2> "$OUT_DIR/qlora-8b.err" || echo "qlora-8b failed: $(tail -1 "$OUT_DIR/qlora-8b.err")"

echo "== GRPO on CUDA: tiny-demo-grpo, 30 steps (sampling, rewards and the update on the GPU)"
GRPO_HOME=$(mktemp -d)
TUNELAB_HOME="$GRPO_HOME" "$GPU_DIR/tunelab" demo > /dev/null 2>&1
TUNELAB_HOME="$GRPO_HOME" "$GPU_DIR/tunelab" train tiny-demo-grpo --set train.device=cuda \
  --set train.max_steps=30 --run-dir "$OUT_DIR/grpo-run" > "$OUT_DIR/grpo.txt" 2>&1 \
  || echo "grpo failed: $(tail -1 "$OUT_DIR/grpo.txt")"

echo "== summary"
python3 - "$OUT_DIR" <<'PY'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
print(f"{'run':<28} {'tokens/s':>10} {'peak VRAM GiB':>14}")
for name in ("bench", "bench-ckpt"):
    p = d / f"{name}.json"
    if not p.exists():
        print(f"{name}: missing"); continue
    r = json.loads(p.read_text())
    for who in ("tunelab", "torch"):
        v = r[who].get("peak_vram_bytes")
        label = f"{who}{' +ckpt' if name.endswith('ckpt') else ''}"
        print(f"{label:<28} {r[who]['tokens_per_s']:>10.0f} {v / 2**30 if v else float('nan'):>14.2f}")
for name in ("dpo", "dpo-pre"):
    p = d / f"{name}.json"
    try:
        r = json.loads(p.read_text())
    except Exception:
        print(f"{name}: missing"); continue
    v = r.get("peak_vram_bytes")
    label = f"tunelab DPO{' precomputed ref' if name.endswith('pre') else ''}"
    print(f"{label:<28} {r['tokens_per_s']:>10.0f} {v / 2**30 if v else float('nan'):>14.2f}")
try:
    r = json.loads((d / "qlora-8b.json").read_text())
    v, e = r.get("peak_vram_bytes"), r.get("estimate_bytes")
    print(f"{'tunelab QLoRA 8B q4k':<28} {r['tokens_per_s']:>10.0f} {v / 2**30 if v else float('nan'):>14.2f}"
          f"   estimate {e / 2**30:.2f} GiB, base {r['base_bytes'] / 2**30:.2f} GiB")
except Exception:
    print("qlora-8b: missing")
try:
    ev = [json.loads(l) for l in (d / "grpo-run" / "events.jsonl").read_text().splitlines()]
    tr = [e for e in ev if e["type"] == "train"]
    k = max(1, len(tr) // 10)
    mean = lambda xs: sum(xs) / len(xs)
    print(f"{'tunelab GRPO tiny (CUDA)':<28} steps {len(tr)}, {mean([e['generation/tokens_per_s'] for e in tr]):.0f} gen tok/s,"
          f" reward {mean([e['reward'] for e in tr[:k]]):.3f} -> {mean([e['reward'] for e in tr[-k:]]):.3f},"
          f" gpu_mem {max(e.get('gpu_mem') or 0 for e in tr) / 2**20:.0f} MiB")
except Exception as e:
    print(f"grpo: missing ({e})")
PY
exit "$tests_rc"
