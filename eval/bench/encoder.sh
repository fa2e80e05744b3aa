#!/usr/bin/env bash
# Side-by-side encoder benchmark: Switchyard vs sentence-transformers (PyTorch CPU).
# Installs sentence-transformers into eval/bench/.venv (git-ignored), fetches the model,
# builds the Rust bench in release mode, then runs eval/bench/encoder.py.
#
#   bash eval/bench/encoder.sh [--threads 1,2] [--json out.json]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bash models/fetch.sh encoder
venv=eval/bench/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check sentence-transformers==6.2.0
cargo build --release --locked -p switchyard-embed --example bench_encoder
target="${CARGO_TARGET_DIR:-target}"
"$venv/bin/python" eval/bench/encoder.py --bench-binary "$target/release/examples/bench_encoder" "$@"
