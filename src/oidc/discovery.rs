//! `/.well-known/openid-configuration`, `/.well-known/oauth-authorization-server`,
//! `/.well-known/smart-configuration` and the JWKS. Every URL derives from the configured issuer,
//! never from the request's `Host`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;

/// Scopes this server knows.
pub const SCOPES_SUPPORTED: &[&str] = &[
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
    "online_access",
    "account",
    "fhirUser",
    "launch/patient",
    "patient/Patient.read",
    "patient/Observation.read",
    "patient/Encounter.read",
    "user/Patient.read",
    "user/Patient.write",
    "user/Observation.read",
    "user/Observation.write",
    "user/Encounter.read",
    "user/Encounter.write",
    "system/Patient.read",
    "system/Observation.read",
    "system/Encounter.read",
];

fn endpoints(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": SCOPES_SUPPORTED,
    })
}

fn cached(value: Value) -> Response {
    let mut response = Json(value).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

fn openid_document(issuer: &str) -> Value {
    let mut doc = endpoints(issuer);
    if let Value::Object(map) = &mut doc {
        let extra = json!({
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "acr_values_supported": [crate::mfa::ACR_PWD, crate::mfa::ACR_MFA],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "response_modes_supported": ["query"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "sid", "amr", "acr",
                "name", "given_name", "family_name", "preferred_username", "email", "email_verified",
                "phone_number", "address"
            ],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "ui_locales_supported": ["en"],
        });
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
    }
    doc
}

/// `GET /.well-known/openid-configuration`.
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    cached(openid_document(&state.settings.issuer))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn oauth_metadata(State(state): State<AppState>) -> Response {
    cached(openid_document(&state.settings.issuer))
}

/// `GET /.well-known/smart-configuration` (SMART App Launch 2.x).
pub async fn smart_configuration(State(state): State<AppState>) -> Response {
    let mut doc = endpoints(&state.settings.issuer);
    if let Value::Object(map) = &mut doc {
        let extra = json!({
            "management_endpoint": Value::Null,
            "capabilities": [
                "launch-standalone",
                "client-public",
                "client-confidential-symmetric",
                "sso-openid-connect",
                "context-standalone-patient",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
                "permission-v1",
                "authorize-post"
            ],
        });
        if let Value::Object(extra) = extra {
            map.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        }
    }
    cached(doc)
}

/// `GET /jwks`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.keys.current();
    let mut response = Json(keys.jwks().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
