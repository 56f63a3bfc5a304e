#!/usr/bin/env bash
# Zarish Sphere Auth benchmark: builds the release binary, then measures start-up time, idle and
# peak RSS, client_credentials grants/s and introspections/s against servers it starts itself on
# 127.0.0.1. All load runs are bounded (wrk -d); the whole run takes about a minute after the build.
#
# Usage: bench/run.sh [bench.py options]     e.g. bench/run.sh --duration 5 --keep
#   --duration N     seconds per measured wrk run (default 10)
#   --connections N  wrk connections (default 64); --threads N wrk threads (default 2)
#   --starts N       timed restarts for start-up time (default 5)
#   --no-quiet-run   skip the second load run with ZARISH_LOG=warn
#   --keep           keep the temp dir with the server logs
#   --strict         exit 3 when a target is missed
# Needs: cargo, python3 (3.11, stdlib only), wrk (installed from Debian's packages when missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

pidfile="$(mktemp /tmp/zarish-bench-pid.XXXXXX)"
export BENCH_PIDFILE="$pidfile"

cleanup() {
    # bench.py stops its servers itself (and they get SIGTERM if it dies); this is the backstop.
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && [[ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" == "$root/target/release/zarish"* ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v wrk >/dev/null 2>&1; then
    echo "== Installing wrk (Debian package)"
    apt-get update -qq && apt-get install -y -qq wrk
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 is required" >&2; exit 1; }

build_commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    build_commit+=" (+ uncommitted changes)"
fi
export BENCH_BUILD_COMMIT="$build_commit"

echo "== Building the release binary (cargo build --release --locked)"
(cd "$root" && cargo build --release --locked)

python3 "$here/bench.py" --binary "$root/target/release/zarish" "$@"
