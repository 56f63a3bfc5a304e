"""Authorization code + PKCE for the confidential first-party client demo-web, driven by authlib,
with the access token (RFC 9068) and the ID token (OIDC Core) verified by PyJWT against /jwks."""

import time

import jwt
import pytest

from zarish_testkit import (
    Browser,
    at_hash,
    introspect,
    jwks_client,
    loopback_session,
    new_code_verifier,
    oauth_session,
    query_of,
    redirect_target,
    run_code_flow,
    start_authorization,
    token_request,
    verify_access_token,
    verify_id_token,
)

CLIENT = "demo-web"
USER = "provider"  # healthcare_provider: must use a second factor, set up at the first sign-in
PLAIN_USER = "clinician"  # clinical_staff: password only, for the tests the role does not matter to
SCOPE = "openid profile email patient/Patient.read"


@pytest.fixture(scope="module")
def flow(server):
    started = int(time.time())
    flow = run_code_flow(server, CLIENT, USER, SCOPE)
    flow.started = started
    return flow


def test_first_party_client_signs_in_without_consent_page(flow):
    assert "GET /login" in flow.browser.visited
    assert "GET /consent" not in flow.browser.visited


def test_role_that_needs_mfa_sets_up_a_factor_before_the_code(flow):
    login = flow.browser.response_to("POST", "/login")
    assert login.status_code == 303
    assert login.headers["Location"].startswith("/login/enroll?rid=")
    steps = flow.browser.visited
    assert steps[steps.index("POST /login") :] == [
        "POST /login",
        "GET /login/enroll",
        "POST /login/enroll",  # the backup codes page
        "GET /authorize/resume",  # its Continue link, answered with the redirect to the client
    ]


def session_cookies(response):
    return [c for c in response.raw.headers.getlist("Set-Cookie") if "zarish_session=" in c]


def test_session_cookie_is_http_only_and_same_site(flow):
    # The password alone starts no session for this user; the confirmed second factor does.
    assert session_cookies(flow.browser.response_to("POST", "/login")) == []
    (cookie,) = session_cookies(flow.browser.response_to("POST", "/login/enroll"))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_password_only_session_cookie_is_http_only_and_same_site(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE, exchange=False)
    login = flow.browser.response_to("POST", "/login")
    assert login.status_code == 303
    (cookie,) = session_cookies(login)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_sign_in_page_cannot_be_framed(flow):
    page = flow.browser.response_to("GET", "/login")
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_redirect_carries_code_state_and_issuer(server, flow):
    assert flow.callback_url.startswith("http://localhost:3000/callback?")
    params = query_of(flow.callback_url)
    assert params["code"]
    assert params["state"] == flow.state
    assert params["iss"] == server.issuer  # RFC 9207
    assert "error" not in params


def test_token_response_shape(flow):
    token = flow.token
    assert token["token_type"].lower() == "bearer"
    assert isinstance(token["expires_in"], int) and token["expires_in"] > 0
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert token["id_token"]
    # offline_access was not requested, so no refresh token
    assert "refresh_token" not in token


def test_access_token_verifies_against_jwks(server, flow):
    claims = verify_access_token(server, flow.token["access_token"])
    assert claims["iss"] == server.issuer
    assert claims["aud"] == server.audience
    assert claims["client_id"] == CLIENT
    assert set(claims["scope"].split()) == set(SCOPE.split())
    assert claims["iat"] <= claims["exp"]
    assert claims["exp"] - claims["iat"] == flow.token["expires_in"]
    assert claims["jti"]


def test_access_token_platform_claims(server, flow):
    claims = verify_access_token(server, flow.token["access_token"])
    user = server.user(USER)
    assert claims["user_type"] == user["role"]
    assert claims["organization"] == user["organization"] == "hospital-abc"
    assert claims["country_context"] == "BD"
    assert claims["hipaa_compliance"] is True
    assert isinstance(claims["permissions"], list) and claims["permissions"]
    assert all(isinstance(p, str) and ":" in p for p in claims["permissions"])
    assert flow.started - 5 <= claims["auth_time"] <= claims["iat"]


def test_id_token_verifies_with_nonce(server, flow):
    claims = verify_id_token(server, flow.token["id_token"], CLIENT)
    assert claims["aud"] == CLIENT
    assert claims["nonce"] == flow.nonce
    assert claims["azp"] == CLIENT
    assert abs(claims["iat"] - time.time()) < 300
    assert claims["exp"] > claims["iat"]


def test_id_token_at_hash_matches_access_token(server, flow):
    claims = verify_id_token(server, flow.token["id_token"], CLIENT)
    assert claims["at_hash"] == at_hash(flow.token["access_token"])


def test_id_token_subject_and_auth_time_match_access_token(server, flow):
    id_claims = verify_id_token(server, flow.token["id_token"], CLIENT)
    access = verify_access_token(server, flow.token["access_token"])
    assert id_claims["sub"] == access["sub"]
    assert id_claims["auth_time"] == access["auth_time"]


def test_access_token_is_not_accepted_as_id_token(server, flow):
    # The audiences keep the two apart: a relying party must not accept one as the other.
    token = flow.token["access_token"]
    key = jwks_client(server).get_signing_key_from_jwt(token)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key.key, algorithms=["ES256"], audience=CLIENT, issuer=server.issuer)


def test_token_response_is_json_and_not_cached(server, flow):
    response = flow.oauth.responses[-1]
    assert response.request.url == server.url("/token")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1


def code_form(server, flow, **override):
    form = {
        "grant_type": "authorization_code",
        "code": query_of(flow.callback_url)["code"],
        "redirect_uri": server.client(CLIENT)["redirect_uris"][0],
        "code_verifier": flow.code_verifier,
    }
    form.update(override)
    return form


def test_code_cannot_be_redeemed_twice(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE)
    replay = token_request(server, CLIENT, code_form(server, flow))
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued from the replayed code are revoked too
    assert introspect(server, CLIENT, flow.token["access_token"]).json() == {"active": False}


def test_wrong_code_verifier_is_refused(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE, exchange=False)
    response = token_request(server, CLIENT, code_form(server, flow, code_verifier="x" * 64))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_missing_code_verifier_is_refused(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE, exchange=False)
    form = code_form(server, flow)
    del form["code_verifier"]
    response = token_request(server, CLIENT, form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_at_token_endpoint(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE, exchange=False)
    response = token_request(
        server, CLIENT, code_form(server, flow, redirect_uri="http://localhost:3000/other")
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_is_bound_to_its_client(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE, exchange=False)
    response = loopback_session().post(
        server.url("/token"), data={**code_form(server, flow), "client_id": "demo-spa"}, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_authorization_request_by_post(server, browser: Browser):
    # OIDC Core §3.1.2.1: the authorization endpoint accepts POST with a form body.
    oauth = oauth_session(server, CLIENT, scope=SCOPE)
    url, state = oauth.create_authorization_url(
        server.url("/authorize"), code_verifier=new_code_verifier(), nonce="n-1"
    )
    page = browser.submit(server.url("/authorize"), query_of(url))
    response = browser.sign_in(page, PLAIN_USER, server.user(PLAIN_USER)["password"])
    params = query_of(redirect_target(response))
    assert params["code"]
    assert params["state"] == state


def test_state_round_trips_exactly(server, browser: Browser):
    state = "a b+c&d=e/é?%20"
    oauth = oauth_session(server, CLIENT, scope=SCOPE)
    url, _ = oauth.create_authorization_url(
        server.url("/authorize"), state=state, code_verifier=new_code_verifier()
    )
    response = browser.sign_in(
        browser.navigate(url), PLAIN_USER, server.user(PLAIN_USER)["password"]
    )
    assert query_of(redirect_target(response))["state"] == state


def test_wrong_password_shows_the_form_again(server, browser: Browser):
    _, page, _ = start_authorization(server, browser, CLIENT, SCOPE)
    response = browser.sign_in(page, PLAIN_USER, "wrong password, certainly")
    assert response.status_code == 401
    assert 'action="/login"' in response.text
    assert "Invalid username or password" in response.text
    assert "zarish_session" not in browser.http.cookies


def test_sign_in_form_needs_the_browsers_csrf_cookie(server, browser: Browser):
    _, page, _ = start_authorization(server, browser, CLIENT, SCOPE)
    other = Browser(server)  # no zarish_csrf cookie
    response = other.sign_in(page, PLAIN_USER, server.user(PLAIN_USER)["password"])
    assert response.status_code == 403
    assert "zarish_session" not in other.http.cookies


def test_unregistered_redirect_uri_is_never_redirected_to(server, browser: Browser):
    # RFC 6749 §4.1.2.1: the user is told, the client is not redirected to.
    oauth = oauth_session(server, CLIENT, scope=SCOPE, redirect_uri="http://localhost:3000/evil")
    url, _ = oauth.create_authorization_url(
        server.url("/authorize"), code_verifier=new_code_verifier()
    )
    response = browser.navigate(url)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_unknown_client_is_never_redirected_to(server, browser: Browser):
    oauth = oauth_session(server, CLIENT, scope=SCOPE)
    oauth.client_id = "no-such-client"
    url, _ = oauth.create_authorization_url(
        server.url("/authorize"), code_verifier=new_code_verifier()
    )
    response = browser.navigate(url)
    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    "extra, error",
    [
        ({"scope": "openid system/Patient.read"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_authorization_errors_redirect_with_state(server, browser: Browser, extra, error):
    oauth = oauth_session(server, CLIENT, scope=SCOPE)
    url, state = oauth.create_authorization_url(
        server.url("/authorize"), code_verifier=new_code_verifier(), **extra
    )
    params = query_of(redirect_target(browser.navigate(url)))
    assert params["error"] == error
    assert params["state"] == state
    assert params["iss"] == server.issuer
    assert "code" not in params


def test_plain_pkce_is_refused_with_redirect(server, browser: Browser):
    # Only S256 is supported (RFC 7636 §4.4.1): the error goes back to the client with state.
    oauth = oauth_session(server, CLIENT, scope=SCOPE, code_challenge_method="plain")
    verifier = new_code_verifier()
    url, state = oauth.create_authorization_url(
        server.url("/authorize"), code_challenge=verifier, code_challenge_method="plain"
    )
    params = query_of(redirect_target(browser.navigate(url)))
    assert params["error"] == "invalid_request"
    assert params["state"] == state
    assert params["iss"] == server.issuer
    assert "code" not in params
    assert "GET /login" not in browser.visited
