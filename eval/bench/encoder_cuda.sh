#!/usr/bin/env bash
# The encoder on CUDA, for a machine with an NVIDIA GPU and the CUDA toolkit (nvcc): builds
# the `cuda` feature, runs the parity test against sentence-transformers' reference on the
# GPU, then the side-by-side benchmark with both sides on the GPU (sentence-transformers on
# PyTorch with CUDA), and the CPU run for comparison.
#
#   bash eval/bench/encoder_cuda.sh [--json out.json]
#
# CUDA builds compile candle's kernels for the local GPU (CUDA_COMPUTE_CAP, e.g. 90 for an
# H100/H200, is read from nvidia-smi when unset).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

command -v nvcc >/dev/null || { echo "encoder_cuda.sh: nvcc not found; install the CUDA toolkit" >&2; exit 1; }
if [ -z "${CUDA_COMPUTE_CAP:-}" ] && command -v nvidia-smi >/dev/null; then
  CUDA_COMPUTE_CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
  export CUDA_COMPUTE_CAP
fi
bash models/fetch.sh encoder
echo "== parity on CUDA (cosine >= 0.9999 to sentence-transformers)"
cargo test --release --locked -p switchyard-embed --features cuda --test parity -- --nocapture
echo "== benchmark on CUDA"
venv=eval/bench/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check sentence-transformers==6.2.0
cargo build --release --locked -p switchyard-embed --features cuda --example bench_encoder
target="${CARGO_TARGET_DIR:-target}"
"$venv/bin/python" eval/bench/encoder.py --bench-binary "$target/release/examples/bench_encoder" \
  --device cuda --threads 2 "$@"
