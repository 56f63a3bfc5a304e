"""Starts one demo server on loopback for the whole test session and stops it afterwards.

The binary comes from $ZARISH_BIN, or ../../target/debug/zarish relative to this file.
"""

from __future__ import annotations

import os

import pytest

from zarish_testkit import Browser, Server, server_binary, start_server, stop_server

# Loopback only: never send the tests' traffic through a proxy from the environment
# (requests and urllib, which PyJWKClient uses, both read these).
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))

_servers: list[Server] = []


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    binary = server_binary()
    if not binary.is_file():
        pytest.fail(f"zarish binary not found at {binary}: run `cargo build` or set ZARISH_BIN")
    root = tmp_path_factory.mktemp("zarish")
    data_dir = root / "data"
    data_dir.mkdir()
    running = start_server(binary, data_dir, root / "server.log")
    _servers.append(running)
    yield running
    stop_server(running)
    _servers.remove(running)


@pytest.fixture
def browser(server) -> Browser:
    """A fresh browser (own cookie jar, so no SSO session) for one test."""
    return Browser(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the end of the server log to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _servers:
        report.sections.append(("zarish server log (tail)", _servers[-1].log_tail()))
