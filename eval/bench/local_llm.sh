#!/usr/bin/env bash
# Side-by-side local-model benchmark: Switchyard's candle GGUF runner vs llama.cpp
# (PyPI llama-cpp-python, built from source here) on the same SmolLM2-135M-Instruct Q4_1
# file, 1 and 2 threads, in one run. Prints prompt-processing and generation tokens/s and
# the ratios; writes eval/results/local-llm-bench.json.
#
#   bash eval/bench/local_llm.sh [--repeats 5]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bash models/fetch.sh local-llm
venv=eval/bench/.venv-llamacpp
if ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  python3 -m venv "$venv"
  # No binary wheel on PyPI for this platform: this compiles llama.cpp (several minutes).
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" MAKEFLAGS=-j2 \
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'llama-cpp-python==0.3.36'
fi
cargo build --release --locked -p switchyard-local --example bench_local
target="${CARGO_TARGET_DIR:-target}"
"$venv/bin/python" eval/bench/local_llm.py --bench-binary "$target/release/examples/bench_local" "$@"
