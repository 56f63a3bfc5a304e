//! Strict parsing of OAuth parameters from a query string or an
//! `application/x-www-form-urlencoded` body: bounded size and count, UTF-8 only, and no parameter
//! twice (RFC 6749 §3.1). An empty value counts as absent.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};

use crate::oauth::error::OAuthError;

/// The largest body the OAuth endpoints read.
pub const MAX_BODY: usize = 64 * 1024;
/// The most parameters one request may carry.
pub const MAX_PARAMS: usize = 64;

/// Why a request's parameters were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A parameter appears more than once.
    #[error("a parameter is repeated")]
    Duplicate,
    /// A name or value is not valid UTF-8.
    #[error("parameters must be UTF-8")]
    NotUtf8,
    /// Too many parameters.
    #[error("too many parameters")]
    TooMany,
    /// A NUL character, which no parameter may hold (and PostgreSQL text cannot store).
    #[error("parameters must not contain NUL")]
    Nul,
    /// A POST without a form content type.
    #[error("content type must be application/x-www-form-urlencoded")]
    ContentType,
    /// The body exceeds [`MAX_BODY`].
    #[error("body too large")]
    TooLarge,
}

impl From<ParamError> for OAuthError {
    fn from(err: ParamError) -> Self {
        match err {
            ParamError::Duplicate => OAuthError::InvalidRequest("a parameter is repeated"),
            ParamError::NotUtf8 => OAuthError::InvalidRequest("parameters must be UTF-8"),
            ParamError::TooMany => OAuthError::InvalidRequest("too many parameters"),
            ParamError::Nul => OAuthError::InvalidRequest("parameters must not contain NUL"),
            ParamError::ContentType => {
                OAuthError::InvalidRequest("content type must be application/x-www-form-urlencoded")
            }
            ParamError::TooLarge => OAuthError::PayloadTooLarge,
        }
    }
}

impl axum::response::IntoResponse for ParamError {
    fn into_response(self) -> axum::response::Response {
        OAuthError::from(self).into_response()
    }
}

/// Parsed request parameters.
#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes.
    pub fn parse(raw: &[u8]) -> Result<Self, ParamError> {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(raw) {
            if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                return Err(ParamError::NotUtf8);
            }
            if name.contains('\0') || value.contains('\0') {
                return Err(ParamError::Nul);
            }
            if map.len() >= MAX_PARAMS {
                return Err(ParamError::TooMany);
            }
            if map.insert(name.into_owned(), value.into_owned()).is_some() {
                return Err(ParamError::Duplicate);
            }
        }
        Ok(Self(map))
    }

    /// A parameter's value; empty values count as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn require(&self, name: &str, missing: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or(OAuthError::InvalidRequest(missing))
    }
}

/// Whether a content type is a form.
fn is_form(content_type: Option<&header::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ParamError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            let query = req.uri().query().unwrap_or("");
            if query.len() > MAX_BODY {
                return Err(ParamError::TooLarge);
            }
            return Params::parse(query.as_bytes());
        }

        if !is_form(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ParamError::ContentType);
        }
        let declared_too_large = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY);
        if declared_too_large {
            return Err(ParamError::TooLarge);
        }
        // A read failure here is either the length limit or a broken connection; both end the
        // request without touching any state, so one answer serves.
        let body: Bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| ParamError::TooLarge)?;
        Params::parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_duplicates() {
        let p = Params::parse(b"a=1&b=two+words&c=").expect("valid");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("two words"));
        assert_eq!(p.get("c"), None);
        assert_eq!(Params::parse(b"a=1&a=2").err(), Some(ParamError::Duplicate));
    }

    #[test]
    fn rejects_non_utf8() {
        assert_eq!(Params::parse(b"a=%FF").err(), Some(ParamError::NotUtf8));
        assert_eq!(Params::parse(b"a=\xff").err(), Some(ParamError::NotUtf8));
    }

    #[test]
    fn rejects_nul() {
        assert_eq!(Params::parse(b"a=x%00y").err(), Some(ParamError::Nul));
    }

    #[test]
    fn rejects_too_many() {
        let body: String = (0..100).map(|i| format!("p{i}=1&")).collect();
        assert_eq!(
            Params::parse(body.as_bytes()).err(),
            Some(ParamError::TooMany)
        );
    }
}
