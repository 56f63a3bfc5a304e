//! Server-rendered pages (askama templates, HTML-escaped). They work without JavaScript.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// The sign-in form.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// The requesting client's display name.
    pub client_name: &'a str,
    /// Pending request handle.
    pub rid: &'a str,
    /// CSRF token.
    pub csrf_token: &'a str,
    /// Prefilled username (from `login_hint` or the failed attempt).
    pub username: &'a str,
    /// A message after a failed attempt.
    pub error: Option<&'a str>,
}

/// The consent form.
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    /// The requesting client's display name.
    pub client_name: &'a str,
    /// Requested scopes.
    pub scopes: Vec<&'a str>,
    /// Pending request handle.
    pub rid: &'a str,
    /// CSRF token.
    pub csrf_token: &'a str,
}

/// An error shown to the user instead of redirecting.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    /// What went wrong, in plain words.
    pub message: &'a str,
}

/// The second-factor form.
#[derive(Template)]
#[template(path = "otp.html")]
pub struct OtpPage<'a> {
    /// Where the form posts.
    pub action: &'a str,
    /// Pending request handle.
    pub rid: &'a str,
    /// CSRF token.
    pub csrf_token: &'a str,
    /// A message after a failed attempt.
    pub error: Option<&'a str>,
}

/// TOTP enrolment during sign-in.
#[derive(Template)]
#[template(path = "enroll.html")]
pub struct EnrollPage<'a> {
    /// Where the form posts.
    pub action: &'a str,
    /// Pending request handle.
    pub rid: &'a str,
    /// CSRF token.
    pub csrf_token: &'a str,
    /// The QR code, an SVG we rendered ourselves.
    pub qr_svg: &'a str,
    /// The base32 secret.
    pub secret: &'a str,
    /// The `otpauth://` URI.
    pub uri: &'a str,
    /// A message after a failed attempt.
    pub error: Option<&'a str>,
}

/// Backup codes, shown once.
#[derive(Template)]
#[template(path = "backup_codes.html")]
pub struct BackupCodesPage<'a> {
    /// The codes.
    pub codes: Vec<&'a str>,
    /// Where "Continue" leads.
    pub next: &'a str,
}

/// A short message with an optional "Continue" link.
#[derive(Template)]
#[template(path = "notice.html")]
pub struct NoticePage<'a> {
    /// Heading.
    pub heading: &'a str,
    /// Message.
    pub message: &'a str,
    /// Where "Continue" leads.
    pub next: Option<&'a str>,
}

/// The logout confirmation.
#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    /// CSRF token.
    pub csrf_token: &'a str,
    /// Carried through.
    pub client_id: Option<&'a str>,
    /// Carried through.
    pub post_logout_redirect_uri: Option<&'a str>,
    /// Carried through.
    pub state: Option<&'a str>,
}

/// Enrolment material on the account page.
pub struct AccountEnroll<'a> {
    /// The QR code SVG.
    pub qr_svg: &'a str,
    /// The base32 secret.
    pub secret: &'a str,
}

/// One session on the account page.
pub struct AccountSession {
    /// Session id.
    pub id: String,
    /// How long ago it started, in words.
    pub age: String,
    /// Whether it is this browser's.
    pub current: bool,
}

/// The signed-in user's account page.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    /// Username.
    pub username: &'a str,
    /// CSRF token.
    pub csrf_token: &'a str,
    /// Enrolment material when no factor is active.
    pub enroll: Option<AccountEnroll<'a>>,
    /// Unused backup codes.
    pub backup_left: i64,
    /// Live sessions.
    pub sessions: Vec<AccountSession>,
    /// A confirmation.
    pub notice: Option<&'a str>,
    /// An error.
    pub error: Option<&'a str>,
}

/// Renders a page with the headers every page carries: no caching, no framing, no scripts.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    let Ok(body) = page.render() else {
        tracing::error!(target: "zarish::http", "template rendering failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An error page with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    render(status, &ErrorPage { message })
}

/// The answer to a blocked sign-in: 429 with `Retry-After` and a page that says when to retry.
pub fn too_many_attempts(retry_after: i64) -> Response {
    let minutes = (retry_after + 59) / 60;
    let message = if retry_after < 60 {
        format!("Too many failed sign-in attempts. Try again in {retry_after} seconds.")
    } else {
        format!("Too many failed sign-in attempts. Try again in {minutes} minutes.")
    };
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, &message);
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_page_escapes_values() {
        let page = LoginPage {
            client_name: "<script>x</script>",
            rid: "r",
            csrf_token: "c",
            username: "\"><b>",
            error: None,
        };
        let html = page.render().expect("render");
        assert!(!html.contains("<script>x"));
        assert!(!html.contains("\"><b>"));
    }
}
