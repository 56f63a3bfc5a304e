#!/usr/bin/env bash
# Zarish Sphere Auth benchmark: builds the release binary, then measures side by side, with the same
# wrk settings on this machine's loopback:
#   - ours on SQLite: start-up to ready, idle and peak RSS, client_credentials grants/s,
#     introspections/s, p50/p99;
#   - ours on PostgreSQL (127.0.0.1:5432, user root; a database of its own, zarish_bench_<random>,
#     created with psql from the admin database "test" and dropped at the end): the same load;
#   - the peer, oidc-provider (bench/peer; `npm ci` when node_modules is missing or stale):
#     grants/s, p50/p99, peak RSS (it does not introspect JWT access tokens).
# Every server is started on 127.0.0.1 by bench/bench.py and stopped on the way out; all load runs
# are bounded (wrk -d). Before measuring it waits (at most 10 min) for the 1-minute load average
# to drop to 1.5. The run takes about 1.5 minutes after the build (plus any such wait).
#
# Usage: bench/run.sh [bench.py options]     e.g. bench/run.sh --duration 5 --keep
#   --duration N     seconds per measured wrk run (default 10)
#   --connections N  wrk connections (default 64); --threads N wrk threads (default 2)
#   --starts N       timed restarts for start-up time (default 5)
#   --log-compare    also run SQLite with ZARISH_LOG=warn (the cost of the request log line)
#   --no-pg          skip PostgreSQL;  --no-peer  skip the peer
#   --pg-port N, --pg-user U, --pg-admin-db D   PostgreSQL on 127.0.0.1 (default 5432, root, test)
#   --max-load X     load average to wait for (default 1.5); --load-wait S (default 600)
#   --keep           keep the temp dir with the server logs
#   --strict         exit 3 when a target is missed
# Needs: cargo, python3 (3.11, stdlib only), wrk (installed from Debian's packages when missing),
# psql and a PostgreSQL server on 127.0.0.1:5432, node and npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

pidfile="$(mktemp /tmp/zarish-bench-pid.XXXXXX)"
dbfile="$(mktemp /tmp/zarish-bench-db.XXXXXX)"
export BENCH_PIDFILE="$pidfile" BENCH_PGDB_FILE="$dbfile"
bench_pid=""

# Is PID one of the servers bench.py starts (ours, or the peer's node process)?
is_bench_server() {
    local pid="$1" exe
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    [[ "$exe" == "$root/target/release/zarish"* ]] && return 0
    [[ "$exe" == */node* ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null \
        | grep -qF "$here/peer/server.mjs" && return 0
    return 1
}

cleanup() {
    # bench.py stops its servers and drops its database itself (and the servers get SIGTERM if it
    # dies); this is the backstop.
    local pid db
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && is_bench_server "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    db="$(cat "$dbfile" 2>/dev/null || true)"
    if [[ "$db" =~ ^zarish_bench_[0-9a-f]+$ ]]; then
        echo "== Dropping leftover database $db"
        PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U root -d test -X -q -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" </dev/null || true
    fi
    rm -f "$pidfile" "$dbfile"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

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

# In the background so that a TERM/HUP sent to this script reaches bench.py at once (through the
# cleanup above) instead of after the run. A background job ignores SIGINT in a non-interactive
# shell, so Ctrl-C goes through the INT trap too (which TERMs bench.py; it cleans up the same way).
python3 "$here/bench.py" --binary "$root/target/release/zarish" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
