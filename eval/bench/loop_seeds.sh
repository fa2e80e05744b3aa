#!/usr/bin/env bash
# The learning loop (`switchyard eval loop`) on worlds built from the shared data, under
# several seeds, and a summary across them: every run is reproducible (one request at a
# time, exploration seeded), so seeds measure how much the figures move with the traffic
# drawn, and two builds can be compared seed by seed. Writes
# eval/results/loop-WORLD-sSEED.json (+ .png) and eval/results/loop-summary.json.
#
#   bash eval/bench/loop_seeds.sh [--worlds open7b,llmrouter] [--seeds 17,18,19] [-- extra eval-loop args]
#
# Needs ../shared/datasets/routing/WORLD (skips a world that is absent, saying so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

worlds=open7b,llmrouter
seeds=17,18,19
while [ $# -gt 0 ]; do
  case "$1" in
    --worlds) worlds=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

bash models/fetch.sh encoder
cargo build --release --locked -p switchyard --bin switchyard
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy, so a rebuild during the runs cannot swap the binary between seeds.
bin="$work/switchyard"
cp "${CARGO_TARGET_DIR:-target}/release/switchyard" "$bin"
reports=()
for w in ${worlds//,/ }; do
  src=../shared/datasets/routing/$w
  if [ ! -d "$src" ]; then
    echo "SKIPPED $w: $src is absent" >&2
    continue
  fi
  "$bin" datasets import --from "$w" "$src" --out "$work/$w.jsonl" >/dev/null
  for s in ${seeds//,/ }; do
    out=eval/results/loop-$w-s$s
    echo "== $w, seed $s" >&2
    "$bin" eval loop --world "$work/$w.jsonl" --prices "eval/prices/$w.json" --unknown-models \
      --requests 3000 --rounds 3 --explore 0.1 --max-prompts 6000 --seed "$s" \
      --out "$work/run-$w-$s" --plot "$out.png" --json "$@" > "$out.json"
    reports+=("$out.json")
  done
done
[ ${#reports[@]} -gt 0 ] || { echo "no world to run" >&2; exit 1; }
python3 eval/bench/loop_summary.py "${reports[@]}" --json eval/results/loop-summary.json
