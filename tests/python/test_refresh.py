"""Refresh tokens with authlib: rotation on every use, and reuse of a spent refresh token
revoking the whole token family (OAuth 2.0 Security BCP, RFC 9700 §4.14.2)."""

from types import SimpleNamespace

import pytest

from zarish_testkit import (
    at_hash,
    introspect,
    loopback_session,
    oauth_session,
    run_code_flow,
    token_request,
    verify_access_token,
    verify_id_token,
)

CLIENT = "demo-web"
USER = "orgadmin"  # organization_admin: signs in with a second factor
PLAIN_USER = "analyst"  # data_analyst: password only, for the tests the user does not matter to
SCOPE = "openid offline_access patient/Patient.read user/Patient.read"


def refresh_form(refresh_token, **extra):
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}


@pytest.fixture(scope="module")
def family(server):
    """One grant taken through: code -> refresh (rotation) -> replay of the spent token -> use
    of the current token. Every answer is kept for the tests below."""
    flow = run_code_flow(server, CLIENT, USER, SCOPE)
    first = dict(flow.token)
    rotated = dict(
        flow.oauth.refresh_token(server.url("/token"), refresh_token=first["refresh_token"])
    )
    spent_introspection = introspect(server, CLIENT, first["refresh_token"]).json()
    current_introspection = introspect(server, CLIENT, rotated["refresh_token"]).json()
    replay = token_request(server, CLIENT, refresh_form(first["refresh_token"]))
    after_replay = token_request(server, CLIENT, refresh_form(rotated["refresh_token"]))
    return SimpleNamespace(
        first=first,
        rotated=rotated,
        spent_introspection=spent_introspection,
        current_introspection=current_introspection,
        replay=replay,
        after_replay=after_replay,
    )


def test_refresh_returns_new_tokens(server, family):
    assert family.rotated["refresh_token"] != family.first["refresh_token"]
    assert family.rotated["access_token"] != family.first["access_token"]
    assert set(family.rotated["scope"].split()) == set(SCOPE.split())
    old = verify_access_token(server, family.first["access_token"])
    new = verify_access_token(server, family.rotated["access_token"])
    assert new["sub"] == old["sub"]
    assert new["jti"] != old["jti"]
    assert new["auth_time"] == old["auth_time"]


def test_rotation_spends_the_old_refresh_token(family):
    assert family.spent_introspection == {"active": False}
    assert family.current_introspection["active"] is True
    assert family.current_introspection["client_id"] == CLIENT


def test_replayed_refresh_token_is_invalid_grant(family):
    assert family.replay.status_code == 400
    assert family.replay.json()["error"] == "invalid_grant"
    assert family.replay.headers.get("Cache-Control") == "no-store"


def test_replay_revokes_the_current_refresh_token(family):
    assert family.after_replay.status_code == 400
    assert family.after_replay.json()["error"] == "invalid_grant"


def test_replay_revokes_the_family_access_tokens(server, family):
    for token in (family.rotated["access_token"], family.first["access_token"]):
        response = introspect(server, CLIENT, token)
        assert response.status_code == 200
        assert response.json() == {"active": False}


def test_refresh_may_narrow_but_not_widen_scope(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE)
    refresh_token = flow.token["refresh_token"]

    wider = token_request(server, CLIENT, refresh_form(refresh_token, scope=SCOPE + " phone"))
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"

    narrower = token_request(
        server, CLIENT, refresh_form(refresh_token, scope="patient/Patient.read")
    )
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "patient/Patient.read"
    assert verify_access_token(server, body["access_token"])["scope"] == "patient/Patient.read"
    assert "id_token" not in body  # openid was not asked for this time


def test_refresh_token_is_bound_to_its_client(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE)
    stolen = loopback_session().post(
        server.url("/token"),
        data={**refresh_form(flow.token["refresh_token"]), "client_id": "demo-spa"},
        timeout=30,
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"


def test_refreshed_id_token_keeps_the_original_authentication(server):
    # OIDC Core §12.2: same iss, sub, aud, azp and auth_time; nonce absent or unchanged.
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE)
    refreshed = flow.oauth.refresh_token(
        server.url("/token"), refresh_token=flow.token["refresh_token"]
    )
    original = verify_id_token(server, flow.token["id_token"], CLIENT)
    renewed = verify_id_token(server, refreshed["id_token"], CLIENT)
    for claim in ("iss", "sub", "aud", "azp", "auth_time"):
        assert renewed[claim] == original[claim], claim
    assert renewed.get("nonce", original["nonce"]) == original["nonce"]
    assert renewed["at_hash"] == at_hash(refreshed["access_token"])


def test_revoking_the_refresh_token_revokes_the_grant(server):
    # RFC 7009 §2.1: revoking a refresh token SHOULD also invalidate its grant's access tokens.
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE)
    response = flow.oauth.revoke_token(
        server.url("/revoke"), token=flow.token["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    refresh = token_request(server, CLIENT, refresh_form(flow.token["refresh_token"]))
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert introspect(server, CLIENT, flow.token["access_token"]).json() == {"active": False}


def test_another_client_cannot_revoke_the_token(server):
    flow = run_code_flow(server, CLIENT, PLAIN_USER, SCOPE)
    other = oauth_session(server, "demo-backend")
    response = other.revoke_token(server.url("/revoke"), token=flow.token["access_token"])
    # RFC 7009 section 2.1: the request is refused and the client is told so.
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert introspect(server, CLIENT, flow.token["access_token"]).json()["active"] is True
