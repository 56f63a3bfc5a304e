//! Browser sessions (SSO) and CSRF protection for the server's own forms.
//!
//! The session cookie holds a random 256-bit token; the store keeps only its keyed hash. The
//! CSRF cookie holds a random value; a form's CSRF token is the keyed hash of that value and the
//! pending request's handle, so a token is good only in the browser and for the request it was
//! issued for.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::secret::{HashPurpose, SecretString, random_id, random_token};
use crate::state::AppState;
use crate::store::{SessionRecord, StoreError};

/// The SSO session cookie.
pub const SESSION_COOKIE: &str = "zarish_session";
/// The CSRF cookie.
pub const CSRF_COOKIE: &str = "zarish_csrf";

/// The value of cookie `name` in the request, if present.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, `Secure` when served over TLS.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The live session of the request's cookie, if any.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, StoreError> {
    let Some(token) = cookie_value(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = state.hash_key.hash(HashPurpose::Session, token);
    state.store.find_session(&hash, state.now()).await
}

/// Starts a session for `user_id` after authentication with methods `amr`. Returns the record
/// and the `Set-Cookie` header value.
pub async fn start(
    state: &AppState,
    user_id: &str,
    amr: &str,
) -> Result<(SessionRecord, HeaderValue), StoreError> {
    let now = state.now();
    let ttl = state.settings.lifetimes.session;
    let token: SecretString = random_token();
    let record = SessionRecord {
        id: random_id(),
        token_hash: state.hash_key.hash(HashPurpose::Session, token.expose()),
        user_id: user_id.to_owned(),
        auth_time: now,
        amr: amr.to_owned(),
        created_at: now,
        expires_at: now + ttl,
    };
    state.store.insert_session(&record).await?;
    let cookie = set_cookie(
        SESSION_COOKIE,
        token.expose(),
        ttl,
        state.settings.secure_cookies(),
    );
    Ok((record, cookie))
}

/// The browser's CSRF cookie value, and a `Set-Cookie` for it when it had none.
pub fn csrf_cookie(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(existing) = cookie_value(headers, CSRF_COOKIE) {
        return (existing.to_owned(), None);
    }
    let fresh = random_id();
    let header = set_cookie(CSRF_COOKIE, &fresh, 3600, state.settings.secure_cookies());
    (fresh, Some(header))
}

/// The CSRF token for a form about pending request `handle`.
pub fn csrf_token(state: &AppState, cookie: &str, handle: &str) -> String {
    state
        .hash_key
        .hash(HashPurpose::Csrf, &format!("{cookie}|{handle}"))
}

/// Whether a submitted CSRF token is valid for this browser and request.
pub fn csrf_valid(
    state: &AppState,
    headers: &HeaderMap,
    handle: &str,
    token: Option<&str>,
) -> bool {
    let (Some(cookie), Some(token)) = (cookie_value(headers, CSRF_COOKIE), token) else {
        return false;
    };
    state
        .hash_key
        .verify(HashPurpose::Csrf, &format!("{cookie}|{handle}"), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; zarish_session=abc; b=2"),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }

    #[test]
    fn cookie_flags() {
        let v = set_cookie("n", "v", 60, true);
        let s = v.to_str().expect("ascii");
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Lax") && s.contains("Secure"));
        assert!(
            !set_cookie("n", "v", 60, false)
                .to_str()
                .expect("ascii")
                .contains("Secure")
        );
    }
}
