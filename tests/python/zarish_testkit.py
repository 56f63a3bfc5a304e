"""Helpers for the Python integration tests: the server process, a scripted browser that signs
in through the server's own HTML forms (password, then the second factor with pyotp), and token
checks built on authlib and PyJWT.

Everything talks to 127.0.0.1 only. Redirects to a client's redirect URI are never followed
(nothing listens there); the browser stops at them and hands the URL back.

Second factor: users of some roles must set up TOTP at their first sign-in (/login/enroll) and
give a code at every later one (/login/otp). The browser does both with pyotp, an implementation
independent of the server's, and remembers per server and user the TOTP key, the backup codes
not used yet and the last TOTP step the server accepted (`Server.factors`). The server accepts a
code only for a step newer than the last accepted one (replay defence, one step of skew either
side), so one user can sign in with TOTP at most twice per 30-second step: with the current
step's code, then with the next step's. After that the browser uses a backup code, and only when
none is left does it wait for the clock (a bounded wait that the suite is laid out never to need).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pyotp
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

HERE = Path(__file__).resolve().parent
DEFAULT_BIN = (HERE / ".." / ".." / "target" / "debug" / "zarish").resolve()
READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
HTTP_TIMEOUT_S = 30.0
TOTP_STEP_S = 30  # RFC 6238 time step, as the server uses it (SHA-1, 6 digits, skew of one step)


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A running `zarish serve --demo` on loopback."""

    process: subprocess.Popen
    issuer: str
    data_dir: Path
    log_path: Path
    creds: dict = field(default_factory=dict)
    # username -> what the tests know of that user's second factor on this server
    factors: dict[str, "Factor"] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.issuer + path

    @property
    def audience(self) -> str:
        return self.issuer + "/fhir"

    def client(self, client_id: str) -> dict:
        for c in self.creds["clients"]:
            if c["client_id"] == client_id:
                return c
        raise KeyError(client_id)

    def user(self, username: str) -> dict:
        for u in self.creds["users"]:
            if u["username"] == username:
                return u
        raise KeyError(username)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary() -> Path:
    return Path(os.environ.get("ZARISH_BIN") or DEFAULT_BIN)


def _child_env() -> dict:
    # The server reads ZARISH_* settings from the environment; none of the caller's may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARISH_")}
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def start_server(binary: Path, data_dir: Path, log_path: Path) -> Server:
    """Starts the demo server on a free loopback port and waits until /ready answers 200."""
    port = free_port()
    log = open(log_path, "ab")
    try:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--demo",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
        )
    finally:
        log.close()
    issuer = f"http://127.0.0.1:{port}"
    server = Server(process=process, issuer=issuer, data_dir=data_dir, log_path=log_path)

    deadline = time.monotonic() + READY_DEADLINE_S
    http = loopback_session()
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"zarish exited with status {process.returncode} before it was ready:\n"
                + server.log_tail()
            )
        try:
            if http.get(issuer + "/ready", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"zarish was not ready within {READY_DEADLINE_S:.0f}s:\n" + server.log_tail()
            )
        time.sleep(0.1)  # polling interval, not a timing assumption

    server.creds = json.loads((data_dir / "demo-credentials.json").read_text())
    return server


def stop_server(server: Server) -> int | None:
    """SIGTERM, then wait; SIGKILL only if it does not stop in time. Returns the exit status."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE_S)
    return process.returncode


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def loopback_session(session: requests.Session | None = None) -> requests.Session:
    """A requests session that ignores proxy settings from the environment."""
    session = session or requests.Session()
    session.trust_env = False
    return session


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL; each must appear once."""
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for name, values in parsed.items():
        assert len(values) == 1, f"parameter {name!r} repeated in {url}"
    return {k: v[0] for k, v in parsed.items()}


def hidden_input(page: str, name: str) -> str:
    m = re.search(
        r'<input[^>]*\bname="' + re.escape(name) + r'"[^>]*\bvalue="([^"]*)"', page
    )
    assert m, f"no hidden input {name!r} in page:\n{page[:2000]}"
    return html.unescape(m.group(1))


# --------------------------------------------------------------------------------------------
# The second factor (pyotp)
# --------------------------------------------------------------------------------------------

SECRET_RE = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')
OTPAUTH_RE = re.compile(r'<a href="(otpauth://[^"]+)"')
BACKUP_CODE_RE = re.compile(r"<li><code>([^<]+)</code></li>")
CONTINUE_RE = re.compile(r'<a href="([^"]+)">Continue</a>')
BACKUP_LEFT_RE = re.compile(r"You have (\d+) backup codes? left\.")
ENROLL_PATH = "/login/enroll"
OTP_PATH = "/login/otp"


def totp_step(at: float | None = None) -> int:
    """The RFC 6238 time step of `at` (default: now)."""
    return int((time.time() if at is None else at) // TOTP_STEP_S)


@dataclass
class Factor:
    """What the tests know of one user's TOTP factor on one server."""

    secret: str  # base32, as the enrolment page shows it
    uri: str  # the otpauth:// URI of the enrolment page
    backup_codes: list[str] = field(default_factory=list)  # shown at enrolment, not used yet
    last_step: int | None = None  # the newest step the server accepted from us

    @property
    def totp(self) -> pyotp.TOTP:
        return pyotp.TOTP(self.secret)  # SHA-1, 6 digits, 30 s: pyotp's defaults

    def code_for_step(self, step: int) -> str:
        return self.totp.at(step * TOTP_STEP_S)

    def step_of(self, code: str) -> int | None:
        """The step within the server's window (now, one either side) that `code` is for."""
        now = totp_step()
        for step in (now - 1, now, now + 1):
            if self.code_for_step(step) == code.strip():
                return step
        return None

    def fresh_step(self) -> int | None:
        """A step the server will accept a code for: the current one, or the next one when the
        current one is spent. None when both are spent."""
        now = totp_step()
        step = now if self.last_step is None else max(now, self.last_step + 1)
        return step if step <= now + 1 else None

    def accepted(self, code: str, step: int | None = None) -> None:
        """Notes that the server accepted `code` (TOTP or backup)."""
        for backup in self.backup_codes:
            if normalized_backup_code(backup) == normalized_backup_code(code):
                self.backup_codes.remove(backup)
                return
        step = self.step_of(code) if step is None else step
        assert step is not None, f"accepted code {code!r} is not a TOTP code of this factor"
        self.last_step = step if self.last_step is None else max(self.last_step, step)


def normalized_backup_code(code: str) -> str:
    """A backup code as the server compares it: case and dashes or spaces do not matter."""
    return re.sub(r"[\s-]", "", code).lower()


def enrollment_material(page: str) -> tuple[str, str]:
    """The base32 key and the otpauth:// URI that an enrolment page shows."""
    secret = SECRET_RE.search(page)
    uri = OTPAUTH_RE.search(page)
    assert secret and uri, f"no TOTP key or otpauth link in page:\n{page[:2000]}"
    return secret.group(1), html.unescape(uri.group(1))


def backup_codes_of(page: str) -> list[str]:
    return [html.unescape(c) for c in BACKUP_CODE_RE.findall(page)]


def continue_link(page: str) -> str:
    m = CONTINUE_RE.search(page)
    assert m, f"no Continue link in page:\n{page[:2000]}"
    return html.unescape(m.group(1))


def is_page(response: requests.Response, path: str, status: int = 200) -> bool:
    return response.status_code == status and urlsplit(response.url).path == path


def is_form_page(response: requests.Response, path: str) -> bool:
    """The form at `path`, first shown (200) or shown again after a wrong code (401)."""
    return response.status_code in (200, 401) and urlsplit(response.url).path == path


def wait_for_fresh_step(factor: Factor) -> int:
    """Polls the clock until a step is free again (at most one step): the last resort when both
    usable steps and every backup code are spent."""
    deadline = time.monotonic() + TOTP_STEP_S + 2
    while (step := factor.fresh_step()) is None:
        assert time.monotonic() < deadline, "the clock did not reach a fresh TOTP step"
        time.sleep(0.2)  # polling the wall clock, not a timing assumption
    return step


class Browser:
    """A user agent with a cookie jar that follows the server's own redirects by hand and
    stops at the first redirect that leaves the server (the client's redirect URI)."""

    MAX_HOPS = 10

    def __init__(self, server: Server):
        self.server = server
        self.http = loopback_session()
        self.visited: list[str] = []  # "METHOD /path" of each request to the server, in order
        self.responses: list[requests.Response] = []  # every response, in the same order

    def _on_server(self, url: str) -> bool:
        own = urlsplit(self.server.issuer)
        there = urlsplit(url)
        return (there.scheme, there.netloc) == (own.scheme, own.netloc)

    def _record(self, method: str, url: str) -> None:
        self.visited.append(f"{method} {urlsplit(url).path}")

    def navigate(self, url: str) -> requests.Response:
        """GETs `url` and follows redirects that stay on the server."""
        self._record("GET", url)
        response = self.http.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        self.responses.append(response)
        return self._follow(response)

    def submit(self, url: str, form: dict) -> requests.Response:
        """POSTs a form and follows redirects that stay on the server."""
        self._record("POST", url)
        response = self.http.post(url, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        self.responses.append(response)
        return self._follow(response)

    def _follow(self, response: requests.Response) -> requests.Response:
        for _ in range(self.MAX_HOPS):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = urljoin(response.url, response.headers["Location"])
            if not self._on_server(location):
                return response
            self._record("GET", location)
            response = self.http.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
            self.responses.append(response)
        raise AssertionError(f"more than {self.MAX_HOPS} redirects, visited {self.visited}")

    # ---- the server's pages -----------------------------------------------------------------

    def response_to(self, method: str, path: str) -> requests.Response:
        """The first response to `METHOD /path`."""
        return self.responses[self.visited.index(f"{method} {path}")]

    def sign_in(
        self,
        page: requests.Response,
        username: str,
        password: str,
        second_factor: bool = True,
    ) -> requests.Response:
        """Fills in the sign-in form. With `second_factor`, then also sets up or gives the
        second factor when the server asks for it (see `pass_second_factor`)."""
        assert page.status_code == 200, f"expected the sign-in page, got {page.status_code}"
        assert urlsplit(page.url).path == "/login", f"expected /login, at {page.url}"
        form = {
            "rid": hidden_input(page.text, "rid"),
            "csrf_token": hidden_input(page.text, "csrf_token"),
            "username": username,
            "password": password,
        }
        response = self.submit(self.server.url("/login"), form)
        if second_factor:
            response = self.pass_second_factor(response, username)
        return response

    def pass_second_factor(self, response: requests.Response, username: str) -> requests.Response:
        """If `response` is the enrolment or the second-factor page (first shown, or shown again
        after a wrong code), completes it with pyotp (a backup code when no TOTP step is free)
        and follows Continue when a page shows one. Returns what comes next: the consent page
        or the redirect to the client. Any other response is returned as it is."""
        if is_form_page(response, ENROLL_PATH):
            response = self.enroll(response, username)
            assert response.status_code == 200, (
                f"enrolment of {username} refused ({response.status_code}):\n{response.text[:1000]}"
            )
            return self.follow_continue(response)
        if is_form_page(response, OTP_PATH):
            response = self.give_second_factor(response, username)
            assert response.status_code in (200, 302, 303), (
                f"second factor of {username} refused ({response.status_code}):\n"
                f"{response.text[:1000]}"
            )
            if response.status_code == 200 and BACKUP_LEFT_RE.search(response.text):
                return self.follow_continue(response)  # after a backup code
        return response

    def enroll(self, page: requests.Response, username: str, code: str | None = None):
        """Confirms the enrolment page with `code`, by default the current pyotp code of the key
        the page shows. Remembers the key, and on success the step and the backup codes."""
        assert is_form_page(page, ENROLL_PATH), f"expected {ENROLL_PATH}, at {page.url}"
        secret, uri = enrollment_material(page.text)
        factor = self.server.factors.get(username)
        if factor is None or factor.secret != secret:
            # a pending enrolment gets a new key each time the page is opened anew
            factor = Factor(secret=secret, uri=uri)
            self.server.factors[username] = factor
        step = None
        if code is None:
            step = factor.fresh_step()
            assert step is not None, f"no TOTP step free for {username}'s enrolment"
            code = factor.code_for_step(step)
        response = self.submit(
            self.server.url(ENROLL_PATH),
            {
                "rid": hidden_input(page.text, "rid"),
                "csrf_token": hidden_input(page.text, "csrf_token"),
                "code": code,
            },
        )
        codes = backup_codes_of(response.text) if response.status_code == 200 else []
        if codes:
            factor.accepted(code, step)
            factor.backup_codes = codes
        return response

    def give_second_factor(self, page: requests.Response, username: str, code: str | None = None):
        """Answers the second-factor page with `code`, by default a pyotp code of a step the
        server has not accepted yet, else an unused backup code, else (never needed by the
        suite) the next step's code once the clock gets there."""
        assert is_form_page(page, OTP_PATH), f"expected {OTP_PATH}, at {page.url}"
        factor = self.server.factors.get(username)
        step = None
        if code is None:
            assert factor is not None, f"{username} has a factor this test session never saw"
            step = factor.fresh_step()
            if step is None and factor.backup_codes:
                code = factor.backup_codes[0]
            else:
                step = step if step is not None else wait_for_fresh_step(factor)
                code = factor.code_for_step(step)
        sent = len(self.responses)
        response = self.submit(
            self.server.url(OTP_PATH),
            {
                "rid": hidden_input(page.text, "rid"),
                "csrf_token": hidden_input(page.text, "csrf_token"),
                "code": code,
            },
        )
        answer = self.responses[sent]  # to the POST itself, before any redirect was followed
        succeeded = answer.status_code == 303 or (
            answer.status_code == 200 and BACKUP_LEFT_RE.search(answer.text)
        )
        if succeeded and factor is not None:
            factor.accepted(code, step)
        return response

    def follow_continue(self, page: requests.Response) -> requests.Response:
        """Follows the Continue link of a page (backup codes, backup code used)."""
        return self.navigate(urljoin(page.url, continue_link(page.text)))

    def answer_consent(self, page: requests.Response, decision: str) -> requests.Response:
        assert page.status_code == 200, f"expected the consent page, got {page.status_code}"
        assert urlsplit(page.url).path == "/consent", f"expected /consent, at {page.url}"
        form = {
            "rid": hidden_input(page.text, "rid"),
            "csrf_token": hidden_input(page.text, "csrf_token"),
            "decision": decision,
        }
        return self.submit(self.server.url("/consent"), form)


def redirect_target(response: requests.Response) -> str:
    """The absolute Location of a redirect to the client."""
    assert response.status_code in (302, 303), (
        f"expected a redirect to the client, got {response.status_code} at {response.url}:\n"
        f"{response.text[:1000]}"
    )
    return urljoin(response.url, response.headers["Location"])


# --------------------------------------------------------------------------------------------
# OAuth clients (authlib)
# --------------------------------------------------------------------------------------------


def oauth_session(server: Server, client_id: str, **kwargs) -> OAuth2Session:
    """An authlib OAuth2Session for a demo client: its secret when it has one, PKCE S256."""
    client = server.client(client_id)
    secret = client.get("client_secret")
    kwargs.setdefault("token_endpoint_auth_method", "client_secret_basic" if secret else "none")
    if client.get("redirect_uris"):
        kwargs.setdefault("redirect_uri", client["redirect_uris"][0])
        kwargs.setdefault("code_challenge_method", "S256")
    session = OAuth2Session(client_id=client_id, client_secret=secret, **kwargs)
    # Every HTTP response the session receives, for assertions on the wire format.
    session.responses = []
    session.hooks["response"].append(lambda r, *args, **kw: session.responses.append(r))
    return loopback_session(session)


def new_code_verifier() -> str:
    return generate_token(64)  # 64 unreserved characters (RFC 7636 §4.1: 43..128)


def new_nonce() -> str:
    return generate_token(32)


@dataclass
class CodeFlow:
    """What one authorization-code run produced."""

    oauth: OAuth2Session
    browser: Browser
    state: str
    nonce: str
    code_verifier: str
    callback_url: str
    token: dict | None = None


def start_authorization(
    server: Server, browser: Browser, client_id: str, scope: str, **extra
) -> tuple[OAuth2Session, requests.Response, dict]:
    """Builds the authorization URL with authlib and opens it in the browser. Returns the
    session, the browser's response (a page of the server, or a redirect to the client) and
    the request's secrets (state, nonce, code_verifier)."""
    oauth = oauth_session(server, client_id, scope=scope)
    verifier = new_code_verifier()
    nonce = new_nonce()
    url, state = oauth.create_authorization_url(
        server.url("/authorize"), code_verifier=verifier, nonce=nonce, **extra
    )
    response = browser.navigate(url)
    return oauth, response, {"state": state, "nonce": nonce, "code_verifier": verifier}


def run_code_flow(
    server: Server,
    client_id: str,
    username: str,
    scope: str,
    browser: Browser | None = None,
    consent: str | None = None,
    exchange: bool = True,
    **extra,
) -> CodeFlow:
    """Authorization code + PKCE from the first redirect to the token response.

    Signs in when the server shows the sign-in page (with the second factor when the server
    asks for one, including a first-time set-up), and answers the consent page with `consent`
    when it shows one (a consent page when `consent` is None is a failure). `extra` goes into
    the authorization request (acr_values, prompt, ...)."""
    browser = browser or Browser(server)
    oauth, response, secrets = start_authorization(server, browser, client_id, scope, **extra)
    if response.status_code == 200 and urlsplit(response.url).path == "/login":
        response = browser.sign_in(response, username, server.user(username)["password"])
    if response.status_code == 200 and urlsplit(response.url).path == "/consent":
        assert consent is not None, "unexpected consent page"
        response = browser.answer_consent(response, consent)
    callback = redirect_target(response)
    flow = CodeFlow(oauth=oauth, browser=browser, callback_url=callback, **secrets)
    if exchange:
        flow.token = oauth.fetch_token(
            server.url("/token"),
            authorization_response=callback,
            state=flow.state,
            code_verifier=flow.code_verifier,
        )
    return flow


# --------------------------------------------------------------------------------------------
# Token checks (PyJWT against the server's JWKS)
# --------------------------------------------------------------------------------------------


def jwks_client(server: Server) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(server.url("/jwks"), cache_keys=False, cache_jwk_set=False)


def verify_access_token(server: Server, token: str) -> dict:
    """Verifies an access token (RFC 9068) with PyJWT and the server's JWKS."""
    header = jwt.get_unverified_header(token)
    assert header.get("typ") == "at+jwt", header
    assert header.get("alg") == "ES256", header
    key = jwks_client(server).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=server.audience,
        issuer=server.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )


def verify_id_token(server: Server, token: str, client_id: str) -> dict:
    """Verifies an ID token (OIDC Core §3.1.3.7) with PyJWT and the server's JWKS."""
    header = jwt.get_unverified_header(token)
    assert header.get("alg") == "RS256", header
    key = jwks_client(server).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=client_id,
        issuer=server.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of SHA-256 of the token's ASCII."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------------------------
# Raw endpoint calls, for assertions on status codes and exact bodies
# --------------------------------------------------------------------------------------------


def basic_auth(server: Server, client_id: str) -> tuple[str, str]:
    return client_id, server.client(client_id)["client_secret"]


def introspect(server: Server, client_id: str, token: str) -> requests.Response:
    return loopback_session().post(
        server.url("/introspect"),
        data={"token": token},
        auth=basic_auth(server, client_id),
        timeout=HTTP_TIMEOUT_S,
    )


def token_request(server: Server, client_id: str, form: dict) -> requests.Response:
    return loopback_session().post(
        server.url("/token"),
        data=form,
        auth=basic_auth(server, client_id),
        timeout=HTTP_TIMEOUT_S,
    )
