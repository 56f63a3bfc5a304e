"""client_credentials for demo-backend with authlib, the token verified with PyJWT, then
introspection (RFC 7662) and revocation (RFC 7009)."""

import pytest

from zarish_testkit import (
    introspect,
    loopback_session,
    oauth_session,
    token_request,
    verify_access_token,
)

CLIENT = "demo-backend"
SCOPE = "system/Patient.read system/Observation.read"


def fetch_client_token(server, scope=SCOPE, **kwargs):
    oauth = oauth_session(server, CLIENT, scope=scope, **kwargs)
    return oauth, oauth.fetch_token(server.url("/token"), grant_type="client_credentials")


@pytest.fixture
def service_token(server):
    return fetch_client_token(server)


def test_token_response(service_token):
    _, token = service_token
    assert token["token_type"].lower() == "bearer"
    assert token["expires_in"] > 0
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert "refresh_token" not in token
    assert "id_token" not in token


def test_access_token_verifies_against_jwks(server, service_token):
    _, token = service_token
    claims = verify_access_token(server, token["access_token"])
    assert claims["sub"] == CLIENT
    assert claims["client_id"] == CLIENT
    assert claims["aud"] == server.audience
    assert set(claims["scope"].split()) == set(SCOPE.split())
    assert claims["hipaa_compliance"] is True
    # no user behind this token
    for user_claim in ("auth_time", "user_type", "organization", "permissions"):
        assert user_claim not in claims


def test_client_secret_post_also_works(server):
    _, token = fetch_client_token(
        server, scope="system/Patient.read", token_endpoint_auth_method="client_secret_post"
    )
    assert token["scope"] == "system/Patient.read"


def test_wrong_secret_is_invalid_client(server):
    response = loopback_session().post(
        server.url("/token"),
        data={"grant_type": "client_credentials"},
        auth=(CLIENT, "not-the-secret"),
        timeout=30,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in response.headers


def test_scope_outside_registration_is_invalid_scope(server):
    response = token_request(
        server, CLIENT, {"grant_type": "client_credentials", "scope": "system/Encounter.read"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_introspection_of_active_token(server, service_token):
    _, token = service_token
    claims = verify_access_token(server, token["access_token"])
    response = introspect(server, CLIENT, token["access_token"])
    assert response.status_code == 200
    body = response.json()
    assert body["active"] is True
    assert set(body["scope"].split()) == set(SCOPE.split())
    assert body["client_id"] == CLIENT
    assert body["sub"] == CLIENT
    assert body["iss"] == server.issuer
    assert body["exp"] == claims["exp"]
    assert body["iat"] == claims["iat"]
    assert body["token_type"].lower() == "bearer"


def test_introspection_needs_client_authentication(server, service_token):
    _, token = service_token
    response = loopback_session().post(
        server.url("/introspect"), data={"token": token["access_token"]}, timeout=30
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_revocation_then_introspection_is_inactive(server, service_token):
    oauth, token = service_token
    response = oauth.revoke_token(
        server.url("/revoke"), token=token["access_token"], token_type_hint="access_token"
    )
    assert response.status_code == 200
    after = introspect(server, CLIENT, token["access_token"])
    assert after.status_code == 200
    assert after.json() == {"active": False}


def test_revocation_of_unknown_token_is_ok(server):
    # RFC 7009 §2.2: an invalid token does not cause an error response.
    oauth, _ = fetch_client_token(server)
    response = oauth.revoke_token(server.url("/revoke"), token="not-a-token")
    assert response.status_code == 200


def test_introspection_of_garbage_is_inactive(server):
    response = introspect(server, CLIENT, "not-a-token")
    assert response.status_code == 200
    assert response.json() == {"active": False}
