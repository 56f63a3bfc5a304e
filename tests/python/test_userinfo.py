"""The userinfo endpoint (OIDC Core §5.3) as a bearer-protected resource (RFC 6750)."""

import pytest

from zarish_testkit import (
    loopback_session,
    oauth_session,
    run_code_flow,
    verify_access_token,
    verify_id_token,
)

CLIENT = "demo-web"
USER = "superadmin"  # super_admin: signs in with a second factor
PLAIN_USER = "clinician"  # clinical_staff: password only


@pytest.fixture(scope="module")
def flow(server):
    return run_code_flow(server, CLIENT, USER, "openid profile email")


def test_userinfo_with_access_token(server, flow):
    # authlib's session sends the access token as an Authorization: Bearer header
    response = flow.oauth.get(server.url("/userinfo"), timeout=30)
    assert response.status_code == 200
    assert response.headers.get("Cache-Control") == "no-store"
    info = response.json()
    assert info["sub"] == verify_access_token(server, flow.token["access_token"])["sub"]
    assert info["sub"] == verify_id_token(server, flow.token["id_token"], CLIENT)["sub"]
    assert info["preferred_username"] == USER
    assert info["given_name"] == "Sara"
    assert info["family_name"] == "Rahman"
    assert info["name"] == "Sara Rahman"
    assert info["email"] == f"{USER}@hospital-abc.example"


def test_userinfo_releases_only_granted_scopes(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, "openid email")
    info = flow.oauth.get(server.url("/userinfo"), timeout=30).json()
    assert info["email"] == f"{PLAIN_USER}@hospital-abc.example"
    assert not {"name", "given_name", "family_name", "preferred_username"} & set(info)


def test_userinfo_without_token_is_401_bearer_challenge(server):
    response = loopback_session().get(server.url("/userinfo"), timeout=30)
    assert response.status_code == 401
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.split()[0] == "Bearer"


def test_userinfo_without_token_has_no_error_code(server):
    # RFC 6750 §3.1: "If the request lacks any authentication information ..., the resource
    # server SHOULD NOT include an error code or other error information."
    response = loopback_session().get(server.url("/userinfo"), timeout=30)
    assert response.status_code == 401
    assert "error=" not in response.headers.get("WWW-Authenticate", "")


def test_userinfo_with_bad_token_is_invalid_token(server):
    response = loopback_session().get(
        server.url("/userinfo"), headers={"Authorization": "Bearer not-a-token"}, timeout=30
    )
    assert response.status_code == 401
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge


def test_userinfo_with_service_token_is_insufficient_scope(server):
    oauth = oauth_session(server, "demo-backend", scope="system/Patient.read")
    oauth.fetch_token(server.url("/token"), grant_type="client_credentials")
    response = oauth.get(server.url("/userinfo"), timeout=30)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers.get("WWW-Authenticate", "")


def test_userinfo_refuses_a_revoked_token(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, "openid profile")
    assert flow.oauth.get(server.url("/userinfo"), timeout=30).status_code == 200
    revoked = flow.oauth.revoke_token(
        server.url("/revoke"), token=flow.token["access_token"], token_type_hint="access_token"
    )
    assert revoked.status_code == 200
    response = flow.oauth.get(server.url("/userinfo"), timeout=30)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers.get("WWW-Authenticate", "")
