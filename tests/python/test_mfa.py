"""Multi-factor sign-in, checked with pyotp (an implementation independent of the server's):
TOTP enrolment during sign-in, codes, replay defence, the time window, backup codes, the `amr` and
`acr` claims (tokens verified with PyJWT against /jwks), step-up with acr_values, RP-initiated
logout and the brute-force block.

These tests need deliberate failures, and the server blocks an address after 5 failed sign-ins
(password or second factor) in 15 minutes: they run on servers of their own, none of which sees
more than 3 failures, except the one started to be blocked.

Demo users: superadmin, orgadmin and provider must use a second factor; analyst and clinician
need one only when the client asks for it (or once they have one).
"""

import html
import re
import time
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pyotp
import pytest

from zarish_testkit import (
    ENROLL_PATH,
    OTP_PATH,
    TOTP_STEP_S,
    Browser,
    Factor,
    backup_codes_of,
    enrollment_material,
    introspect,
    is_page,
    loopback_session,
    query_of,
    redirect_target,
    run_code_flow,
    start_authorization,
    token_request,
    totp_step,
    verify_access_token,
    verify_id_token,
)

CLIENT = "demo-web"
SCOPE = "openid profile"
OFFLINE_SCOPE = "openid profile offline_access"
ACR_MFA = "urn:zarish:acr:mfa"
ACR_PWD = "urn:zarish:acr:pwd"
ISSUER_LABEL = "ZARISH SPHERE"
CALLBACK = "http://localhost:3000/callback?"
BACKUP_CODE = re.compile(r"^[a-z2-7]{5}-[a-z2-7]{5}$")
WRONG_CODE_MESSAGE = "That code is not valid."


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def open_second_factor_page(server, username, browser=None, **extra):
    """A fresh browser signs `username` in with the password only and stops at the second
    factor (enrolment or code). Returns the browser, the page and the request's secrets."""
    browser = browser or Browser(server)
    _, page, secrets = start_authorization(server, browser, CLIENT, SCOPE, **extra)
    page = browser.sign_in(page, username, server.user(username)["password"], second_factor=False)
    return browser, page, secrets


def invalid_code(factor) -> str:
    """Six digits that are no code of `factor` for any step from two before now to two after."""
    now = totp_step()
    near = {factor.code_for_step(now + d) for d in range(-2, 3)}
    n = int(factor.code_for_step(now))
    while f"{n:06d}" in near:
        n = (n + 1) % 1_000_000
    return f"{n:06d}"


def session_cookie_set(response) -> bool:
    return any(
        c.startswith("zarish_session=") and not c.startswith("zarish_session=;")
        for c in response.raw.headers.getlist("Set-Cookie")
    )


def backup_left_on_account_page(browser) -> int:
    page = browser.navigate(browser.server.url("/account"))
    assert page.status_code == 200, page.text[:1000]
    m = re.search(r'<strong id="backup-left">(\d+)</strong>', page.text)
    assert m, page.text[:2000]
    return int(m.group(1))


def assert_form_again(response, path):
    """A refused code: 401, the same form again with an error, no session."""
    assert response.status_code == 401, response.text[:1000]
    assert urlsplit(response.url).path == path
    assert f'action="{path}"' in response.text
    assert WRONG_CODE_MESSAGE in response.text
    assert not session_cookie_set(response)


def assert_no_code_reached_the_client(browser):
    for response in browser.responses:
        location = response.headers.get("Location", "")
        query = parse_qs(urlsplit(location).query)
        assert "code" not in query, f"a code was issued: {location}"


# --------------------------------------------------------------------------------------------
# Enrolment at the first sign-in of a user who must use a second factor
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mfa_server(fresh_server):
    with fresh_server("mfa") as server:
        yield server


ENROLLING_USER = "superadmin"


@pytest.fixture(scope="module")
def enrolment(mfa_server):
    """superadmin's first sign-in: password, then the enrolment page answered with a wrong code,
    a code from two steps ago and finally the current pyotp code; then Continue. (2 failures.)"""
    server = mfa_server
    browser, page, secrets = open_second_factor_page(server, ENROLLING_USER)
    login = browser.response_to("POST", "/login")
    assert is_page(page, ENROLL_PATH), page.url
    secret, uri = enrollment_material(page.text)

    probe = Factor(secret=secret, uri=uri)
    wrong = browser.enroll(page, ENROLLING_USER, code=invalid_code(probe))
    old_code = pyotp.TOTP(secret).at(time.time() - 2 * TOTP_STEP_S)
    assert probe.step_of(old_code) is None, "the old code equals a current one (1 in ~300000)"
    stale = browser.enroll(wrong, ENROLLING_USER, code=old_code)
    confirmed = browser.enroll(stale, ENROLLING_USER)
    resumed = browser.follow_continue(confirmed)
    return {
        "server": server,
        "browser": browser,
        "secrets": secrets,
        "login": login,
        "page": page,
        "secret": secret,
        "uri": uri,
        "wrong": wrong,
        "stale": stale,
        "confirmed": confirmed,
        "resumed": resumed,
        "factor": server.factors[ENROLLING_USER],
    }


def test_password_alone_leads_to_enrolment_without_a_session(enrolment):
    login = enrolment["login"]
    assert login.status_code == 303
    assert login.headers["Location"].startswith(f"{ENROLL_PATH}?rid=")
    assert not session_cookie_set(login)
    assert not session_cookie_set(enrolment["page"])


def test_enrolment_page_shows_qr_code_and_key(enrolment):
    page = enrolment["page"]
    assert page.status_code == 200
    assert re.search(r"<svg[^>]*>.*</svg>", page.text, re.S), "no inline SVG QR code"
    assert re.fullmatch(r"[A-Z2-7]{32}", enrolment["secret"])  # 160 bits, base32
    assert 'name="code"' in page.text and f'action="{ENROLL_PATH}"' in page.text
    # the page holds a secret: never cached, never framed
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"


def test_otpauth_uri_names_the_issuer_and_the_user(enrolment):
    uri = enrolment["uri"]
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert parts.path.startswith("/ZARISH%20SPHERE:")
    assert unquote(parts.path[1:]) == f"{ISSUER_LABEL}:{ENROLLING_USER}"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["secret"] == enrolment["secret"]
    assert query["issuer"] == ISSUER_LABEL
    assert query.get("algorithm", "SHA1").upper() == "SHA1"
    assert query.get("digits", "6") == "6"
    assert query.get("period", "30") == "30"
    # pyotp reads the same URI into the same generator
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.issuer == ISSUER_LABEL
    assert parsed.name == ENROLLING_USER
    now = time.time()
    assert parsed.at(now) == pyotp.TOTP(enrolment["secret"]).at(now)


def test_wrong_first_code_is_refused(enrolment):
    wrong = enrolment["wrong"]
    assert_form_again(wrong, ENROLL_PATH)
    # the same pending key is shown again, and no backup codes
    assert enrollment_material(wrong.text)[0] == enrolment["secret"]
    assert backup_codes_of(wrong.text) == []


def test_code_from_two_steps_ago_is_refused_at_enrolment(enrolment):
    # Nothing was accepted for this factor yet, so only the time window can refuse it.
    stale = enrolment["stale"]
    assert_form_again(stale, ENROLL_PATH)
    assert backup_codes_of(stale.text) == []


def test_pyotp_code_confirms_enrolment_and_shows_backup_codes(enrolment):
    confirmed = enrolment["confirmed"]
    assert confirmed.status_code == 200
    assert confirmed.headers["Cache-Control"] == "no-store"
    codes = backup_codes_of(confirmed.text)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(BACKUP_CODE.match(c) for c in codes), codes
    assert session_cookie_set(confirmed)  # the session starts with the second factor
    assert enrolment["factor"].backup_codes == codes


def test_continue_after_enrolment_reaches_the_client_with_a_code(enrolment):
    callback = redirect_target(enrolment["resumed"])
    assert callback.startswith(CALLBACK)
    params = query_of(callback)
    assert params["code"]
    assert params["state"] == enrolment["secrets"]["state"]
    assert urlsplit(enrolment["resumed"].url).path == "/authorize/resume"


def test_enrolled_user_is_asked_for_a_code_not_a_new_key(enrolment):
    server = enrolment["server"]
    browser, page, _ = open_second_factor_page(server, ENROLLING_USER)
    assert is_page(page, OTP_PATH), page.url
    assert "totp-secret" not in page.text and "otpauth://" not in page.text
    # the enrolment page of this request sends the user to the code form instead
    rid = query_of(page.url)["rid"]
    again = browser.navigate(server.url(f"{ENROLL_PATH}?rid={rid}"))
    assert is_page(again, OTP_PATH), again.url
    assert "otpauth://" not in again.text


# --------------------------------------------------------------------------------------------
# Backup codes
# --------------------------------------------------------------------------------------------


def test_each_backup_code_works_once_and_the_count_is_shown(enrolment):
    """(1 failure: the reused code.)"""
    server, factor = enrolment["server"], enrolment["factor"]
    first, second = factor.backup_codes[0], factor.backup_codes[1]
    before = len(factor.backup_codes)

    browser, page, secrets = open_second_factor_page(server, ENROLLING_USER)
    used = browser.give_second_factor(page, ENROLLING_USER, code=first)
    assert used.status_code == 200, used.text[:1000]
    assert f"You have {before - 1} backup codes left." in used.text
    assert session_cookie_set(used)
    callback = redirect_target(browser.follow_continue(used))
    assert query_of(callback)["state"] == secrets["state"]
    assert query_of(callback)["code"]
    assert backup_left_on_account_page(browser) == before - 1 == len(factor.backup_codes)

    other, page, _ = open_second_factor_page(server, ENROLLING_USER)
    reused = other.give_second_factor(page, ENROLLING_USER, code=first)
    assert_form_again(reused, OTP_PATH)

    # typed by hand: upper case, no dash; still the same code, and it counts once
    typed = second.replace("-", "").upper()
    used = other.give_second_factor(reused, ENROLLING_USER, code=typed)
    assert used.status_code == 200, used.text[:1000]
    assert f"You have {before - 2} backup codes left." in used.text
    assert query_of(redirect_target(other.follow_continue(used)))["code"]
    assert backup_left_on_account_page(other) == before - 2 == len(factor.backup_codes)
    assert second not in factor.backup_codes


# --------------------------------------------------------------------------------------------
# No code without the second factor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, second_factor_page",
    [("provider", ENROLL_PATH), (ENROLLING_USER, OTP_PATH)],
    ids=["not-enrolled", "enrolled"],
)
def test_mfa_role_gets_no_code_without_the_second_factor(
    enrolment, username, second_factor_page
):
    server = enrolment["server"]
    browser, page, secrets = open_second_factor_page(server, username)
    assert is_page(page, second_factor_page), page.url
    assert "zarish_session" not in browser.http.cookies
    rid = query_of(page.url)["rid"]

    # the pending request cannot be pushed on past the second factor
    for path in (f"/authorize/resume?rid={rid}", f"/consent?rid={rid}"):
        response = browser.navigate(server.url(path))
        assert response.status_code == 200, (path, response.status_code)
        assert urlsplit(response.url).path in ("/login", second_factor_page), (path, response.url)
    # nor is the browser signed in for a new request
    _, response, secrets = start_authorization(server, browser, CLIENT, SCOPE, prompt="none")
    assert query_of(redirect_target(response))["error"] == "login_required"
    assert "zarish_session" not in browser.http.cookies
    assert_no_code_reached_the_client(browser)


# --------------------------------------------------------------------------------------------
# amr and acr in the tokens (verified with PyJWT against /jwks)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mfa_flow(mfa_server):
    """orgadmin (must use MFA) signs in for demo-web with offline_access: sets up the factor."""
    flow = run_code_flow(mfa_server, CLIENT, "orgadmin", OFFLINE_SCOPE)
    assert "POST /login/enroll" in flow.browser.visited
    return flow


@pytest.fixture(scope="module")
def password_flow(mfa_server):
    """clinician (no MFA role, no factor) signs in with the password only."""
    flow = run_code_flow(mfa_server, CLIENT, "clinician", SCOPE)
    assert not [s for s in flow.browser.visited if s.startswith("POST /login/")]
    return flow


def both_tokens(server, token):
    return (
        verify_access_token(server, token["access_token"]),
        verify_id_token(server, token["id_token"], CLIENT),
    )


def test_tokens_of_a_two_factor_sign_in_say_so(mfa_server, mfa_flow):
    access, id_claims = both_tokens(mfa_server, mfa_flow.token)
    for claims in (access, id_claims):
        assert claims["amr"] == ["pwd", "otp"]
        assert claims["acr"] == ACR_MFA
    assert access["user_type"] == "organization_admin"
    assert id_claims["sub"] == access["sub"]


def test_tokens_of_a_password_sign_in_say_so(mfa_server, password_flow):
    for claims in both_tokens(mfa_server, password_flow.token):
        assert claims["amr"] == ["pwd"]
        assert claims["acr"] == ACR_PWD


def test_acr_values_makes_a_password_role_use_a_second_factor(mfa_server):
    flow = run_code_flow(mfa_server, CLIENT, "analyst", SCOPE, acr_values=ACR_MFA)
    assert "POST /login/enroll" in flow.browser.visited  # analyst had no factor: set one up
    for claims in both_tokens(mfa_server, flow.token):
        assert claims["amr"] == ["pwd", "otp"]
        assert claims["acr"] == ACR_MFA


def test_acr_values_steps_up_a_password_only_session(mfa_server, password_flow):
    # The browser holds clinician's password-only session. A request for the MFA level must not
    # be answered from it: the user signs in again with a second factor.
    browser = password_flow.browser
    before = len(browser.visited)
    _, response, _ = start_authorization(
        mfa_server, browser, CLIENT, SCOPE, acr_values=ACR_MFA
    )
    assert response.status_code == 200, response.headers.get("Location")
    assert urlsplit(response.url).path == "/login"
    flow = run_code_flow(
        mfa_server, CLIENT, "clinician", SCOPE, browser=browser, acr_values=ACR_MFA
    )
    assert "POST /login/enroll" in browser.visited[before:]
    for claims in both_tokens(mfa_server, flow.token):
        assert claims["amr"] == ["pwd", "otp"]
        assert claims["acr"] == ACR_MFA


def test_discovery_lists_both_acr_values(mfa_server):
    config = loopback_session().get(
        mfa_server.url("/.well-known/openid-configuration"), timeout=30
    ).json()
    assert {ACR_PWD, ACR_MFA} <= set(config["acr_values_supported"])


# --------------------------------------------------------------------------------------------
# RP-initiated logout
# --------------------------------------------------------------------------------------------


def logout_url(server, id_token, post_logout_redirect_uri, state):
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "state": state,
        }
    )
    return server.url(f"/logout?{query}")


@pytest.mark.parametrize(
    "uri",
    ["http://localhost:5173/", "http://localhost:3000/evil"],
    ids=["other-clients-uri", "unknown-uri"],
)
def test_logout_to_an_unregistered_uri_is_refused(mfa_server, mfa_flow, uri):
    browser = mfa_flow.browser
    response = browser.navigate(logout_url(mfa_server, mfa_flow.token["id_token"], uri, "s-1"))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "not registered" in html.unescape(response.text)
    # nothing was ended
    assert introspect(mfa_server, CLIENT, mfa_flow.token["refresh_token"]).json()["active"]
    assert browser.navigate(mfa_server.url("/account")).status_code == 200


@pytest.fixture(scope="module")
def logged_out(mfa_server, mfa_flow):
    browser = mfa_flow.browser
    assert browser.navigate(mfa_server.url("/account")).status_code == 200  # signed in
    state = "after logout: a&b"
    response = browser.navigate(
        logout_url(mfa_server, mfa_flow.token["id_token"], "http://localhost:3000/", state)
    )
    return response, state


def test_logout_returns_to_the_registered_uri_with_state(logged_out):
    response, state = logged_out
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("http://localhost:3000/?")
    assert query_of(location) == {"state": state}
    cleared = [c for c in response.raw.headers.getlist("Set-Cookie") if "zarish_session=" in c]
    assert cleared and all(c.split(";")[0] == "zarish_session=" for c in cleared), cleared


def test_refresh_token_is_refused_after_logout(mfa_server, mfa_flow, logged_out):
    response = token_request(
        mfa_server,
        CLIENT,
        {"grant_type": "refresh_token", "refresh_token": mfa_flow.token["refresh_token"]},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_browser_is_signed_out_after_logout(mfa_server, mfa_flow, logged_out):
    browser = mfa_flow.browser
    assert browser.navigate(mfa_server.url("/account")).status_code == 401
    _, response, _ = start_authorization(mfa_server, browser, CLIENT, SCOPE)
    assert response.status_code == 200
    assert urlsplit(response.url).path == "/login"


# --------------------------------------------------------------------------------------------
# Codes at the second-factor page: pyotp, replay, the time window (a server of their own)
# --------------------------------------------------------------------------------------------


CODE_USER = "provider"


@pytest.fixture(scope="module")
def totp_server(fresh_server):
    """A server where provider has set up a factor. (2 failures in the tests below.)"""
    with fresh_server("totp") as server:
        flow = run_code_flow(server, CLIENT, CODE_USER, SCOPE)
        assert "POST /login/enroll" in flow.browser.visited
        yield server


def test_pyotp_code_is_accepted_at_the_second_factor_page(totp_server):
    factor = totp_server.factors[CODE_USER]
    browser, page, secrets = open_second_factor_page(totp_server, CODE_USER)
    assert browser.response_to("POST", "/login").headers["Location"].startswith(f"{OTP_PATH}?rid=")
    step = factor.fresh_step()
    assert step is not None
    code = pyotp.TOTP(factor.secret).at(step * TOTP_STEP_S)
    response = browser.give_second_factor(page, CODE_USER, code=code)
    first = browser.response_to("POST", OTP_PATH)
    assert first.status_code == 303
    assert first.headers["Location"].startswith("/authorize/resume?rid=")
    assert session_cookie_set(first)
    params = query_of(redirect_target(response))
    assert params["code"]
    assert params["state"] == secrets["state"]
    assert factor.last_step == step


def test_replayed_code_is_refused(totp_server):
    """(1 failure.)"""
    factor = totp_server.factors[CODE_USER]
    browser, page, _ = open_second_factor_page(totp_server, CODE_USER)
    spent = factor.code_for_step(factor.last_step)  # the last code the server accepted
    assert factor.step_of(spent) is not None, "the spent code left the window already"
    replay = browser.give_second_factor(page, CODE_USER, code=spent)
    assert_form_again(replay, OTP_PATH)
    # the same form takes a fresh code (or, when both usable steps are spent, a backup code)
    done = browser.pass_second_factor(replay, CODE_USER)
    assert query_of(redirect_target(done))["code"]


def test_code_from_two_steps_ago_is_refused(totp_server):
    """(1 failure.) Outside the window of one step either side; here the step is also older
    than the last accepted one, so the enrolment test above is the one that isolates the
    window."""
    factor = totp_server.factors[CODE_USER]
    browser, page, _ = open_second_factor_page(totp_server, CODE_USER)
    old = pyotp.TOTP(factor.secret).at(time.time() - 2 * TOTP_STEP_S)
    assert factor.step_of(old) is None, "the old code equals a current one (1 in ~300000)"
    refused = browser.give_second_factor(page, CODE_USER, code=old)
    assert_form_again(refused, OTP_PATH)
    done = browser.pass_second_factor(refused, CODE_USER)
    assert query_of(redirect_target(done))["code"]


# --------------------------------------------------------------------------------------------
# Brute force (a server of its own: it ends up blocking 127.0.0.1)
# --------------------------------------------------------------------------------------------


def test_five_failures_from_one_address_block_it(fresh_server):
    """Failed passwords and failed second factors count together against the address; the
    fifth failure blocks it, and then even the right password is turned away."""
    with fresh_server("throttle") as server:
        run_code_flow(server, CLIENT, CODE_USER, SCOPE)  # sets up provider's factor
        factor = server.factors[CODE_USER]

        def wrong_password(name):
            browser = Browser(server)
            _, page, _ = start_authorization(server, browser, CLIENT, SCOPE)
            return browser.sign_in(page, name, "not the password", second_factor=False)

        statuses = [wrong_password("nobody-1").status_code, wrong_password("nobody-2").status_code]
        browser, page, _ = open_second_factor_page(server, CODE_USER)
        page = browser.give_second_factor(page, CODE_USER, code=invalid_code(factor))
        statuses.append(page.status_code)
        page = browser.give_second_factor(page, CODE_USER, code=invalid_code(factor))
        statuses.append(page.status_code)
        blocked = wrong_password("nobody-3")
        statuses.append(blocked.status_code)
        assert statuses == [401, 401, 401, 401, 429]
        assert 0 < int(blocked.headers["Retry-After"]) <= 15 * 60

        # the right password from the same address, for another user: still blocked
        browser = Browser(server)
        _, page, _ = start_authorization(server, browser, CLIENT, SCOPE)
        response = browser.sign_in(page, "clinician", server.user("clinician")["password"])
        assert response.status_code == 429
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        assert "zarish_session" not in browser.http.cookies
        assert_no_code_reached_the_client(browser)
