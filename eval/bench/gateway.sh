#!/usr/bin/env bash
# Side-by-side gateway benchmark in one run: an nginx upstream returning a fixed completion,
# hit (a) directly, (b) through Switchyard with a pinned model, (c) through Switchyard with
# `auto` (encoder + heads + scorer per request), (d) through the LiteLLM proxy pinned to the
# same upstream. wrk measures peak RPS; a fixed-rate open-loop generator (loadgen) measures
# latency at 1k RPS, with nginx proxying to itself as the reference cost of one extra hop.
# Prints each and the ratios; writes eval/results/gateway-bench.json.
#
#   bash eval/bench/gateway.sh [--seconds 10]
#
# Installs nginx-light and wrk (Debian) when missing and LiteLLM into eval/bench/.venv-litellm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -q nginx-light wrk || { $sudo apt-get update -q && $sudo apt-get install -y -q nginx-light wrk; }
fi
venv=eval/bench/.venv-litellm
if [ ! -x "$venv/bin/litellm" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]==1.106.2'
fi
bash models/fetch.sh encoder
cargo build --release --locked -p switchyard --bin switchyard
cargo build --release --locked -p switchyard-gateway --example loadgen
target="${CARGO_TARGET_DIR:-target}"
python3 eval/bench/gateway.py --switchyard "$target/release/switchyard" \
  --loadgen "$target/release/examples/loadgen" --litellm "$venv/bin/litellm" "$@"
