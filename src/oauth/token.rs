//! The token endpoint (RFC 6749 §3.2): authorization code with PKCE, refresh token with rotation
//! and reuse detection, and client credentials.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::ClientIdForLog;
use crate::http::params::Params;
use crate::model::{ClientKind, GrantType, Scopes};
use crate::oauth::client_auth::{self, AuthenticatedClient};
use crate::oauth::error::OAuthError;
use crate::oauth::issue::{self, GrantIssue, TokenResponse};
use crate::oauth::pkce;
use crate::secret::HashPurpose;
use crate::state::AppState;
use crate::store::{CodeRedemption, RefreshRotation};
use crate::tokens::{Expectation, Expiry, RefreshClaims, TokenKind};

/// `POST /token`.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    if !state.store_is_healthy() {
        return OAuthError::TemporarilyUnavailable.into_response();
    }
    let client = match client_auth::authenticate(&state, &headers, &params).await {
        Ok(client) => client,
        Err(err) => return err.into_response(),
    };
    let log_id = ClientIdForLog(client.client().client_id.clone());

    let mut response = match exchange(&state, &client, &params).await {
        Ok(tokens) => no_store(Json(tokens).into_response()),
        Err(err) => err.into_response(),
    };
    response.extensions_mut().insert(log_id);
    response
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn exchange(
    state: &AppState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let grant_type: GrantType = params
        .require("grant_type", "grant_type is required")?
        .parse()
        .map_err(|_| OAuthError::UnsupportedGrantType)?;

    if !client.client().allows_grant(grant_type) {
        return Err(OAuthError::UnauthorizedClient(
            "the client may not use this grant type",
        ));
    }

    match grant_type {
        GrantType::AuthorizationCode => authorization_code(state, client, params).await,
        GrantType::RefreshToken => refresh_token(state, client, params).await,
        GrantType::ClientCredentials => client_credentials(state, client, params),
    }
}

async fn authorization_code(
    state: &AppState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = params.require("code", "code is required")?;
    let redirect_uri = params.require("redirect_uri", "redirect_uri is required")?;
    let verifier = params.get("code_verifier");
    let now = state.now();

    let code_hash = state.hash_key.hash(HashPurpose::AuthorizationCode, code);
    let (code, grant) = match state.store.redeem_code(&code_hash, now).await? {
        CodeRedemption::Fresh(found) => *found,
        CodeRedemption::Replayed { grant_id } => {
            state.store.revoke_grant(&grant_id, now).await?;
            tracing::warn!(
                target: "zarish::security",
                client_id = %client.client().client_id,
                grant_id = %grant_id,
                "authorization code replayed; grant revoked"
            );
            return Err(OAuthError::InvalidGrant(
                "the authorization code is invalid",
            ));
        }
        CodeRedemption::Unknown => {
            return Err(OAuthError::InvalidGrant(
                "the authorization code is invalid",
            ));
        }
    };

    if code.client_id != client.client().client_id {
        state.store.revoke_grant(&grant.id, now).await?;
        return Err(OAuthError::InvalidGrant(
            "the authorization code is invalid",
        ));
    }
    if code.expires_at <= now {
        return Err(OAuthError::InvalidGrant(
            "the authorization code has expired",
        ));
    }
    if code.redirect_uri != redirect_uri {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&code.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify(challenge, verifier) => {}
        (Some(_), _) => return Err(OAuthError::InvalidGrant("PKCE verification failed")),
        (None, Some(_)) => {
            return Err(OAuthError::InvalidGrant(
                "code_verifier sent but no code_challenge was",
            ));
        }
        (None, None) if client.client().pkce_required => {
            return Err(OAuthError::InvalidGrant("PKCE verification failed"));
        }
        (None, None) => {}
    }

    let scope = Scopes::parse(&grant.scope).map_err(|_| OAuthError::ServerError)?;
    issue::grant_tokens(
        state,
        GrantIssue {
            client: client.client(),
            grant: &grant,
            access_scope: &scope,
            grant_scope: &scope,
            nonce: code.nonce,
        },
    )
    .await
}

async fn refresh_token(
    state: &AppState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let presented = params.require("refresh_token", "refresh_token is required")?;
    let now = state.now();
    let invalid = OAuthError::InvalidGrant("the refresh token is invalid");

    let claims: RefreshClaims = state
        .verify_token(
            presented,
            Expectation {
                kind: TokenKind::Refresh,
                issuer: &state.settings.issuer,
                audience: Some(&state.settings.issuer),
                now,
                expiry: Expiry::Enforce,
            },
        )
        .await
        .map_err(|_| invalid.clone())?;
    if claims.token_type != "refresh" || claims.client_id != client.client().client_id {
        return Err(invalid);
    }

    let record = state
        .store
        .find_refresh_token(&claims.jti)
        .await?
        .ok_or(invalid.clone())?;
    let grant_scope = Scopes::parse(&record.scope).map_err(|_| OAuthError::ServerError)?;
    let access_scope = match params.get("scope") {
        None => grant_scope.clone(),
        Some(raw) => {
            let requested =
                Scopes::parse(raw).map_err(|_| OAuthError::InvalidScope("malformed scope"))?;
            if !requested.is_subset(&grant_scope) {
                return Err(OAuthError::InvalidScope(
                    "a refresh may not widen the scope",
                ));
            }
            requested
        }
    };

    let grant = match state.store.rotate_refresh_token(&claims.jti, now).await? {
        RefreshRotation::Rotated(found) => found.1,
        RefreshRotation::Reused { grant_id } => {
            state.store.revoke_grant(&grant_id, now).await?;
            tracing::warn!(
                target: "zarish::security",
                client_id = %client.client().client_id,
                grant_id = %grant_id,
                "refresh token reused; token family revoked"
            );
            return Err(invalid);
        }
        RefreshRotation::Revoked | RefreshRotation::Unknown => return Err(invalid),
    };

    issue::grant_tokens(
        state,
        GrantIssue {
            client: client.client(),
            grant: &grant,
            access_scope: &access_scope,
            grant_scope: &grant_scope,
            nonce: None,
        },
    )
    .await
}

fn client_credentials(
    state: &AppState,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let registered = client.client();
    if registered.kind != ClientKind::Confidential || !client.is_confidential() {
        return Err(OAuthError::UnauthorizedClient(
            "client_credentials needs a confidential client",
        ));
    }

    let scope = match params.get("scope") {
        None => registered.scope.clone(),
        Some(raw) => Scopes::parse(raw).map_err(|_| OAuthError::InvalidScope("malformed scope"))?,
    };
    let user_only = ["openid", "offline_access", "online_access"];
    if !scope.is_subset(&registered.scope) || user_only.iter().any(|s| scope.contains(s)) {
        return Err(OAuthError::InvalidScope(
            "the scope is not allowed for this client",
        ));
    }

    issue::client_token(state, registered, &scope)
}
