"""The public third-party client demo-spa: consent page, PKCE with no client secret, and a
denied consent ending in access_denied at the client."""

import pytest

from zarish_testkit import (
    Browser,
    hidden_input,
    loopback_session,
    oauth_session,
    query_of,
    redirect_target,
    run_code_flow,
    start_authorization,
    verify_access_token,
    verify_id_token,
)

CLIENT = "demo-spa"
SCOPE = "openid profile offline_access patient/Patient.read"


@pytest.fixture(scope="module")
def allowed(server):
    """clinician signs in and allows demo-spa; the code is exchanged without a secret."""
    return run_code_flow(server, CLIENT, "clinician", SCOPE, consent="allow")


def test_consent_page_lists_requested_scopes(server, browser: Browser):
    # orgadmin must use a second factor: the consent page comes after it
    _, page = open_consent_page(server, browser, "orgadmin")
    assert "POST /login/enroll" in browser.visited or "POST /login/otp" in browser.visited
    assert page.status_code == 200
    assert 'name="decision" value="allow"' in page.text
    assert 'name="decision" value="deny"' in page.text
    for scope in SCOPE.split():
        assert f"<li>{scope}</li>" in page.text


def test_allowed_consent_redirects_with_code_and_state(server, allowed):
    assert allowed.browser.visited.count("POST /login") == 1
    assert "POST /consent" in allowed.browser.visited
    assert allowed.callback_url.startswith("http://localhost:5173/callback?")
    params = query_of(allowed.callback_url)
    assert params["code"]
    assert params["state"] == allowed.state
    assert params["iss"] == server.issuer


def test_token_exchange_sends_no_secret(server, allowed):
    (response,) = allowed.oauth.responses
    request = response.request
    assert request.url == server.url("/token")
    body = dict(pair.split("=", 1) for pair in request.body.split("&"))
    assert body["client_id"] == CLIENT
    assert "client_secret" not in body
    assert "Authorization" not in request.headers
    assert body["code_verifier"] == allowed.code_verifier


def test_public_client_tokens(server, allowed):
    token = allowed.token
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert token["refresh_token"]  # offline_access was granted
    access = verify_access_token(server, token["access_token"])
    assert access["client_id"] == CLIENT
    assert access["user_type"] == server.user("clinician")["role"]
    id_claims = verify_id_token(server, token["id_token"], CLIENT)
    assert id_claims["nonce"] == allowed.nonce
    assert id_claims["sub"] == access["sub"]


def test_denied_consent_returns_access_denied_with_state(server, browser: Browser):
    secrets, page = open_consent_page(server, browser, "analyst")
    response = browser.answer_consent(page, "deny")
    callback = redirect_target(response)
    assert callback.startswith("http://localhost:5173/callback?")
    params = query_of(callback)
    assert params["error"] == "access_denied"
    assert params["state"] == secrets["state"]
    assert params["iss"] == server.issuer
    assert "code" not in params


def test_denied_request_cannot_be_allowed_afterwards(server, browser: Browser):
    secrets, page = open_consent_page(server, browser, "analyst")
    form = {
        "rid": hidden_input(page.text, "rid"),
        "csrf_token": hidden_input(page.text, "csrf_token"),
    }
    denied = browser.submit(server.url("/consent"), {**form, "decision": "deny"})
    assert query_of(redirect_target(denied))["error"] == "access_denied"
    again = browser.submit(server.url("/consent"), {**form, "decision": "allow"})
    assert again.status_code == 400
    assert "Location" not in again.headers


def test_public_client_cannot_use_client_credentials(server):
    response = loopback_session().post(
        server.url("/token"),
        data={"grant_type": "client_credentials", "client_id": CLIENT},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_public_client_must_use_pkce(server, browser: Browser):
    oauth = oauth_session(server, CLIENT, scope=SCOPE, code_challenge_method=None)
    url, state = oauth.create_authorization_url(server.url("/authorize"), nonce="n-0S6_WzA2Mj")
    params = query_of(redirect_target(browser.navigate(url)))
    assert params["error"] == "invalid_request"
    assert params["state"] == state


def open_consent_page(server, browser, username):
    _, response, secrets = start_authorization(server, browser, CLIENT, SCOPE)
    response = browser.sign_in(response, username, server.user(username)["password"])
    assert response.url.startswith(server.url("/consent?")), response.url
    return secrets, response
