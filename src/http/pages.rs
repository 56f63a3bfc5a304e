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
