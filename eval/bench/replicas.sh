#!/usr/bin/env bash
# The cost of shared state, side by side in one run: behind the same nginx balancer, one
# replica keeping budgets, rate limits and request ids in memory, one keeping them in Redis,
# and three replicas sharing one Redis, all forwarding a pinned model to an nginx upstream
# with a fixed completion. wrk measures peak RPS (64 connections); an open-loop generator
# (loadgen) measures latency at a fixed rate in interleaved rounds. Prints the added p50/p99
# and the throughput ratios; writes eval/results/replicas-bench.json.
#
#   bash eval/bench/replicas.sh [--seconds 8] [--rate 500] [--rounds 3]
#
# Installs nginx-light, wrk and redis-server (Debian) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v redis-server >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -q nginx-light wrk redis-server || { $sudo apt-get update -q && $sudo apt-get install -y -q nginx-light wrk redis-server; }
fi
cargo build --release --locked -p switchyard --bin switchyard
cargo build --release --locked -p switchyard-gateway --example loadgen
target="${CARGO_TARGET_DIR:-target}"
python3 eval/bench/replicas.py --switchyard "$target/release/switchyard" \
  --loadgen "$target/release/examples/loadgen" "$@"
