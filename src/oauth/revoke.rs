//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole grant; revoking an
//! access token revokes that token. An unknown, invalid or expired token answers 200 (§2.2); a
//! valid token issued to another client is refused with `unauthorized_client` (§2.1) and stays
//! valid.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::ClientIdForLog;
use crate::http::params::Params;
use crate::oauth::client_auth;
use crate::oauth::error::OAuthError;
use crate::state::AppState;
use crate::tokens::Presented;

/// `POST /revoke`.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    let client = match client_auth::authenticate(&state, &headers, &params).await {
        Ok(client) => client,
        Err(err) => return err.into_response(),
    };
    let log_id = ClientIdForLog(client.client().client_id.clone());

    let result = match params.require("token", "token is required") {
        Ok(token) => revoke_token(&state, &client.client().client_id, token).await,
        Err(err) => Err(err),
    };
    let mut response = match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => err.into_response(),
    };
    response.extensions_mut().insert(log_id);
    response
}

async fn revoke_token(state: &AppState, client_id: &str, token: &str) -> Result<(), OAuthError> {
    let now = state.now();
    match state.presented_token(token).await {
        Some(Presented::Refresh(claims)) => {
            if claims.client_id != client_id {
                return Err(not_yours());
            }
            if let Some(record) = state.store.find_refresh_token(&claims.jti).await? {
                state.store.revoke_grant(&record.grant_id, now).await?;
            }
        }
        Some(Presented::Access(claims)) => {
            if claims.client_id != client_id {
                return Err(not_yours());
            }
            state.store.revoke_token_id(&claims.jti, claims.exp).await?;
        }
        None => {}
    }
    Ok(())
}

fn not_yours() -> OAuthError {
    OAuthError::UnauthorizedClient("the token was not issued to this client")
}
