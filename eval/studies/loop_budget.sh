#!/usr/bin/env bash
# What 3,000 requests with 10% exploration can teach any router on the loop's worlds (see
# the docstring of loop_budget.py): imports open7b and llmrouter from ../shared/datasets
# with the release binary, embeds the studied prompts (`switchyard embed`, for the k-means
# cluster rows), sets up numpy in eval/studies/.venv, runs the study and writes
# eval/results/loop-budget.json. Safe to rerun (imports and embeddings are kept in
# .cache/studies).
#
#   bash eval/studies/loop_budget.sh [--splits 3] [--draws 5]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bash models/fetch.sh encoder
cargo build --release --locked -p switchyard --bin switchyard
bin="${CARGO_TARGET_DIR:-target}/release/switchyard"
venv=eval/studies/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet numpy
dir=.cache/studies
mkdir -p "$dir"
worlds=()
for w in open7b llmrouter; do
  src=../shared/datasets/routing/$w
  if [ ! -d "$src" ]; then
    echo "SKIPPED $w: $src is absent" >&2
    continue
  fi
  [ -s "$dir/$w.jsonl" ] || "$bin" datasets import --from "$w" "$src" --out "$dir/$w.jsonl" >/dev/null
  worlds+=(--world "$w=$dir/$w.jsonl")
done
[ ${#worlds[@]} -gt 0 ] || { echo "loop_budget: no world to study (../shared/datasets/routing is absent)" >&2; exit 1; }
"$venv/bin/python" eval/studies/loop_budget.py "${worlds[@]}" --texts-out "$dir"
embeddings=()
for spec in "${worlds[@]}"; do
  [ "$spec" = --world ] && continue
  w=${spec%%=*}
  if [ ! -s "$dir/$w.embeddings.jsonl" ]; then
    echo "embedding the $w prompts (notes on truncated prompts: $dir/$w.embed.log)" >&2
    "$bin" embed < "$dir/$w.texts.jsonl" > "$dir/$w.embeddings.jsonl.part" 2> "$dir/$w.embed.log"
    mv "$dir/$w.embeddings.jsonl.part" "$dir/$w.embeddings.jsonl"
  fi
  embeddings+=(--embeddings "$w=$dir/$w.embeddings.jsonl")
done
"$venv/bin/python" eval/studies/loop_budget.py "${worlds[@]}" "${embeddings[@]}" \
  --out eval/results/loop-budget.json "$@"
