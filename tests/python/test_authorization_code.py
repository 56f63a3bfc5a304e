"""Authorization code + PKCE for the confidential first-party client demo-web, driven by authlib,
with the access token (RFC 9068) and the ID token (OIDC Core) verified by PyJWT against /jwks."""

import time

import jwt
import pytest

from zarish_testkit import (
    Browser,
    at_hash,
    jwks_client,
    new_code_verifier,
    oauth_session,
    query_of,
    redirect_target,
    run_code_flow,
    token_request,
    verify_access_token,
    verify_id_token,
)

CLIENT = "demo-web"
USER = "provider"
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


def test_code_cannot_be_redeemed_twice(server):
    flow = run_code_flow(server, CLIENT, USER, SCOPE)
    code = query_of(flow.callback_url)["code"]
    replay = token_request(
        server,
        CLIENT,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": server.client(CLIENT)["redirect_uris"][0],
            "code_verifier": flow.code_verifier,
        },
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_wrong_code_verifier_is_refused(server):
    flow = run_code_flow(server, CLIENT, USER, SCOPE, exchange=False)
    response = token_request(
        server,
        CLIENT,
        {
            "grant_type": "authorization_code",
            "code": query_of(flow.callback_url)["code"],
            "redirect_uri": server.client(CLIENT)["redirect_uris"][0],
            "code_verifier": "x" * 64,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


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
