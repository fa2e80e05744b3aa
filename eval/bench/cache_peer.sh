#!/usr/bin/env bash
# GPTCache side by side with Switchyard's semantic cache: the same held-out pairs, the same
# encoder (all-MiniLM-L6-v2), the same thresholds. Prints both precision/recall curves and
# writes eval/results/cache-qqp.{json,png} and eval/results/cache-peer-gptcache.json.
#
#   bash eval/bench/cache_peer.sh [PAIRS]     (default: ../shared/datasets/cache/qqp/qqp_pairs.json)
#
# Needs the encoder (bash models/fetch.sh encoder) and a built binary (SWITCHYARD_BIN, default
# target/release/switchyard, else target/debug/switchyard). Installs GPTCache 0.1.44 and
# faiss-cpu into eval/bench/.venv-gptcache on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${1:-../shared/datasets/cache/qqp/qqp_pairs.json}
BIN=${SWITCHYARD_BIN:-target/release/switchyard}
[ -x "$BIN" ] || BIN=target/debug/switchyard
[ -x "$BIN" ] || { echo "build first: cargo build --release -p switchyard" >&2; exit 1; }
[ -f "$PAIRS" ] || { echo "no pair file at $PAIRS (the shared datasets are absent)" >&2; exit 1; }
VENV=eval/bench/.venv-gptcache
if ! "$VENV/bin/python" -c "import gptcache, faiss, sqlalchemy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "gptcache==0.1.44" "faiss-cpu==1.15.1" "sqlalchemy>=2" numpy
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p eval/results
"$BIN" eval cache --pairs "$PAIRS" --split test --json \
  --plot eval/results/cache-qqp.png --export-pairs "$tmp/pairs.jsonl" > eval/results/cache-qqp.json
"$VENV/bin/python" - "$tmp/pairs.jsonl" > "$tmp/texts.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    p = json.loads(line)
    for k in ("text_a", "text_b"):
        print(json.dumps({"text": p[k]}))
PY
# `embed` truncates like sentence-transformers (head only), the cache keeps head and tail:
# identical for inputs under 256 tokens, which every QQP question is.
"$BIN" embed < "$tmp/texts.jsonl" > "$tmp/embeddings.jsonl"
"$VENV/bin/python" eval/bench/cache_peer.py --pairs "$tmp/pairs.jsonl" \
  --embeddings "$tmp/embeddings.jsonl" --out eval/results/cache-peer-gptcache.json
