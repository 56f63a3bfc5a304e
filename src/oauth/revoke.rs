//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole grant; revoking an
//! access token revokes that token. The answer is 200 whatever the token was, so the endpoint
//! reveals nothing about tokens a client does not own.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::ClientIdForLog;
use crate::http::params::Params;
use crate::oauth::client_auth;
use crate::oauth::error::OAuthError;
use crate::state::AppState;
use crate::tokens::{self, AccessClaims, Expectation, Expiry, RefreshClaims, TokenKind};

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
    let keys = state.keys.current();
    let issuer = state.settings.issuer.as_str();

    let refresh = tokens::verify::<RefreshClaims>(
        &keys,
        token,
        Expectation {
            kind: TokenKind::Refresh,
            issuer,
            audience: Some(issuer),
            now,
            expiry: Expiry::Enforce,
        },
    );
    if let Ok(claims) = refresh {
        if claims.client_id == client_id
            && let Some(record) = state.store.find_refresh_token(&claims.jti).await?
        {
            state.store.revoke_grant(&record.grant_id, now).await?;
        }
        return Ok(());
    }

    let access = tokens::verify::<AccessClaims>(
        &keys,
        token,
        Expectation {
            kind: TokenKind::Access,
            issuer,
            audience: Some(&state.settings.audience),
            now,
            expiry: Expiry::Enforce,
        },
    );
    if let Ok(claims) = access
        && claims.client_id == client_id
    {
        state.store.revoke_token_id(&claims.jti, claims.exp).await?;
    }
    Ok(())
}
