#!/usr/bin/env bash
# Cross-validated study of what prompt-only routers reach on RouterBench (see the
# docstring of routerbench_cv.py). Needs ../shared/datasets (or ROUTERBENCH=DIR) and the
# release binary; sets up numpy/scipy/scikit-learn in eval/studies/.venv. Safe to rerun.
#
#   bash eval/studies/routerbench_cv.sh [--folds 5] [--seed 0]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

data="${ROUTERBENCH:-../shared/datasets/routing/routerbench}"
if [ ! -d "$data" ]; then
  echo "routerbench_cv: no RouterBench data at $data; set ROUTERBENCH=DIR (the folder with the *_train.csv/*_test.csv files)" >&2
  exit 1
fi
venv=eval/studies/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet numpy scipy scikit-learn

bash models/fetch.sh
cargo build --release --locked -p switchyard
bin="${CARGO_TARGET_DIR:-target}/release/switchyard"
mkdir -p .cache/studies
records=.cache/studies/routerbench.jsonl
"$bin" datasets import --from routerbench "$data" --out "$records"
# Embeds every prompt of the file into .cache/embeddings (the kNN baseline's neighbours
# come from the same file), which the study then reads; reruns find them cached.
"$bin" eval routing --test "$records" > /dev/null
"$venv/bin/python" eval/studies/routerbench_cv.py --records "$records" --cache .cache/embeddings \
  --out eval/results/routerbench-cv.json "$@"
