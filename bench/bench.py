#!/usr/bin/env python3
"""Zarish Sphere Auth benchmark orchestrator (Python 3.11, standard library only).

Started by bench/run.sh after the release build. Everything runs against servers that this script
starts itself on 127.0.0.1, each load run is bounded by wrk's -d, and every server it started is
stopped on the way out (normal end, error, Ctrl-C, SIGTERM; and PR_SET_PDEATHSIG should this
process be killed outright).

Steps:
  1. fresh temp data dir; `zarish serve --demo` once to create the data, wait for GET /ready, stop;
     then N restarts on the existing data, each timed from spawn to the first /ready = 200
  2. demo-backend's secret from DIR/demo-credentials.json
  3. idle RSS (VmRSS) of a fresh server after a short settle
  4. client_credentials grants/s with wrk + bench/token.lua
  5. introspections/s with wrk + bench/introspect.lua (one token, checked active first)
  6. peak RSS (VmHWM) after the load
  7. the same load again on a server started with ZARISH_LOG=warn, to show what the per-request
     log line costs
  8. a summary table against the targets

Exit status: 0 when every load run finished with only 200 answers; 2 when a load run had bad
answers or socket errors; 1 on a set-up failure; with --strict also 3 when a target is missed.
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
HOST = "127.0.0.1"

TARGET_GRANTS = 10_000.0
TARGET_INTROSPECT = 20_000.0
TARGET_P99_MS = 10.0
TARGET_IDLE_RSS_MIB = 30.0
TARGET_READY_MS = 200.0

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A set-up failure: the benchmark cannot go on."""


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


def system_cpu_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    vals = [int(v) for v in parts[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already in user/nice
    return (total - idle) / CLK_TCK


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
# The server under test.


@dataclass
class Server:
    binary: Path
    data_dir: Path
    port: int
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    pidfile: Path | None = None
    proc: subprocess.Popen | None = None
    spawned_at: float = 0.0

    def start(self) -> None:
        env = dict(os.environ)
        env.pop("ZARISH_LOG", None)
        env.update(self.env_extra)
        cmd = [str(self.binary), "serve", "--demo", "--data-dir", str(self.data_dir),
               "--listen", f"{HOST}:{self.port}"]
        logf = open(self.log_path, "ab")
        try:
            self.spawned_at = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=env,
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
                raise BenchError(f"server not ready after {timeout:.0f} s; log: {self.log_path}")
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
    def errors(self) -> int:
        return self.bad + sum(self.socket_errors.values())

    @property
    def good_rps(self) -> float:
        return max(self.requests - self.bad, 0) / self.duration_s if self.duration_s else 0.0


def run_wrk(args: argparse.Namespace, server: Server, label: str, path: str, script: str,
            env_extra: dict[str, str], duration: int, show: bool = True) -> LoadResult:
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
    other_cpu = max((sys1 - sys0) - srv_cpu - wrk_cpu, 0.0)

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
            f"bad answers {res.bad}, socket errors {sum(res.socket_errors.values())}")
        log(f"    => CPU: server {res.server_cores:.2f} cores, wrk {res.wrk_cores:.2f}, "
            f"other processes {res.other_cores:.2f} (of {os.cpu_count()}); "
            f"server log {res.log_bytes / max(res.requests, 1):.0f} B/request")
        if res.bad:
            log(f"    !! {res.non200} non-200 answers (first status {res.first_bad_status}), "
                f"{res.unexpected_body} 200 answers without the expected body; "
                f"sample: {res.bad_sample}")
    return res


# --------------------------------------------------------------------------------------------
# Scenario.


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


def fetch_token(port: int, auth: str) -> str:
    status, body = http_request(port, "POST", "/token", body="grant_type=client_credentials",
                                headers={"Authorization": auth,
                                         "Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        raise BenchError(f"POST /token answered {status}: {body[:300]!r}")
    answer = json.loads(body)
    if answer.get("token_type") != "Bearer" or not answer.get("access_token"):
        raise BenchError(f"unexpected token answer: {body[:300]!r}")
    return answer["access_token"]


def check_introspection(port: int, auth: str, token: str) -> dict:
    status, body = http_request(port, "POST", "/introspect",
                                body=urllib.parse.urlencode({"token": token}),
                                headers={"Authorization": auth,
                                         "Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        raise BenchError(f"POST /introspect answered {status}: {body[:300]!r}")
    if b'"active":true' not in body:
        raise BenchError(f'introspection of a fresh token is not "active":true: {body[:300]!r}')
    return json.loads(body)


@dataclass
class ServerRun:
    name: str
    idle_rss_mib: float
    peak_rss_mib: float
    rss_after_mib: float
    threads: int
    token: LoadResult
    introspect: LoadResult


def load_scenario(args: argparse.Namespace, name: str, binary: Path, data_dir: Path, port: int,
                  tmp: Path, pidfile: Path | None, env_extra: dict[str, str], auth: str
                  ) -> ServerRun:
    log(f"\n== Load: server with {name}")
    srv = started(Server(binary, data_dir, port, tmp / f"server-{name.split()[0]}.log",
                         env_extra, pidfile))
    ready_ms = srv.wait_ready(args.ready_timeout)
    log(f"  ready after {ready_ms:.1f} ms (pid {srv.pid}); settling {args.settle} s")
    time.sleep(args.settle)
    idle_rss = mib(proc_status_kib(srv.pid, "VmRSS"))
    log(f"  idle VmRSS {idle_rss:.1f} MiB")

    token = fetch_token(port, auth)
    sample = check_introspection(port, auth, token)
    log(f"  sample token: {len(token)} chars; introspection: active={sample.get('active')}, "
        f"client_id={sample.get('client_id')}, scope={sample.get('scope')!r}")

    token_env = {"ZB_AUTH": auth, "ZB_BODY": "grant_type=client_credentials", "ZB_EXPECT": ""}
    intro_env = {"ZB_AUTH": auth, "ZB_BODY": urllib.parse.urlencode({"token": token}),
                 "ZB_EXPECT": '"active":true'}

    if args.warmup > 0:
        log(f"  warm-up: {args.warmup} s of /token (not counted)")
        run_wrk(args, srv, "warmup", "/token", "token.lua", token_env, args.warmup, show=False)
    log(f"  client_credentials grants, {args.duration} s:")
    tok = run_wrk(args, srv, "token", "/token", "token.lua", token_env, args.duration)
    log(f"  introspections, {args.duration} s:")
    intro = run_wrk(args, srv, "introspect", "/introspect", "introspect.lua", intro_env,
                    args.duration)

    peak = mib(proc_status_kib(srv.pid, "VmHWM"))
    after = mib(proc_status_kib(srv.pid, "VmRSS"))
    nthreads = proc_status_kib(srv.pid, "Threads")
    log(f"  VmHWM (peak RSS) {peak:.1f} MiB, VmRSS now {after:.1f} MiB, threads {nthreads}")
    if srv.proc is not None and srv.proc.poll() is not None:
        raise BenchError(f"server died during the load; log {srv.log_path}")
    stop(srv)
    return ServerRun(name, idle_rss, peak, after, nthreads, tok, intro)


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
    with open("/proc/loadavg") as f:
        info["loadavg_at_start"] = " ".join(f.read().split()[:3])

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
    return "PASS" if ok else "MISS"


def summary(args: argparse.Namespace, info: dict[str, str], ready: list[float],
            ready_logged: list[int], runs: list[ServerRun]) -> bool:
    main = runs[0]
    rows: list[tuple[str, str, str, str]] = []

    def load_rows(res: LoadResult, what: str, target: float) -> None:
        errs = res.errors
        rate = f"{res.rps:,.0f}/s"
        v = verdict(res.rps >= target)
        if errs:
            rate += f"  ({errs} ERRORS, {res.good_rps:,.0f}/s good)"
            v = "ERROR"
        rows.append((what, rate, f">= {target:,.0f}/s", v))
        rows.append((f"  p50 latency ({args.connections} conn)", f"{res.p50_ms:.2f} ms", "", ""))
        rows.append((f"  p99 latency ({args.connections} conn)", f"{res.p99_ms:.2f} ms",
                     f"< {TARGET_P99_MS:.0f} ms", verdict(res.p99_ms < TARGET_P99_MS)))

    load_rows(main.token, "client_credentials grants", TARGET_GRANTS)
    load_rows(main.introspect, "introspections", TARGET_INTROSPECT)
    rows.append(("idle RSS (VmRSS)", f"{main.idle_rss_mib:.1f} MiB",
                 f"< {TARGET_IDLE_RSS_MIB:.0f} MB", verdict(main.idle_rss_mib < TARGET_IDLE_RSS_MIB)))
    rows.append(("peak RSS under load (VmHWM)", f"{main.peak_rss_mib:.1f} MiB", "-", ""))
    med = statistics.median(ready)
    rows.append((f"start-up to ready (median of {len(ready)})", f"{med:.1f} ms",
                 f"< {TARGET_READY_MS:.0f} ms", verdict(med < TARGET_READY_MS)))

    w = [max(len(r[i]) for r in rows + [("metric", "measured", "target", "")]) for i in range(4)]
    line = "+-" + "-+-".join("-" * x for x in w) + "-+"
    out = ["", "=" * 78, "Zarish Sphere Auth benchmark summary", "=" * 78]
    for k in ("date", "commit_at_build", "commit", "binary", "cpu", "nproc", "memory", "kernel",
              "loadavg_at_start", "wrk"):
        if k in info:
            out.append(f"  {k:<17} {info[k]}")
    out.append(f"  {'load':<17} wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
               f"--latency, wrk and server on the same {os.cpu_count()} cores, loopback")
    out.append(f"  {'server':<17} {main.name}")
    out.append("")
    out.append(line)
    out.append("| " + " | ".join(h.ljust(w[i]) for i, h in
                                  enumerate(("metric", "measured", "target", ""))) + " |")
    out.append(line)
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
    out.append(line)
    out.append(f"  start-up samples (ms, spawn to first /ready 200): "
               + ", ".join(f"{x:.1f}" for x in ready)
               + (f"; server's own startup_ms: {', '.join(map(str, ready_logged))}"
                  if ready_logged else ""))
    out.append("")
    out.append("  Per run (req/s | p50 | p99 | max | bad answers | socket errors | "
               "CPU server/wrk/other cores | log B/req):")
    for run in runs:
        for res in (run.token, run.introspect):
            se = sum(res.socket_errors.values())
            out.append(
                f"    {run.name:<26} {res.label:<10} {res.rps:>9,.0f} | {res.p50_ms:6.2f} ms | "
                f"{res.p99_ms:6.2f} ms | {res.max_ms:7.2f} ms | {res.bad:>6} | {se:>4} | "
                f"{res.server_cores:.2f}/{res.wrk_cores:.2f}/{res.other_cores:.2f} | "
                f"{res.log_bytes / max(res.requests, 1):.0f}")
        out.append(f"    {run.name:<26} RSS idle {run.idle_rss_mib:.1f} MiB, "
                   f"peak {run.peak_rss_mib:.1f} MiB, after load {run.rss_after_mib:.1f} MiB, "
                   f"{run.threads} threads")
    if len(runs) > 1:
        a, b = runs[0], runs[1]
        out.append("")
        out.append("  Cost of the per-request log line (default logging vs ZARISH_LOG=warn): "
                   f"grants {a.token.rps:,.0f} vs {b.token.rps:,.0f}/s "
                   f"({pct(a.token.rps, b.token.rps)}), introspections "
                   f"{a.introspect.rps:,.0f} vs {b.introspect.rps:,.0f}/s "
                   f"({pct(a.introspect.rps, b.introspect.rps)})")
    busy = max(r.other_cores for run in runs for r in (run.token, run.introspect))
    if busy > 0.25:
        out.append("")
        out.append(f"  !! The machine was not quiet: other processes used up to {busy:.2f} of "
                   f"{os.cpu_count()} cores during the load runs (load average at start "
                   f"{info.get('loadavg_at_start', '?')}); throughput and latency are understated.")
    errors = [(run.name, r) for run in runs for r in (run.token, run.introspect) if r.errors]
    if errors:
        out.append("")
        for name, r in errors:
            out.append(f"  !! ERRORS in {r.label} ({name}): {r.non200} non-200 (first status "
                       f"{r.first_bad_status}), {r.unexpected_body} without expected body, "
                       f"socket errors {r.socket_errors}; wrk 'Non-2xx or 3xx': "
                       f"{r.wrk_non2xx_line or 0}; sample: {r.bad_sample}")
    out.append("=" * 78)
    log("\n".join(out))
    return not errors


def pct(base: float, other: float) -> str:
    if base <= 0:
        return "n/a"
    return f"{(other - base) / base * 100:+.0f}% without the request log"


def all_targets_met(ready: list[float], run: ServerRun) -> bool:
    return (run.token.rps >= TARGET_GRANTS and run.introspect.rps >= TARGET_INTROSPECT
            and run.token.p99_ms < TARGET_P99_MS and run.introspect.p99_ms < TARGET_P99_MS
            and run.idle_rss_mib < TARGET_IDLE_RSS_MIB
            and statistics.median(ready) < TARGET_READY_MS)


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
    ap.add_argument("--no-quiet-run", action="store_true",
                    help="skip the second load run with ZARISH_LOG=warn")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = ap.parse_args()

    if not args.binary.is_file():
        raise BenchError(f"no binary at {args.binary}")
    pidfile = Path(os.environ["BENCH_PIDFILE"]) if os.environ.get("BENCH_PIDFILE") else None

    info = machine_info(args.binary)
    tmp = Path(tempfile.mkdtemp(prefix="zarish-bench-"))
    data_dir = tmp / "data"
    port = free_port()
    ok = False
    try:
        log(f"== Data: {data_dir}, server at http://{HOST}:{port}, logs in {tmp}")
        t0 = time.perf_counter()
        srv = started(Server(args.binary, data_dir, port, tmp / "server-create.log", {}, pidfile))
        create_ms = srv.wait_ready(args.ready_timeout)
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
            lp = tmp / f"server-start{i}.log"
            srv = started(Server(args.binary, data_dir, port, lp, {}, pidfile))
            ms = srv.wait_ready(args.ready_timeout)
            stop(srv)
            ready.append(ms)
            m = re.search(r"startup_ms[=:\"]+(\d+)", lp.read_text(errors="replace"))
            if m:
                ready_logged.append(int(m.group(1)))
            log(f"  start {i + 1}: {ms:.1f} ms" + (f" (server logs startup_ms={m.group(1)})"
                                                   if m else ""))
        log(f"  median {statistics.median(ready):.1f} ms")

        runs = [load_scenario(args, "default logging (info)", args.binary, data_dir, port, tmp,
                              pidfile, {}, auth)]
        if not args.no_quiet_run:
            runs.append(load_scenario(args, "ZARISH_LOG=warn", args.binary, data_dir, port, tmp,
                                      pidfile, {"ZARISH_LOG": "warn"}, auth))

        clean = summary(args, info, ready, ready_logged, runs)
        ok = clean
        if not clean:
            log("RESULT: load runs had errors; the throughput figures above are not valid.")
            return 2
        if args.strict and not all_targets_met(ready, runs[0]):
            log("RESULT: completed; some targets missed (--strict).")
            return 3
        return 0
    finally:
        stop_all()
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
