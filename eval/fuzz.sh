#!/usr/bin/env bash
# Property-based fuzzing of everything that parses client or upstream input: the chat
# request view, the cache's context fingerprint, the Anthropic translators (request,
# response, stream events) and the SSE decoder. Each property gets CASES generated inputs
# (default 20000); the test suite itself runs proptest's default 256 as a smoke run.
#
#   bash eval/fuzz.sh            # 20000 cases per property
#   CASES=200000 bash eval/fuzz.sh
#
# Prints the executions and any failure proptest found (with its minimal input); a
# finding also leaves a proptest-regressions/ file next to the property's source.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CASES="${CASES:-20000}"
started=$(date +%s)
export PROPTEST_CASES="$CASES"
status=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo test --locked -p switchyard-gateway --lib fuzz:: 2>&1 | tee "$out/gateway.log" || status=1
cargo test --locked -p switchyard-providers --lib sse::tests::any_bytes 2>&1 | tee "$out/sse.log" || status=1
properties=$(cat "$out/gateway.log" "$out/sse.log" | grep -c '^test .* \(ok\|FAILED\)$' || true)
echo "== fuzz: $properties properties × $CASES cases = $((properties * CASES)) executions in $(( $(date +%s) - started )) s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [ "$status" -ne 0 ]; then
  echo "== fuzz: FINDINGS above (minimal failing inputs in the proptest output)"
  exit 1
fi
echo "== fuzz: no findings"
