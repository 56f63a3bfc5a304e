//! The userinfo endpoint (OIDC Core §5.3), protected by a bearer access token (RFC 6750) that
//! carries `openid`. Claims follow the granted standard scopes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::http::params::{ParamError, Params};
use crate::model::Scopes;
use crate::oauth::error::OAuthError;
use crate::state::AppState;
use crate::tokens::{AccessClaims, Expectation, Expiry, TokenKind};

/// A bearer-token failure (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No credentials at all: a bare challenge, without an error code (RFC 6750 §3.1).
    Missing,
    /// Malformed, or a token sent in more than one way.
    InvalidRequest,
    /// The token is invalid, expired or revoked.
    InvalidToken,
    /// The token lacks the `openid` scope.
    InsufficientScope,
    /// The sign-in behind the token was not strong or recent enough (RFC 9470).
    InsufficientUserAuthentication,
    /// Our failure.
    Internal(OAuthError),
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge) = match self {
            BearerError::Missing => {
                let mut response = StatusCode::UNAUTHORIZED.into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"zarish\""),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return response;
            }
            BearerError::InvalidRequest => {
                (StatusCode::BAD_REQUEST, "Bearer error=\"invalid_request\"")
            }
            BearerError::InvalidToken => {
                (StatusCode::UNAUTHORIZED, "Bearer error=\"invalid_token\"")
            }
            BearerError::InsufficientUserAuthentication => (
                StatusCode::UNAUTHORIZED,
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A fresh second factor is required\", \
                 acr_values=\"urn:zarish:acr:mfa\", max_age=300",
            ),
            BearerError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "Bearer error=\"insufficient_scope\", scope=\"openid\"",
            ),
            BearerError::Internal(err) => return err.into_response(),
        };
        let code = challenge.split('"').nth(1).unwrap_or("invalid_request");
        let mut response = (status, Json(json!({ "error": code }))).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The bearer token of the `Authorization` header, if one is sent.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, BearerError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| BearerError::InvalidRequest)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            BearerError::InvalidRequest
        } else {
            BearerError::Missing
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    if token.trim().is_empty() {
        return Err(BearerError::InvalidRequest);
    }
    Ok(Some(token.trim().to_owned()))
}

/// Verifies a bearer access token and that it is not revoked.
pub async fn verify_bearer(state: &AppState, token: &str) -> Result<AccessClaims, BearerError> {
    let claims: AccessClaims = state
        .verify_token(
            token,
            Expectation {
                kind: TokenKind::Access,
                issuer: &state.settings.issuer,
                audience: Some(&state.settings.audience),
                now: state.now(),
                expiry: Expiry::Enforce,
            },
        )
        .await
        .map_err(|_| BearerError::InvalidToken)?;
    let revoked = state
        .store
        .is_token_revoked(&claims.jti)
        .await
        .map_err(|e| BearerError::Internal(e.into()))?;
    if revoked {
        return Err(BearerError::InvalidToken);
    }
    Ok(claims)
}

/// `GET` and `POST /userinfo`.
pub async fn userinfo(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    match answer(&state, &method, &headers, params).await {
        Ok(body) => {
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(err) => err.into_response(),
    }
}

async fn answer(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    params: Result<Params, ParamError>,
) -> Result<Value, BearerError> {
    let from_header = bearer_token(headers)?;
    // RFC 6750 §2.2 allows a form-encoded body; a token in the URL query (§2.3) is refused by
    // simply not being read (RFC 9700 §4.3.2).
    let from_body = match params {
        Ok(p) if *method == Method::POST => p.get("access_token").map(str::to_owned),
        Ok(_) => None,
        Err(ParamError::ContentType) => None,
        Err(_) => return Err(BearerError::InvalidRequest),
    };
    let token = match (from_header, from_body) {
        (Some(t), None) | (None, Some(t)) => t,
        (Some(_), Some(_)) => return Err(BearerError::InvalidRequest),
        (None, None) => return Err(BearerError::Missing),
    };

    let claims = verify_bearer(state, &token).await?;
    let scope = Scopes::parse(&claims.scope).map_err(|_| BearerError::InvalidToken)?;
    if !scope.contains("openid") || claims.auth_time.is_none() {
        return Err(BearerError::InsufficientScope);
    }
    let user = state
        .store
        .get_user(&claims.sub)
        .await
        .map_err(|e| BearerError::Internal(e.into()))?
        .ok_or(BearerError::InvalidToken)?;

    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id));
    if scope.contains("profile") {
        let name = match (&user.given_name, &user.family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(g), None) => Some(g.clone()),
            (None, Some(f)) => Some(f.clone()),
            (None, None) => None,
        };
        out.insert("preferred_username".into(), json!(user.username));
        insert_some(&mut out, "name", name);
        insert_some(&mut out, "given_name", user.given_name.clone());
        insert_some(&mut out, "family_name", user.family_name.clone());
        out.insert("updated_at".into(), json!(user.created_at));
    }
    if scope.contains("email") && user.email.is_some() {
        insert_some(&mut out, "email", user.email.clone());
        out.insert("email_verified".into(), json!(false));
    }
    if scope.contains("phone") && user.phone_number.is_some() {
        insert_some(&mut out, "phone_number", user.phone_number.clone());
        out.insert("phone_number_verified".into(), json!(false));
    }
    if scope.contains("address")
        && let Some(address) = &user.address
    {
        out.insert("address".into(), json!({ "formatted": address }));
    }
    Ok(Value::Object(out))
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        map.insert(key.into(), json!(v));
    }
}
