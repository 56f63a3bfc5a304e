//! Token introspection (RFC 7662) for authenticated confidential clients (resource servers).
//! An inactive, expired, revoked, foreign or malformed token gets `{"active": false}` and
//! nothing else.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::ClientIdForLog;
use crate::http::params::Params;
use crate::oauth::client_auth;
use crate::oauth::error::OAuthError;
use crate::state::AppState;
use crate::tokens::{self, Presented};

/// The introspection answer.
#[derive(Debug, Serialize)]
pub struct Introspection {
    active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<ActiveDetails>,
}

#[derive(Debug, Serialize)]
struct ActiveDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    client_id: String,
    sub: String,
    iss: String,
    exp: i64,
    iat: i64,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<tokens::Audience>,
    jti: String,
}

const INACTIVE: Introspection = Introspection {
    active: false,
    details: None,
};

/// `POST /introspect`.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let client = match client_auth::authenticate(&state, &headers, &params).await {
        Ok(client) if client.is_confidential() => client,
        Ok(_) => {
            return OAuthError::InvalidClient("introspection needs a confidential client")
                .into_response();
        }
        Err(err) => return err.into_response(),
    };
    let log_id = ClientIdForLog(client.client().client_id.clone());

    let result = match params.require("token", "token is required") {
        Ok(token) => inspect(&state, &client.client().client_id, token).await,
        Err(err) => Err(err),
    };
    let mut response = match result {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response.extensions_mut().insert(log_id);
    response
}

/// Access tokens are shown to any confidential client (resource servers introspect tokens issued
/// to others); a refresh token only to the client it was issued to (RFC 7662 §2.2 lets the answer
/// depend on the caller).
async fn inspect(state: &AppState, caller: &str, token: &str) -> Result<Introspection, OAuthError> {
    match state.presented_token(token).await {
        Some(Presented::Access(c)) => {
            if state.store.is_token_revoked(&c.jti).await? {
                return Ok(INACTIVE);
            }
            Ok(Introspection {
                active: true,
                details: Some(ActiveDetails {
                    scope: Some(c.scope),
                    client_id: c.client_id,
                    sub: c.sub,
                    iss: c.iss,
                    exp: c.exp,
                    iat: c.iat,
                    token_type: "Bearer",
                    aud: Some(c.aud),
                    jti: c.jti,
                }),
            })
        }
        Some(Presented::Refresh(c)) => {
            let Some(record) = state.store.find_refresh_token(&c.jti).await? else {
                return Ok(INACTIVE);
            };
            let spent = record.rotated_at.is_some();
            if spent
                || record.client_id != c.client_id
                || c.client_id != caller
                || state.store.is_token_revoked(&c.jti).await?
            {
                return Ok(INACTIVE);
            }
            Ok(Introspection {
                active: true,
                details: Some(ActiveDetails {
                    scope: Some(record.scope),
                    client_id: c.client_id,
                    sub: c.sub,
                    iss: c.iss,
                    exp: c.exp,
                    iat: c.iat,
                    token_type: "refresh_token",
                    aud: None,
                    jti: c.jti,
                }),
            })
        }
        None => Ok(INACTIVE),
    }
}
