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
# Debian's Chromium and ChromeDriver for the real-browser sign-in (tests/python/test_browser_mfa.py).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
ZARISH_BIN="$PWD/target/debug/zarish" .venv/bin/python -m pytest -q tests/python
