#!/usr/bin/env bash
# The gateway's `auto` capacity, before (candle's BERT) and after (Switchyard's own encoder
# kernels), next to the same load pinned: distinct prompts at rising fixed rates to an nginx
# upstream; the capacity is the highest rate with every request answered and p99 under the
# bound. Prints a table per rate and writes eval/results/auto-capacity.json.
#
#   bash eval/bench/auto_capacity.sh [--seconds 5] [--p99-ms 100]
#
# Installs nginx-light (Debian) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v nginx >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -q nginx-light || { $sudo apt-get update -q && $sudo apt-get install -y -q nginx-light; }
fi
bash models/fetch.sh encoder
cargo build --release --locked -p switchyard --bin switchyard
cargo build --release --locked -p switchyard-gateway --example loadgen
target="${CARGO_TARGET_DIR:-target}"
python3 eval/bench/auto_capacity.py --switchyard "$target/release/switchyard" \
  --loadgen "$target/release/examples/loadgen" "$@"
