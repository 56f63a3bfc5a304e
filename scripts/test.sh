#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, Rust unit and integration tests, and the
# Python interoperability tests (authlib, PyJWT) against the real server binary.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo build --locked
cargo test --locked

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
ZARISH_BIN="$PWD/target/debug/zarish" .venv/bin/python -m pytest -q tests/python
