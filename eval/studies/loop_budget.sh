#!/usr/bin/env bash
# What 3,000 requests with 10% exploration can teach any router on the loop's worlds (see
# the docstring of loop_budget.py): imports open7b and llmrouter from ../shared/datasets
# with the release binary, then runs the study (plain Python, no packages) and writes
# eval/results/loop-budget.json. Safe to rerun.
#
#   bash eval/studies/loop_budget.sh [--splits 3] [--draws 5]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

cargo build --release --locked -p switchyard --bin switchyard
bin="${CARGO_TARGET_DIR:-target}/release/switchyard"
mkdir -p .cache/studies
worlds=()
for w in open7b llmrouter; do
  src=../shared/datasets/routing/$w
  if [ ! -d "$src" ]; then
    echo "SKIPPED $w: $src is absent" >&2
    continue
  fi
  "$bin" datasets import --from "$w" "$src" --out ".cache/studies/$w.jsonl" >/dev/null
  worlds+=(--world "$w=.cache/studies/$w.jsonl")
done
[ ${#worlds[@]} -gt 0 ] || { echo "loop_budget: no world to study (../shared/datasets/routing is absent)" >&2; exit 1; }
python3 eval/studies/loop_budget.py "${worlds[@]}" --out eval/results/loop-budget.json "$@"
