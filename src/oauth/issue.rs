//! Minting tokens: access tokens with the platform's claims, rotated refresh tokens, and ID
//! tokens. Every user-grant token is recorded against its grant so that revoking the grant
//! revokes it.

use serde::Serialize;

use crate::model::{Client, GrantType, Scopes, SigningAlg};
use crate::oauth::error::OAuthError;
use crate::rbac;
use crate::secret::random_id;
use crate::state::AppState;
use crate::store::{GrantRecord, RefreshRecord};
use crate::tokens::{self, AccessClaims, Audience, IdClaims, RefreshClaims, TokenKind};

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Granted scopes.
    pub scope: String,
    /// A refresh token, when `offline_access` or `online_access` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// An ID token, when `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

fn amr_list(amr: &str) -> Vec<String> {
    amr.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a grant with `scope` to `client` gets a refresh token.
pub fn wants_refresh(client: &Client, scope: &Scopes) -> bool {
    client.allows_grant(GrantType::RefreshToken)
        && (scope.contains("offline_access") || scope.contains("online_access"))
}

/// Issues a client-credentials access token: the client is the subject; no user claims.
pub fn client_token(
    state: &AppState,
    client: &Client,
    scope: &Scopes,
) -> Result<TokenResponse, OAuthError> {
    let now = state.now();
    let ttl = state.settings.lifetimes.access_token;
    let claims = AccessClaims {
        iss: state.settings.issuer.clone(),
        sub: client.client_id.clone(),
        aud: Audience::One(state.settings.audience.clone()),
        exp: now + ttl,
        iat: now,
        nbf: None,
        jti: random_id(),
        scope: scope.to_string(),
        client_id: client.client_id.clone(),
        auth_time: None,
        acr: None,
        amr: None,
        user_type: None,
        organization: None,
        permissions: None,
        country_context: None,
        hipaa_compliance: true,
    };
    let keys = state.keys.current();
    let access_token = tokens::sign(TokenKind::Access, keys.signer(SigningAlg::ES256), &claims)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: claims.scope,
        refresh_token: None,
        id_token: None,
    })
}

/// What to issue for a user grant.
#[derive(Debug)]
pub struct GrantIssue<'a> {
    /// The client.
    pub client: &'a Client,
    /// The grant.
    pub grant: &'a GrantRecord,
    /// Scope of the access token (the grant's, or narrower on refresh).
    pub access_scope: &'a Scopes,
    /// Scope of the refresh token (the grant's).
    pub grant_scope: &'a Scopes,
    /// OIDC nonce, for the code grant.
    pub nonce: Option<String>,
}

/// Issues the tokens of a user grant: access token, optional refresh token and ID token.
pub async fn grant_tokens(
    state: &AppState,
    issue: GrantIssue<'_>,
) -> Result<TokenResponse, OAuthError> {
    let now = state.now();
    let lifetimes = state.settings.lifetimes;
    let keys = state.keys.current();

    let user = state
        .store
        .get_user(&issue.grant.user_id)
        .await?
        .ok_or(OAuthError::InvalidGrant("the user no longer exists"))?;
    let org = state.store.get_organization(&user.organization_id).await?;

    let access = AccessClaims {
        iss: state.settings.issuer.clone(),
        sub: user.id.clone(),
        aud: Audience::One(state.settings.audience.clone()),
        exp: now + lifetimes.access_token,
        iat: now,
        nbf: None,
        jti: random_id(),
        scope: issue.access_scope.to_string(),
        client_id: issue.client.client_id.clone(),
        auth_time: Some(issue.grant.auth_time),
        acr: Some(crate::mfa::acr_for(&issue.grant.amr).to_owned()),
        amr: Some(amr_list(&issue.grant.amr)),
        user_type: Some(user.role.as_str().to_owned()),
        organization: Some(user.organization_id.clone()),
        permissions: Some(
            rbac::permissions(user.role)
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        ),
        country_context: org.map(|o| o.country),
        hipaa_compliance: true,
    };
    let access_token = tokens::sign(TokenKind::Access, keys.signer(SigningAlg::ES256), &access)?;
    state
        .store
        .record_access_token(&access.jti, &issue.grant.id, access.exp)
        .await?;

    let refresh_token = if wants_refresh(issue.client, issue.grant_scope) {
        let claims = RefreshClaims {
            iss: state.settings.issuer.clone(),
            sub: user.id.clone(),
            aud: Audience::One(state.settings.issuer.clone()),
            exp: (now + lifetimes.refresh_token).min(issue.grant.expires_at.max(now + 1)),
            iat: now,
            nbf: None,
            jti: random_id(),
            client_id: issue.client.client_id.clone(),
            token_type: "refresh".to_owned(),
            rotation_enabled: true,
        };
        let token = tokens::sign(TokenKind::Refresh, keys.signer(SigningAlg::ES256), &claims)?;
        state
            .store
            .insert_refresh_token(&RefreshRecord {
                jti: claims.jti.clone(),
                grant_id: issue.grant.id.clone(),
                client_id: issue.client.client_id.clone(),
                scope: issue.grant_scope.to_string(),
                issued_at: now,
                expires_at: claims.exp,
                rotated_at: None,
            })
            .await?;
        Some(token)
    } else {
        None
    };

    let id_token = if issue.access_scope.contains("openid") {
        let claims = IdClaims {
            iss: state.settings.issuer.clone(),
            sub: user.id.clone(),
            aud: Audience::One(issue.client.client_id.clone()),
            exp: now + lifetimes.id_token,
            iat: now,
            nbf: None,
            auth_time: issue.grant.auth_time,
            nonce: issue.nonce,
            at_hash: Some(tokens::at_hash(&access_token)),
            azp: issue.client.client_id.clone(),
            sid: Some(issue.grant.session_id.clone()),
            acr: Some(crate::mfa::acr_for(&issue.grant.amr).to_owned()),
            amr: amr_list(&issue.grant.amr),
        };
        let key = keys.signer(issue.client.id_token_alg);
        Some(tokens::sign(TokenKind::IdToken, key, &claims)?)
    } else {
        None
    };

    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetimes.access_token,
        scope: access.scope,
        refresh_token,
        id_token,
    })
}
