//! OAuth errors and their single mapping to RFC 6749 §5.2 responses. Internal causes are logged
//! here, once, and never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::keys::KeyError;
use crate::password::PasswordError;
use crate::store::StoreError;
use crate::tokens::TokenError;

/// An error answered to an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// `invalid_request`: a parameter is missing, repeated, malformed or unsupported.
    InvalidRequest(&'static str),
    /// `invalid_client`: client authentication failed (401 with `WWW-Authenticate`).
    InvalidClient(&'static str),
    /// `invalid_grant`: the code, refresh token or verifier is invalid, expired, revoked or reused.
    InvalidGrant(&'static str),
    /// `unauthorized_client`: the client may not use this grant type.
    UnauthorizedClient(&'static str),
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`: the scope is unknown, malformed or exceeds what is allowed.
    InvalidScope(&'static str),
    /// `invalid_request` with 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// `temporarily_unavailable` with 503: the store cannot be reached.
    TemporarilyUnavailable,
    /// `server_error` with 500: our own fault, already logged.
    ServerError,
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'static str>,
}

impl OAuthError {
    /// The RFC 6749 error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::PayloadTooLarge => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }

    /// A short, fixed, human-readable description.
    pub fn description(&self) -> Option<&'static str> {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::InvalidScope(d) => Some(d),
            OAuthError::UnsupportedGrantType => Some("grant_type is not supported"),
            OAuthError::PayloadTooLarge => Some("request body too large"),
            OAuthError::TemporarilyUnavailable => Some("the server cannot reach its database"),
            OAuthError::ServerError => None,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code(),
            error_description: self.description(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(self, OAuthError::InvalidClient(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"zarish\", charset=\"UTF-8\""),
            );
        }
        if matches!(self, OAuthError::TemporarilyUnavailable) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => {
                tracing::warn!(target: "zarish::store", error = %err, "store unavailable");
                OAuthError::TemporarilyUnavailable
            }
            _ => {
                tracing::error!(target: "zarish::store", error = %err, "store failure");
                OAuthError::ServerError
            }
        }
    }
}

impl From<KeyError> for OAuthError {
    fn from(err: KeyError) -> Self {
        tracing::error!(target: "zarish::keys", error = %err, "signing key failure");
        OAuthError::ServerError
    }
}

impl From<PasswordError> for OAuthError {
    fn from(err: PasswordError) -> Self {
        tracing::error!(target: "zarish::password", error = %err, "password hasher failure");
        OAuthError::ServerError
    }
}

impl From<TokenError> for OAuthError {
    fn from(err: TokenError) -> Self {
        if err == TokenError::Signing {
            tracing::error!(target: "zarish::tokens", "token signing failed");
            return OAuthError::ServerError;
        }
        OAuthError::InvalidGrant("the token is invalid")
    }
}
