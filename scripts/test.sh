#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetches what is missing (the encoder weights),
# checks formatting and lints, then runs every test. Safe to run any number of times.
#
#   bash scripts/test.sh
#
# Tests that need ../shared/datasets skip with a visible message when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash models/fetch.sh

# The official openai Python client, for the gateway's end-to-end test (tests/gateway_e2e.rs
# finds it in .cache/pyenv; without it that part of the test says SKIPPED).
if ! .cache/pyenv/bin/python -c 'import openai' 2>/dev/null; then
  echo "== installing the openai Python client into .cache/pyenv"
  python3 -m venv .cache/pyenv
  .cache/pyenv/bin/pip install --quiet --disable-pip-version-check 'openai==3.54.0'
fi

# Redis, for the shared-state tests (crates/state, tests/replicas.rs): they start their own
# redis-server on a free loopback port and say SKIPPED without one.
if ! command -v redis-server >/dev/null; then
  echo "== installing redis-server (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || true
  elif command -v sudo >/dev/null; then sudo apt-get install -y -qq redis-server >/dev/null || true
  fi
  # The package starts a system-wide server; the tests use their own.
  command -v redis-server >/dev/null || echo "NOTE: redis-server could not be installed: the shared-state tests will say SKIPPED"
fi

# A real Qdrant server (../shared/tools/qdrant) on loopback for the cache's behaviour suite
# and the multi-replica test; stopped when this script exits.
qdrant_tool=../shared/tools/qdrant/start.sh
if [ -f "$qdrant_tool" ]; then
  ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
  # shellcheck disable=SC2086
  if eval "$(bash "$qdrant_tool" $ports)"; then
    trap 'kill "$QDRANT_PID" 2>/dev/null || true; rm -rf "$QDRANT_DIR"' EXIT
    export SWITCHYARD_TEST_QDRANT_URL=$QDRANT_URL
    echo "== Qdrant server for the tests at $QDRANT_URL (pid $QDRANT_PID)"
  else
    echo "NOTE: the Qdrant server in $qdrant_tool did not start: its tests will say SKIPPED"
  fi
else
  echo "NOTE: $qdrant_tool is absent: the remote-cache tests will say SKIPPED"
fi

if [ ! -d ../shared/datasets ]; then
  echo "NOTE: ../shared/datasets is absent: the tests that need the shared data will skip (they say so with --nocapture)"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
# Dependencies are built at opt-level 3 in the dev profile (see Cargo.toml), so the
# encoder runs at speed here without a second, release build.
cargo test --workspace --locked --no-fail-fast
