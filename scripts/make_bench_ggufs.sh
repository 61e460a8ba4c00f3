#!/usr/bin/env bash
# The GGUFs of BENCHMARKS.md's decode rows (issue #32), made here with llama.cpp's own tools
# (no hub access needed):
#   - SmolLM2-135M-Instruct: the f32 HF folder (TUNELAB_SMOLLM2_F32, default
#     ~/.cache/tunelab-ci/smollm2-135m-f32) → f32 GGUF → Q4_0, Q8_0, Q4_K_M;
#   - a random model of Qwen3-0.6B's shape (hidden 1024, 28 layers, vocab 151,936, tied
#     head; transformers' own init, seed 0) with SmolLM2's tokenizer → Q4_0, Q4_1, Q8_0,
#     Q4_K_M.
# Usage: scripts/make_bench_ggufs.sh OUT_DIR   (needs PYTHON with torch, transformers,
# safetensors, sentencepiece; default ~/.cache/tunelab-ci/venv-torch/bin/python). Then:
#   python3 scripts/bench_peers.py --only decode --decode-models OUT_DIR/smollm2-Q4_0.gguf,...
set -euo pipefail
OUT="${1:?usage: $0 OUT_DIR}"
PY="${PYTHON:-$HOME/.cache/tunelab-ci/venv-torch/bin/python}"
SMOL="${TUNELAB_SMOLLM2_F32:-$HOME/.cache/tunelab-ci/smollm2-135m-f32}"
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$(bash "$HERE/build-llama-cpp.sh" | tail -1)"
ROOT="$(dirname "$(dirname "$BIN")")"
# llama-quantize is not among build-llama-cpp.sh's targets: built once into the same tree.
[ -x "$BIN/llama-quantize" ] || "$ROOT/venv/bin/cmake" --build "$ROOT/build" -j "$(nproc)" --target llama-quantize >&2
CONVERT="$ROOT/src/llama.cpp/convert_hf_to_gguf.py"
export PYTHONPATH="$ROOT/src/llama.cpp/gguf-py"
mkdir -p "$OUT"

"$PY" "$CONVERT" "$SMOL" --outtype f32 --outfile "$OUT/smollm2-f32.gguf" >&2
for t in Q4_0 Q8_0 Q4_K_M; do
  "$BIN/llama-quantize" "$OUT/smollm2-f32.gguf" "$OUT/smollm2-$t.gguf" "$t" 2 >&2
done

QWEN="$OUT/qwen3-0.6b-random"
"$PY" - "$QWEN" "$SMOL" <<'EOF'
import pathlib, shutil, sys, torch
from transformers import Qwen3Config, Qwen3ForCausalLM
out, smol = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                  rope_theta=1000000.0, max_position_embeddings=40960, tie_word_embeddings=True)
torch.manual_seed(0)
Qwen3ForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
    if (smol / f).exists():
        shutil.copy(smol / f, out / f)
EOF
"$PY" "$CONVERT" "$QWEN" --outtype f32 --outfile "$OUT/qwen3-f32.gguf" >&2
for t in Q4_0 Q4_1 Q8_0 Q4_K_M; do
  "$BIN/llama-quantize" "$OUT/qwen3-f32.gguf" "$OUT/qwen3-$t.gguf" "$t" 2 >&2
done
ls "$OUT"/*.gguf
