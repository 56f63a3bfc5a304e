#!/usr/bin/env python3
"""Zarish Sphere Auth benchmark orchestrator (Python 3.11, standard library only).

Started by bench/run.sh after the release build. Measures, side by side with the same wrk settings
(-t2 -c64 by default, the same duration, the same bench/token.lua) on this machine's loopback:

  A. ours on SQLite: start-up to ready, idle RSS, client_credentials grants/s, introspections/s,
     p50/p99, peak RSS;
  B. ours on PostgreSQL (127.0.0.1:5432, a database of its own, zarish_bench_<random>, created
     with psql and dropped at the end, also on failure): the same load figures;
  C. the peer, oidc-provider (bench/peer/server.mjs, `npm ci` when node_modules is missing or
     stale), on a random port with a random client secret: grants/s, p50/p99, peak RSS (VmHWM of
     the node process). It does not introspect JWT access tokens, so there is no introspection
     figure for it; the summary says so and shows its answer.

Every server is started by this script on 127.0.0.1 and stopped on the way out (normal end, error,
Ctrl-C, SIGTERM/SIGHUP; and PR_SET_PDEATHSIG should this process be killed outright, in which case
bench/run.sh drops the database). Each load run is bounded by wrk's -d.

Steps:
  0. peer dependencies (npm ci only when needed); wait for the 1-minute load average to drop to
     --max-load (default 1.5, at most --load-wait seconds, polling every 30 s)
  1. SQLite: fresh temp data dir; `zarish serve --demo` once to create the data, then --starts
     restarts on the existing data, each timed from spawn to the first GET /ready = 200
  2. SQLite load: idle RSS, warm-up, grants, introspections, peak RSS
  3. PostgreSQL: CREATE DATABASE; first start creates schema and demo data; then the same load
  4. peer: start, idle RSS, warm-up, grants, peak RSS; one introspection attempt, reported
  5. optional (--log-compare): SQLite again with ZARISH_LOG=warn, to show what the per-request log
     line costs
  6. one summary table with a column per server, the ratios and the targets

Exit status: 0 when every load run finished with only good answers; 2 when a load run had bad
answers or socket errors; 1 on a set-up failure (a scenario that could not run); with --strict
also 3 when a target is missed.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEER_DIR = BENCH_DIR / "peer"
HOST = "127.0.0.1"

# Issue-2 targets (ours, SQLite).
TARGET_GRANTS = 10_000.0
TARGET_INTROSPECT = 20_000.0
TARGET_P99_MS = 10.0
TARGET_IDLE_RSS_MIB = 30.0
TARGET_READY_MS = 200.0
# Comparison targets.
TARGET_VS_PEER = 10.0       # ours grants/s >= 10 x peer grants/s
TARGET_SQLITE_OVER_PG = 2.0  # SQLite/PostgreSQL <= 2 (grants/s and introspections/s)

# Every token answer, ours and the peer's, starts with this (an ES256 JWT access token).
TOKEN_EXPECT = '{"access_token":"eyJ'
PEER_CLIENT_ID = "bench-backend"

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A set-up failure: the benchmark (or one scenario) cannot go on."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, turned into an exception so that cleanup runs."""


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# Child processes that die with us.

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if this orchestrator dies (even by SIGKILL), the
    # kernel sends the child SIGTERM.
    _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


# --------------------------------------------------------------------------------------------
# /proc helpers.


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"{key} not in /proc/{pid}/status")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_by_comm(comm: str) -> dict[int, float]:
    """CPU seconds (utime + stime) of every process whose command name is `comm`."""
    out: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        if name != comm:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def system_cpu_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    vals = [int(v) for v in parts[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already in user/nice
    return (total - idle) / CLK_TCK


def loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as f:
        a, b, c = f.read().split()[:3]
    return float(a), float(b), float(c)


def loadavg_str() -> str:
    return " ".join(f"{x:.2f}" for x in loadavg())


def mib(kib: int) -> float:
    return kib / 1024.0


# --------------------------------------------------------------------------------------------
# HTTP helpers (stdlib http.client, one connection per call).


def http_request(port: int, method: str, path: str, body: str | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 5.0
                 ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Servers under test (ours and the peer).


@dataclass
class Server:
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str]
    cwd: Path | None = None
    pidfile: Path | None = None
    proc: subprocess.Popen | None = None
    spawned_at: float = 0.0

    def start(self) -> None:
        logf = open(self.log_path, "ab")
        try:
            self.spawned_at = time.perf_counter()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         preexec_fn=_die_with_parent)
        finally:
            logf.close()
        if self.pidfile:
            self.pidfile.write_text(f"{self.proc.pid}\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float, interval: float = 0.003) -> float:
        """Polls GET /ready until 200; returns milliseconds since spawn."""
        assert self.proc is not None
        deadline = self.spawned_at + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"server exited with status {self.proc.returncode} before it was ready; "
                    f"log: {self.log_path}\n{tail(self.log_path)}")
            try:
                status, _ = http_request(self.port, "GET", "/ready", timeout=1.0)
                if status == 200:
                    return (time.perf_counter() - self.spawned_at) * 1000.0
            except (ConnectionError, OSError, http.client.HTTPException):
                pass
            if time.perf_counter() > deadline:
                raise BenchError(f"server not ready after {timeout:.0f} s; log: {self.log_path}"
                                 f"\n{tail(self.log_path)}")
            time.sleep(interval)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"  ! server {proc.pid} ignored SIGTERM for 10 s; killing it")
                proc.kill()
                proc.wait()
        if self.pidfile:
            self.pidfile.write_text("")


def zarish_server(binary: Path, data_dir: Path, port: int, log_path: Path,
                  pidfile: Path | None, env_extra: dict[str, str] | None = None,
                  database_url: str | None = None) -> Server:
    # No inherited ZARISH_* settings: the command line below is the whole configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARISH_")}
    env.update(env_extra or {})
    argv = [str(binary), "serve", "--demo", "--data-dir", str(data_dir),
            "--listen", f"{HOST}:{port}"]
    if database_url:
        argv += ["--database-url", database_url]
    return Server(argv, port, log_path, env, None, pidfile)


def peer_server(port: int, secret: str, log_path: Path, pidfile: Path | None) -> Server:
    node = shutil.which("node")
    if not node:
        raise BenchError("node not found (needed for the peer, bench/peer/server.mjs)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEER_")}
    env.update({"PEER_PORT": str(port), "PEER_CLIENT_SECRET": secret})
    return Server([node, str(PEER_DIR / "server.mjs")], port, log_path, env, PEER_DIR, pidfile)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


LIVE_SERVERS: list[Server] = []


def started(server: Server) -> Server:
    LIVE_SERVERS.append(server)
    server.start()
    return server


def stop(server: Server) -> None:
    server.stop()
    if server in LIVE_SERVERS:
        LIVE_SERVERS.remove(server)


def stop_all() -> None:
    for s in list(LIVE_SERVERS):
        try:
            stop(s)
        except Exception as exc:  # noqa: BLE001 - cleanup must go on
            log(f"  ! could not stop server: {exc}")


# --------------------------------------------------------------------------------------------
# PostgreSQL: a database of our own on 127.0.0.1, created and dropped with psql.


class PgDatabase:
    def __init__(self, args: argparse.Namespace, record: Path | None) -> None:
        self.port = args.pg_port
        self.user = args.pg_user
        self.admin_db = args.pg_admin_db
        self.name = f"zarish_bench_{secrets.token_hex(5)}"
        self.record = record  # file read by run.sh's backstop should we die without cleanup
        self.created = False

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@{HOST}:{self.port}/{self.name}"

    def psql(self, sql: str, timeout: float = 60.0) -> str:
        exe = shutil.which("psql")
        if not exe:
            raise BenchError("psql not found (needed to create the PostgreSQL test database)")
        cmd = [exe, "-h", HOST, "-p", str(self.port), "-U", self.user, "-d", self.admin_db,
               "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]
        env = dict(os.environ, PGCONNECT_TIMEOUT="5")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"psql timed out after {timeout:.0f} s: {sql}") from exc
        if r.returncode != 0:
            raise BenchError(f"psql failed ({r.returncode}) on {sql!r}: "
                             f"{(r.stderr or r.stdout).strip()}")
        return r.stdout.strip()

    def create(self) -> str:
        version = self.psql("SHOW server_version")
        if self.record:
            self.record.write_text(self.name + "\n")
        self.psql(f"CREATE DATABASE {self.name}")
        self.created = True
        return version

    def drop(self) -> None:
        if not self.created:
            return
        # WITH (FORCE): PostgreSQL 13+; ends any connection a dead server left behind.
        self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self.created = False
        if self.record:
            self.record.write_text("")
        log(f"  dropped database {self.name}")


# --------------------------------------------------------------------------------------------
# wrk.


@dataclass
class LoadResult:
    label: str
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non200: int
    unexpected_body: int
    first_bad_status: int
    socket_errors: dict[str, int]
    wrk_non2xx_line: int | None
    bad_sample: str
    server_cores: float
    db_cores: float
    wrk_cores: float
    other_cores: float
    log_bytes: int
    raw: str

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def bad(self) -> int:
        return self.non200 + self.unexpected_body

    @property
    def sock_errors(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def errors(self) -> int:
        return self.bad + self.sock_errors

    @property
    def good_rps(self) -> float:
        return max(self.requests - self.bad, 0) / self.duration_s if self.duration_s else 0.0


def run_wrk(args: argparse.Namespace, server: Server, label: str, path: str, script: str,
            env_extra: dict[str, str], duration: int, show: bool = True,
            db_comm: str | None = None) -> LoadResult:
    wrk = shutil.which("wrk")
    if not wrk:
        raise BenchError("wrk not found (bench/run.sh installs it with apt-get)")
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
           "--timeout", "5s", "-s", str(BENCH_DIR / script), f"http://{HOST}:{server.port}{path}"]
    env = dict(os.environ)
    env.update(env_extra)

    log_size0 = server.log_path.stat().st_size
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0 = proc_cpu_seconds(server.pid)
    db0 = cpu_by_comm(db_comm) if db_comm else {}
    sys0 = system_cpu_busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, preexec_fn=_die_with_parent)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"wrk ({label}) did not finish within {duration + 30} s")
    wall = time.perf_counter() - t0
    srv1 = proc_cpu_seconds(server.pid)
    db1 = cpu_by_comm(db_comm) if db_comm else {}
    sys1 = system_cpu_busy_seconds()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    log_size1 = server.log_path.stat().st_size

    if proc.returncode != 0:
        raise BenchError(f"wrk ({label}) exited with status {proc.returncode}:\n{out}")
    m = re.search(r"^ZB_RESULT (.*)$", out, re.M)
    if not m:
        raise BenchError(f"wrk ({label}) printed no ZB_RESULT line:\n{out}")
    kv = dict(item.split("=", 1) for item in m.group(1).split())
    sample = re.search(r"^ZB_BAD_SAMPLE (.*)$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)

    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    srv_cpu = srv1 - srv0
    # Processes that exited during the run are lost; new ones count from zero.
    db_cpu = sum(max(v - db0.get(pid, 0.0), 0.0) for pid, v in db1.items())
    other_cpu = max((sys1 - sys0) - srv_cpu - wrk_cpu - db_cpu, 0.0)

    res = LoadResult(
        label=label,
        requests=int(kv["requests"]),
        duration_s=int(kv["duration_us"]) / 1e6,
        p50_ms=int(kv["p50_us"]) / 1000.0,
        p90_ms=int(kv["p90_us"]) / 1000.0,
        p99_ms=int(kv["p99_us"]) / 1000.0,
        max_ms=int(kv["max_us"]) / 1000.0,
        non200=int(kv["non200"]),
        unexpected_body=int(kv["unexpected_body"]),
        first_bad_status=int(kv["first_bad_status"]),
        socket_errors={k[4:]: int(v) for k, v in kv.items() if k.startswith("err_")
                       and k != "err_status"},
        wrk_non2xx_line=int(non2xx.group(1)) if non2xx else None,
        bad_sample=sample.group(1) if sample else "",
        server_cores=srv_cpu / wall,
        db_cores=db_cpu / wall,
        wrk_cores=wrk_cpu / wall,
        other_cores=other_cpu / wall,
        log_bytes=log_size1 - log_size0,
        raw=out,
    )
    if show:
        log(f"  wrk {' '.join(cmd[1:])}")
        for line in out.rstrip().splitlines():
            if not line.startswith(("ZB_RESULT", "ZB_BAD_SAMPLE")):
                log(f"    | {line}")
        log(f"    => {res.rps:,.0f} req/s, p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms, "
            f"bad answers {res.bad}, socket errors {res.sock_errors}")
        log(f"    => CPU: server {res.server_cores:.2f} cores, "
            + (f"postgres {res.db_cores:.2f}, " if db_comm else "")
            + f"wrk {res.wrk_cores:.2f}, other processes {res.other_cores:.2f} "
            f"(of {os.cpu_count()}); server log {res.log_bytes / max(res.requests, 1):.0f} "
            f"B/request")
        if res.bad:
            log(f"    !! {res.non200} non-200 answers (first status {res.first_bad_status}), "
                f"{res.unexpected_body} 200 answers without the expected body; "
                f"sample: {res.bad_sample}")
    return res


# --------------------------------------------------------------------------------------------
# Scenarios.


def basic_auth(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: form-encode id and secret before joining them.
    enc = lambda s: urllib.parse.quote_plus(s, safe="")  # noqa: E731
    raw = f"{enc(client_id)}:{enc(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def demo_backend(data_dir: Path) -> tuple[str, str, str]:
    path = data_dir / "demo-credentials.json"
    try:
        creds = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from exc
    for c in creds.get("clients", []):
        if c.get("client_id") == "demo-backend":
            if not c.get("client_secret"):
                raise BenchError("demo-backend has no client_secret in demo-credentials.json")
            return c["client_id"], c["client_secret"], c.get("scope", "")
    raise BenchError("no demo-backend client in demo-credentials.json")


def fetch_token(port: int, path: str, auth: str) -> tuple[str, dict]:
    status, body = http_request(port, "POST", path, body="grant_type=client_credentials",
                                headers={"Authorization": auth,
                                         "Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        raise BenchError(f"POST {path} answered {status}: {body[:300]!r}")
    if not body.startswith(TOKEN_EXPECT.encode()):
        # The wrk script counts every answer without this as bad; better to stop here.
        raise BenchError(f"token answer does not start with {TOKEN_EXPECT}: {body[:300]!r}")
    answer = json.loads(body)
    if answer.get("token_type") != "Bearer" or not answer.get("access_token"):
        raise BenchError(f"unexpected token answer: {body[:300]!r}")
    return answer["access_token"], answer


def check_introspection(port: int, path: str, auth: str, token: str) -> dict:
    status, body = http_request(port, "POST", path,
                                body=urllib.parse.urlencode({"token": token}),
                                headers={"Authorization": auth,
                                         "Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        raise BenchError(f"POST {path} answered {status}: {body[:300]!r}")
    if b'"active":true' not in body:
        raise BenchError(f'introspection of a fresh token is not "active":true: {body[:300]!r}')
    return json.loads(body)


@dataclass
class ServerRun:
    key: str
    name: str
    ready_ms: list[float]
    ready_note: str
    idle_rss_mib: float
    peak_rss_mib: float
    rss_after_mib: float
    threads: int
    loadavg_before: str
    token: LoadResult
    introspect: LoadResult | None
    notes: list[str] = field(default_factory=list)


def load_scenario(args: argparse.Namespace, key: str, name: str, srv: Server, auth: str,
                  token_path: str = "/token", introspect_path: str | None = "/introspect",
                  db_comm: str | None = None, ready_ms: list[float] | None = None,
                  ready_note: str = "", probe=None) -> ServerRun:
    la = loadavg_str()
    log(f"\n== Load: {name} (load average {la})")
    started(srv)
    try:
        this_ready = srv.wait_ready(args.ready_timeout)
        log(f"  ready after {this_ready:.1f} ms (pid {srv.pid}); settling {args.settle} s")
        if ready_ms is None:
            ready_ms, ready_note = [this_ready], "1 start"
        time.sleep(args.settle)
        idle_rss = mib(proc_status_kib(srv.pid, "VmRSS"))
        log(f"  idle VmRSS {idle_rss:.1f} MiB")

        token, answer = fetch_token(srv.port, token_path, auth)
        log(f"  sample token: {len(token)} chars, expires_in {answer.get('expires_in')}, "
            f"scope {answer.get('scope')!r}")
        token_env = {"ZB_AUTH": auth, "ZB_BODY": "grant_type=client_credentials",
                     "ZB_EXPECT": TOKEN_EXPECT}
        intro_env: dict[str, str] = {}
        if introspect_path:
            sample = check_introspection(srv.port, introspect_path, auth, token)
            log(f"  introspection: active={sample.get('active')}, "
                f"client_id={sample.get('client_id')}, scope={sample.get('scope')!r}")
            intro_env = {"ZB_AUTH": auth, "ZB_BODY": urllib.parse.urlencode({"token": token}),
                         "ZB_EXPECT": '"active":true'}
        notes = [probe(srv, token)] if probe else []

        if args.warmup > 0:
            log(f"  warm-up: {args.warmup} s of {token_path} (not counted)")
            run_wrk(args, srv, "warmup", token_path, "token.lua", token_env, args.warmup,
                    show=False)
        log(f"  client_credentials grants, {args.duration} s:")
        tok = run_wrk(args, srv, "token", token_path, "token.lua", token_env, args.duration,
                      db_comm=db_comm)
        intro = None
        if introspect_path:
            log(f"  introspections, {args.duration} s:")
            intro = run_wrk(args, srv, "introspect", introspect_path, "introspect.lua",
                            intro_env, args.duration, db_comm=db_comm)

        if srv.proc is not None and srv.proc.poll() is not None:
            raise BenchError(f"server died during the load; log {srv.log_path}")
        peak = mib(proc_status_kib(srv.pid, "VmHWM"))
        after = mib(proc_status_kib(srv.pid, "VmRSS"))
        nthreads = proc_status_kib(srv.pid, "Threads")
        log(f"  VmHWM (peak RSS) {peak:.1f} MiB, VmRSS now {after:.1f} MiB, threads {nthreads}")
        return ServerRun(key, name, ready_ms, ready_note, idle_rss, peak, after, nthreads, la,
                         tok, intro, notes)
    finally:
        stop(srv)


def sqlite_scenario(args: argparse.Namespace, tmp: Path, pidfile: Path | None
                    ) -> tuple[ServerRun, str, Path]:
    data_dir = tmp / "data-sqlite"
    port = free_port()
    log(f"\n== Ours on SQLite: data {data_dir}, server at http://{HOST}:{port}")
    t0 = time.perf_counter()
    srv = started(zarish_server(args.binary, data_dir, port, tmp / "sqlite-create.log", pidfile))
    try:
        create_ms = srv.wait_ready(args.ready_timeout)
    finally:
        stop(srv)
    log(f"  first start (creates database, keys, demo data): ready after {create_ms:.0f} ms, "
        f"stopped after {(time.perf_counter() - t0) * 1000:.0f} ms in all")
    client_id, secret, scope = demo_backend(data_dir)
    auth = basic_auth(client_id, secret)
    log(f"  client {client_id}, scope {scope!r}")

    log(f"\n== Start-up time to ready on existing data ({args.starts} starts, "
        f"polling /ready every 3 ms)")
    ready: list[float] = []
    ready_logged: list[int] = []
    for i in range(args.starts):
        lp = tmp / f"sqlite-start{i}.log"
        srv = started(zarish_server(args.binary, data_dir, port, lp, pidfile))
        try:
            ms = srv.wait_ready(args.ready_timeout)
        finally:
            stop(srv)
        ready.append(ms)
        m = re.search(r"startup_ms[=:\"]+(\d+)", lp.read_text(errors="replace"))
        if m:
            ready_logged.append(int(m.group(1)))
        log(f"  start {i + 1}: {ms:.1f} ms" + (f" (server logs startup_ms={m.group(1)})"
                                               if m else ""))
    log(f"  median {statistics.median(ready):.1f} ms")
    note = f"median of {len(ready)}"
    if ready_logged:
        note += f"; server's own startup_ms {', '.join(map(str, ready_logged))}"

    run = load_scenario(args, "sqlite", "ours (SQLite)",
                        zarish_server(args.binary, data_dir, port, tmp / "sqlite-load.log",
                                      pidfile), auth, ready_ms=ready, ready_note=note)
    run.notes.append("start-up samples (ms, spawn to first /ready 200): "
                     + ", ".join(f"{x:.1f}" for x in ready))
    return run, auth, data_dir


def pg_scenario(args: argparse.Namespace, tmp: Path, pidfile: Path | None, db: PgDatabase
                ) -> ServerRun:
    version = db.create()
    data_dir = tmp / "data-pg"
    port = free_port()
    log(f"\n== Ours on PostgreSQL {version}: database {db.name} ({db.url}), "
        f"data dir {data_dir} (master key, demo credentials), server at http://{HOST}:{port}")
    t0 = time.perf_counter()
    srv = started(zarish_server(args.binary, data_dir, port, tmp / "pg-create.log", pidfile,
                                database_url=db.url))
    try:
        create_ms = srv.wait_ready(args.ready_timeout)
    finally:
        stop(srv)
    log(f"  first start (migrations, keys, demo data): ready after {create_ms:.0f} ms, "
        f"stopped after {(time.perf_counter() - t0) * 1000:.0f} ms in all")
    client_id, secret, scope = demo_backend(data_dir)
    auth = basic_auth(client_id, secret)
    log(f"  client {client_id}, scope {scope!r}")
    run = load_scenario(args, "pg", "ours (PostgreSQL)",
                        zarish_server(args.binary, data_dir, port, tmp / "pg-load.log", pidfile,
                                      database_url=db.url),
                        auth, db_comm="postgres")
    run.notes.append(f"first start on the empty database {create_ms:.0f} ms; start-up figure is "
                     f"one start on existing data")
    return run


# ---- the peer


def peer_deps_status() -> str:
    """'' when bench/peer/node_modules matches package-lock.json, else why it does not."""
    try:
        pkg = json.loads((PEER_DIR / "package.json").read_text())
        lock = json.loads((PEER_DIR / "package-lock.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read bench/peer/package.json or package-lock.json: {exc}")
    hidden_path = PEER_DIR / "node_modules" / ".package-lock.json"
    if not hidden_path.is_file():
        return "node_modules is missing"
    try:
        hidden = json.loads(hidden_path.read_text())
    except (OSError, ValueError):
        return "node_modules/.package-lock.json is unreadable"
    root = lock.get("packages", {}).get("", {})
    if root.get("dependencies", {}) != pkg.get("dependencies", {}):
        return "package.json and package-lock.json disagree (npm ci will say more)"
    want = {k: v for k, v in lock.get("packages", {}).items() if k}
    have = hidden.get("packages", {})
    for k, v in want.items():
        h = have.get(k)
        if h is None:
            if v.get("optional"):
                continue
            return f"{k} is not installed"
        if h.get("version") != v.get("version"):
            return f"{k} is {h.get('version')}, the lock file wants {v.get('version')}"
        if not (PEER_DIR / k / "package.json").is_file():
            return f"{k}/package.json is missing"
    extra = set(have) - set(want)
    if extra:
        return f"node_modules has packages the lock file does not list: {sorted(extra)[:3]}"
    return ""


def ensure_peer_deps() -> None:
    why = peer_deps_status()
    if not why:
        log("== Peer: bench/peer/node_modules is up to date with package-lock.json "
            "(npm ci skipped)")
        return
    npm = shutil.which("npm")
    if not npm:
        raise BenchError(f"npm not found, and the peer needs `npm ci` ({why})")
    log(f"== Peer: npm ci --silent in bench/peer ({why})")
    t0 = time.perf_counter()
    try:
        r = subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=PEER_DIR,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("npm ci in bench/peer did not finish within 600 s") from exc
    if r.returncode != 0:
        raise BenchError(f"npm ci in bench/peer failed ({r.returncode}):\n"
                         f"{(r.stderr or r.stdout)[-2000:]}")
    why = peer_deps_status()
    if why:
        raise BenchError(f"after npm ci, bench/peer/node_modules is still not right: {why}")
    log(f"  done in {time.perf_counter() - t0:.0f} s")


def peer_scenario(args: argparse.Namespace, tmp: Path, pidfile: Path | None) -> ServerRun:
    port = free_port()
    secret = secrets.token_urlsafe(24)
    auth = basic_auth(PEER_CLIENT_ID, secret)
    lp = tmp / "peer.log"
    srv = peer_server(port, secret, lp, pidfile)
    version = "?"
    try:
        version = json.loads((PEER_DIR / "node_modules" / "oidc-provider" / "package.json")
                             .read_text()).get("version", "?")
    except (OSError, ValueError):
        pass
    node_v = subprocess.run([srv.argv[0], "--version"], capture_output=True, text=True,
                            timeout=10).stdout.strip()
    name = "peer (oidc-provider)"
    args.peer_version = f"oidc-provider {version} on node {node_v}, bench/peer/server.mjs"
    log(f"\n== Peer: oidc-provider {version} on node {node_v}, http://{HOST}:{port}, "
        f"client {PEER_CLIENT_ID} with a random secret")

    def probe(server: Server, token: str) -> str:
        # Introspection is enabled in the peer, but it refuses JWT access tokens; show its answer.
        st, body = http_request(server.port, "POST", "/token/introspection",
                                body=urllib.parse.urlencode({"token": token}),
                                headers={"Authorization": auth,
                                         "Content-Type": "application/x-www-form-urlencoded"})
        note = (f"POST /token/introspection of its own JWT access token answered {st}: "
                f"{body[:160].decode(errors='replace')}")
        log(f"  {note}")
        return note

    run = load_scenario(args, "peer", name, srv, auth, token_path="/token",
                        introspect_path=None, probe=probe)
    if b"ready http://" not in lp.read_bytes():
        run.notes.append("! the peer did not print its 'ready http://...' line")
    tl = tail(lp, 5)
    if "server_error" in tl:
        run.notes.append(f"peer log: {tl}")
    return run


# --------------------------------------------------------------------------------------------
# Load average gate, machine info, summary.


def wait_for_quiet(args: argparse.Namespace) -> str:
    """Waits (polling every 30 s, at most --load-wait s) for the 1-minute load average to drop
    to --max-load. Returns a line for the summary."""
    first = loadavg_str()
    la1 = loadavg()[0]
    if la1 <= args.max_load:
        log(f"== Load average {first} (1-min {la1:.2f} <= {args.max_load}); going ahead")
        return f"{first} (<= {args.max_load}, no wait)"
    log(f"== Load average {first}: 1-min {la1:.2f} > {args.max_load}; waiting up to "
        f"{args.load_wait:.0f} s for it to drop (polling every 30 s)")
    t0 = time.monotonic()
    while la1 > args.max_load and time.monotonic() - t0 < args.load_wait:
        time.sleep(min(30.0, max(args.load_wait - (time.monotonic() - t0), 1.0)))
        la1 = loadavg()[0]
        log(f"  {time.monotonic() - t0:.0f} s: load average {loadavg_str()}")
    waited = time.monotonic() - t0
    now = loadavg_str()
    if la1 <= args.max_load:
        log(f"  dropped to {la1:.2f} after {waited:.0f} s; going ahead")
        return f"{first} at first, {now} after waiting {waited:.0f} s"
    log(f"  !! still {la1:.2f} after {waited:.0f} s; going ahead anyway (figures understated)")
    return f"{first} at first, still {now} after waiting {waited:.0f} s (NOT quiet)"


def machine_info(binary: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    info["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    info["nproc"] = f"{len(os.sched_getaffinity(0))} (online {os.cpu_count()})"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["kernel"] = platform.release()

    def cmd_out(cmd: list[str], cwd: Path | None = None) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=cwd)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    repo = BENCH_DIR.parent
    rev = cmd_out(["git", "rev-parse", "--short", "HEAD"], repo)
    dirty = cmd_out(["git", "status", "--porcelain", "--untracked-files=no"], repo)
    info["commit"] = rev + (" (+ uncommitted changes)" if dirty not in ("", "?") else "")
    if os.environ.get("BENCH_BUILD_COMMIT"):
        # What the tree was when run.sh started the build; it can differ from the above when
        # someone edits or commits in the same work tree during a long build.
        info["commit_at_build"] = os.environ["BENCH_BUILD_COMMIT"]
    info["binary"] = f"{binary} ({cmd_out([str(binary), '--version'])})"
    info["wrk"] = cmd_out(["wrk", "-v"])
    return info


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def render_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    w = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = "+-" + "-+-".join("-" * x for x in w) + "-+"
    out = [line, "| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(header)) + " |", line]
    for r in rows:
        if r and r[0] == "--":
            out.append(line)
            continue
        out.append("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
    out.append(line)
    return out


@dataclass
class Target:
    what: str
    measured: str
    ok: bool | None  # None: could not be evaluated


def targets(runs: dict[str, ServerRun]) -> list[Target]:
    t: list[Target] = []
    sq, pg, peer = runs.get("sqlite"), runs.get("pg"), runs.get("peer")
    if sq:
        t.append(Target(f"ours (SQLite) grants/s >= {TARGET_GRANTS:,.0f}",
                        f"{sq.token.rps:,.0f}/s", sq.token.rps >= TARGET_GRANTS))
        if sq.introspect:
            t.append(Target(f"ours (SQLite) introspections/s >= {TARGET_INTROSPECT:,.0f}",
                            f"{sq.introspect.rps:,.0f}/s",
                            sq.introspect.rps >= TARGET_INTROSPECT))
        t.append(Target(f"ours (SQLite) grants p99 < {TARGET_P99_MS:.0f} ms",
                        f"{sq.token.p99_ms:.2f} ms", sq.token.p99_ms < TARGET_P99_MS))
        if sq.introspect:
            t.append(Target(f"ours (SQLite) introspection p99 < {TARGET_P99_MS:.0f} ms",
                            f"{sq.introspect.p99_ms:.2f} ms",
                            sq.introspect.p99_ms < TARGET_P99_MS))
        t.append(Target(f"ours (SQLite) idle RSS < {TARGET_IDLE_RSS_MIB:.0f} MB",
                        f"{sq.idle_rss_mib:.1f} MiB", sq.idle_rss_mib < TARGET_IDLE_RSS_MIB))
        med = statistics.median(sq.ready_ms)
        t.append(Target(f"ours (SQLite) start-up to ready < {TARGET_READY_MS:.0f} ms",
                        f"{med:.1f} ms (median)", med < TARGET_READY_MS))
    for key, label in (("sqlite", "SQLite"), ("pg", "PostgreSQL")):
        r = runs.get(key)
        q = ratio(r.token.rps if r else None, peer.token.rps if peer else None)
        t.append(Target(f"ours ({label}) grants/s >= {TARGET_VS_PEER:.0f}x peer",
                        fmt_ratio(q), None if q is None else q >= TARGET_VS_PEER))
    q = ratio(sq.token.rps if sq else None, pg.token.rps if pg else None)
    t.append(Target(f"grants/s SQLite/PostgreSQL <= {TARGET_SQLITE_OVER_PG:.0f}",
                    fmt_ratio(q), None if q is None else q <= TARGET_SQLITE_OVER_PG))
    q = ratio(sq.introspect.rps if sq and sq.introspect else None,
              pg.introspect.rps if pg and pg.introspect else None)
    t.append(Target(f"introspections/s SQLite/PostgreSQL <= {TARGET_SQLITE_OVER_PG:.0f}",
                    fmt_ratio(q), None if q is None else q <= TARGET_SQLITE_OVER_PG))
    return t


def summary(args: argparse.Namespace, info: dict[str, str], runs: dict[str, ServerRun],
            extra_runs: list[ServerRun], failures: dict[str, str]) -> tuple[bool, bool]:
    """Prints the summary; returns (no load errors, every target met)."""
    cols = [("sqlite", "ours (SQLite)"), ("pg", "ours (PostgreSQL)"),
            ("peer", "peer (oidc-provider)")]

    def cell(key: str, fn) -> str:
        r = runs.get(key)
        if r is None:
            return "FAILED" if key in failures else "skipped"
        v = fn(r)
        return "n/a" if v is None else v

    def rate(res: LoadResult | None) -> str | None:
        if res is None:
            return None
        s = f"{res.rps:,.0f}/s"
        if res.errors:
            s += f" ({res.errors} ERRORS, {res.good_rps:,.0f}/s good)"
        return s

    nointro = "n/a (refuses JWT)"
    rows: list[tuple[str, ...]] = [
        ("client_credentials grants/s",
         *[cell(k, lambda r: rate(r.token)) for k, _ in cols]),
        ("  grants p50", *[cell(k, lambda r: f"{r.token.p50_ms:.2f} ms") for k, _ in cols]),
        ("  grants p99", *[cell(k, lambda r: f"{r.token.p99_ms:.2f} ms") for k, _ in cols]),
        ("introspections/s",
         *[cell(k, lambda r: rate(r.introspect) if r.introspect else nointro)
           for k, _ in cols]),
        ("  introspection p50",
         *[cell(k, lambda r: f"{r.introspect.p50_ms:.2f} ms" if r.introspect else nointro)
           for k, _ in cols]),
        ("  introspection p99",
         *[cell(k, lambda r: f"{r.introspect.p99_ms:.2f} ms" if r.introspect else nointro)
           for k, _ in cols]),
        ("idle RSS (VmRSS)", *[cell(k, lambda r: f"{r.idle_rss_mib:.1f} MiB") for k, _ in cols]),
        ("peak RSS (VmHWM)", *[cell(k, lambda r: f"{r.peak_rss_mib:.1f} MiB") for k, _ in cols]),
        ("start-up to ready",
         *[cell(k, lambda r: f"{statistics.median(r.ready_ms):.1f} ms "
                             f"({r.ready_note.split(';')[0]})") for k, _ in cols]),
        ("server CPU during grants",
         *[cell(k, lambda r: f"{r.token.server_cores:.2f} cores"
                + (f" + pg {r.token.db_cores:.2f}" if r.key == "pg" else ""))
           for k, _ in cols]),
        ("bad answers / socket errors",
         *[cell(k, lambda r: " + ".join(f"{x.bad}/{x.sock_errors}"
                                        for x in (r.token, r.introspect) if x is not None))
           for k, _ in cols]),
        ("load average before", *[cell(k, lambda r: r.loadavg_before) for k, _ in cols]),
    ]

    sq, pg, peer = runs.get("sqlite"), runs.get("pg"), runs.get("peer")
    ratio_rows: list[tuple[str, ...]] = [
        ("ours (SQLite) / peer, grants/s",
         fmt_ratio(ratio(sq.token.rps if sq else None, peer.token.rps if peer else None))),
        ("ours (PostgreSQL) / peer, grants/s",
         fmt_ratio(ratio(pg.token.rps if pg else None, peer.token.rps if peer else None))),
        ("PostgreSQL / SQLite, grants/s",
         fmt_ratio(ratio(pg.token.rps if pg else None, sq.token.rps if sq else None))),
        ("PostgreSQL / SQLite, introspections/s",
         fmt_ratio(ratio(pg.introspect.rps if pg and pg.introspect else None,
                         sq.introspect.rps if sq and sq.introspect else None))),
    ]

    tg = targets(runs)
    target_rows = [(x.what, x.measured,
                    "n/a" if x.ok is None else verdict(x.ok)) for x in tg]

    out = ["", "=" * 96, "Zarish Sphere Auth benchmark summary: ours (SQLite), ours (PostgreSQL), "
           "peer (oidc-provider)", "=" * 96]
    for k in ("date", "commit_at_build", "commit", "binary", "cpu", "nproc", "memory", "kernel",
              "loadavg", "postgresql", "peer", "wrk"):
        if k in info:
            out.append(f"  {k:<17} {info[k]}")
    out.append(f"  {'load':<17} wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
               f"--latency -s bench/token.lua (and introspect.lua), after {args.warmup} s "
               f"warm-up; wrk and servers share the same {os.cpu_count()} cores, loopback")
    out.append("")
    out.extend(render_table(("metric", *[c[1] for c in cols]), rows))
    out.append("  Introspection is not comparable: oidc-provider refuses to introspect JWT access "
               "tokens (they are not stored).")
    out.append("")
    out.extend(render_table(("ratio", "value"), ratio_rows))
    out.append("")
    out.extend(render_table(("target", "measured", "verdict"), target_rows))

    out.append("")
    out.append("  Per run (req/s | p50 | p99 | max | bad answers | socket errors | "
               "CPU cores server/postgres/wrk/other | log B/req):")
    for run in [*runs.values(), *extra_runs]:
        for res in (run.token, run.introspect):
            if res is None:
                continue
            out.append(
                f"    {run.name:<30} {res.label:<10} {res.rps:>9,.0f} | "
                f"{res.p50_ms:6.2f} ms | {res.p99_ms:6.2f} ms | {res.max_ms:7.2f} ms | "
                f"{res.bad:>6} | {res.sock_errors:>4} | "
                f"{res.server_cores:.2f}/{res.db_cores:.2f}/{res.wrk_cores:.2f}/"
                f"{res.other_cores:.2f} | {res.log_bytes / max(res.requests, 1):.0f}")
        out.append(f"    {run.name:<30} RSS idle {run.idle_rss_mib:.1f} MiB, "
                   f"peak {run.peak_rss_mib:.1f} MiB, after load {run.rss_after_mib:.1f} MiB, "
                   f"{run.threads} threads; start-up {run.ready_note}")
        for n in run.notes:
            out.append(f"      {n}")
    if sq and sq.introspect and extra_runs and extra_runs[0].introspect:
        b = extra_runs[0]
        out.append("")
        out.append("  Cost of the per-request log line (SQLite, default logging vs "
                   f"ZARISH_LOG=warn): grants {sq.token.rps:,.0f} vs {b.token.rps:,.0f}/s "
                   f"({pct(sq.token.rps, b.token.rps)}), introspections "
                   f"{sq.introspect.rps:,.0f} vs {b.introspect.rps:,.0f}/s "
                   f"({pct(sq.introspect.rps, b.introspect.rps)})")
    all_runs = [*runs.values(), *extra_runs]
    results = [r for run in all_runs for r in (run.token, run.introspect) if r is not None]
    busy = max((r.other_cores for r in results), default=0.0)
    if busy > 0.25:
        out.append("")
        out.append(f"  !! The machine was not quiet: other processes used up to {busy:.2f} of "
                   f"{os.cpu_count()} cores during the load runs; throughput and latency are "
                   f"understated.")
    errors = [(run.name, r) for run in all_runs for r in (run.token, run.introspect)
              if r is not None and r.errors]
    if errors:
        out.append("")
        for name, r in errors:
            out.append(f"  !! ERRORS in {r.label} ({name}): {r.non200} non-200 (first status "
                       f"{r.first_bad_status}), {r.unexpected_body} without expected body, "
                       f"socket errors {r.socket_errors}; wrk 'Non-2xx or 3xx': "
                       f"{r.wrk_non2xx_line or 0}; sample: {r.bad_sample}")
    if failures:
        out.append("")
        for k, msg in failures.items():
            out.append(f"  !! {k} scenario FAILED: {msg.splitlines()[0] if msg else ''}")
    out.append("=" * 96)
    log("\n".join(out))
    all_met = all(x.ok for x in tg if x.ok is not None) and not any(x.ok is None for x in tg)
    return not errors, all_met


def pct(base: float, other: float) -> str:
    if base <= 0:
        return "n/a"
    return f"{(other - base) / base * 100:+.0f}% without the request log"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, required=True)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of un-counted /token load")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--starts", type=int, default=5, help="timed restarts for start-up time")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before idle RSS")
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--log-compare", action="store_true",
                    help="also run SQLite with ZARISH_LOG=warn to show the request log's cost")
    ap.add_argument("--no-quiet-run", action="store_true",
                    help=argparse.SUPPRESS)  # the old opt-out; the ZARISH_LOG=warn run is now off
    ap.add_argument("--no-pg", action="store_true", help="skip ours on PostgreSQL")
    ap.add_argument("--no-peer", action="store_true", help="skip the peer (oidc-provider)")
    ap.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL port on 127.0.0.1")
    ap.add_argument("--pg-user", default="root")
    ap.add_argument("--pg-admin-db", default="test",
                    help="database psql connects to for CREATE/DROP DATABASE")
    ap.add_argument("--max-load", type=float, default=1.5,
                    help="wait until the 1-minute load average is at most this")
    ap.add_argument("--load-wait", type=float, default=600.0,
                    help="longest wait (s) for --max-load; then go ahead anyway")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = ap.parse_args()

    if not args.binary.is_file():
        raise BenchError(f"no binary at {args.binary}")
    pidfile = Path(os.environ["BENCH_PIDFILE"]) if os.environ.get("BENCH_PIDFILE") else None
    dbfile = Path(os.environ["BENCH_PGDB_FILE"]) if os.environ.get("BENCH_PGDB_FILE") else None

    tmp = Path(tempfile.mkdtemp(prefix="zarish-bench-"))
    db = PgDatabase(args, dbfile)
    ok = False
    failures: dict[str, str] = {}
    try:
        log(f"== Temp dir (data, server logs): {tmp}")
        if not args.no_peer:
            try:
                ensure_peer_deps()
            except BenchError as exc:
                failures["peer"] = str(exc)
                log(f"  !! peer set-up failed: {exc}")
        info = machine_info(args.binary)
        info["loadavg"] = wait_for_quiet(args)

        runs: dict[str, ServerRun] = {}
        extra: list[ServerRun] = []
        sq, sq_auth, sq_data = sqlite_scenario(args, tmp, pidfile)
        runs["sqlite"] = sq

        if not args.no_pg:
            try:
                runs["pg"] = pg_scenario(args, tmp, pidfile, db)
                info["postgresql"] = f"{HOST}:{args.pg_port}, database {db.name} (dropped)"
            except BenchError as exc:
                failures["PostgreSQL"] = str(exc)
                log(f"\n  !! PostgreSQL scenario failed: {exc}")
            finally:
                stop_all()
                try:
                    db.drop()
                except BenchError as exc:
                    failures["PostgreSQL drop"] = str(exc)
                    log(f"  !! could not drop database {db.name}: {exc}")

        if not args.no_peer and "peer" not in failures:
            try:
                runs["peer"] = peer_scenario(args, tmp, pidfile)
                info["peer"] = getattr(args, "peer_version", "?")
            except BenchError as exc:
                failures["peer"] = str(exc)
                log(f"\n  !! peer scenario failed: {exc}")
            finally:
                stop_all()

        if args.log_compare:
            extra.append(load_scenario(
                args, "sqlite-warn", "ours (SQLite, ZARISH_LOG=warn)",
                zarish_server(args.binary, sq_data, free_port(), tmp / "sqlite-warn.log",
                              pidfile, {"ZARISH_LOG": "warn"}),
                sq_auth))

        clean, all_met = summary(args, info, runs, extra, failures)
        ok = clean and not failures
        if failures:
            log("RESULT: a scenario could not run (see above); its column is missing.")
            return 1
        if not clean:
            log("RESULT: load runs had errors; the throughput figures above are not valid.")
            return 2
        if args.strict and not all_met:
            log("RESULT: completed; some targets missed (--strict).")
            return 3
        log("RESULT: completed; every load run had only good answers.")
        return 0
    finally:
        stop_all()
        try:
            db.drop()
        except BenchError as exc:
            log(f"  !! could not drop database {db.name}: {exc}")
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"(temp dir with server logs kept: {tmp})")


def _on_signal(signum: int, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"\nBENCHMARK FAILED: {exc}")
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"\nbenchmark interrupted ({exc or 'SIGINT'}); servers stopped")
        sys.exit(130)
