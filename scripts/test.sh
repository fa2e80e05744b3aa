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
