"""Starts one demo server on loopback for the whole test session and stops it afterwards, and
lets modules start servers of their own (`fresh_server`).

The binary comes from $ZARISH_BIN, or ../../target/debug/zarish relative to this file.

Every test talks to its servers from 127.0.0.1, and the server blocks an address after 5 failed
sign-ins (password or second factor) within 15 minutes. The shared `server` therefore sees only
one deliberate failure in the whole session (test_authorization_code.py's wrong password); tests
that need more failures start a server of their own with `fresh_server`.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from zarish_testkit import Browser, Server, server_binary, start_server, stop_server

# Loopback only: never send the tests' traffic through a proxy from the environment
# (requests and urllib, which PyJWKClient uses, both read these).
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))

_servers: dict[str, Server] = {}  # name -> running server, for the log tails of failures


@contextlib.contextmanager
def _running(tmp_path_factory, name: str):
    binary = server_binary()
    if not binary.is_file():
        pytest.fail(f"zarish binary not found at {binary}: run `cargo build` or set ZARISH_BIN")
    root = tmp_path_factory.mktemp(f"zarish-{name}")
    data_dir = root / "data"
    data_dir.mkdir()
    running = start_server(binary, data_dir, root / "server.log")
    _servers[name] = running
    try:
        yield running
    finally:
        stop_server(running)
        del _servers[name]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    """The demo server that most tests share."""
    with _running(tmp_path_factory, "shared") as running:
        yield running


@pytest.fixture(scope="session")
def fresh_server(tmp_path_factory):
    """`with fresh_server("name") as s:` runs another demo server (own data directory, own
    port, so its own users, factors and failure counts) for the length of the block."""
    return lambda name: _running(tmp_path_factory, name)


@pytest.fixture
def browser(server) -> Browser:
    """A fresh browser (own cookie jar, so no SSO session) for one test."""
    return Browser(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the end of each running server's log to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, running in _servers.items():
            report.sections.append((f"zarish server log, {name} (tail)", running.log_tail()))
