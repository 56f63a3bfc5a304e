"""Discovery: OpenID Provider metadata, RFC 8414 metadata, SMART configuration and the JWKS."""

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

from zarish_testkit import loopback_session


def get_json(server, path):
    response = loopback_session().get(server.url(path), timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


@pytest.fixture(scope="module")
def openid_config(server):
    return get_json(server, "/.well-known/openid-configuration")


@pytest.fixture(scope="module")
def smart_config(server):
    return get_json(server, "/.well-known/smart-configuration")


def test_openid_configuration_names_the_issuer_and_endpoints(server, openid_config):
    issuer = server.issuer
    assert openid_config["issuer"] == issuer
    assert openid_config["authorization_endpoint"] == issuer + "/authorize"
    assert openid_config["token_endpoint"] == issuer + "/token"
    assert openid_config["jwks_uri"] == issuer + "/jwks"
    assert openid_config["userinfo_endpoint"] == issuer + "/userinfo"
    assert openid_config["revocation_endpoint"] == issuer + "/revoke"
    assert openid_config["introspection_endpoint"] == issuer + "/introspect"


def test_openid_configuration_advertises_pkce_s256_only(openid_config):
    assert openid_config["code_challenge_methods_supported"] == ["S256"]


def test_openid_configuration_capabilities(openid_config):
    assert openid_config["response_types_supported"] == ["code"]
    assert set(openid_config["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert "RS256" in openid_config["id_token_signing_alg_values_supported"]
    assert "public" in openid_config["subject_types_supported"]
    assert openid_config["authorization_response_iss_parameter_supported"] is True
    assert {"client_secret_basic", "client_secret_post"} <= set(
        openid_config["token_endpoint_auth_methods_supported"]
    )
    assert {"openid", "offline_access", "system/Patient.read"} <= set(
        openid_config["scopes_supported"]
    )


def test_openid_configuration_passes_authlib_validation(openid_config):
    # authlib's own checks of OIDC Discovery §3 and RFC 8414 §2 (raise on a violation).
    OpenIDProviderMetadata(openid_config).validate()
    AuthorizationServerMetadata(openid_config).validate()


def test_rfc8414_metadata_matches_openid_configuration(server, openid_config):
    assert get_json(server, "/.well-known/oauth-authorization-server") == openid_config


def test_smart_configuration(server, smart_config):
    issuer = server.issuer
    assert smart_config["issuer"] == issuer
    assert smart_config["authorization_endpoint"] == issuer + "/authorize"
    assert smart_config["token_endpoint"] == issuer + "/token"
    assert smart_config["jwks_uri"] == issuer + "/jwks"
    assert smart_config["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in smart_config["grant_types_supported"]
    assert {
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "sso-openid-connect",
        "permission-offline",
    } <= set(smart_config["capabilities"])


def test_jwks_publishes_public_signing_keys_only(server):
    jwks = get_json(server, "/jwks")
    keys = jwks["keys"]
    assert {k["alg"] for k in keys} >= {"ES256", "RS256"}
    for key in keys:
        assert key["kid"]
        assert key["use"] == "sig"
        # no private parameters (RFC 7518 §6.2.2, §6.3.2)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), key
    assert len({k["kid"] for k in keys}) == len(keys)
