//! The web edge: routes, per-request logging, request ids and health checks.

pub mod listener;
pub mod pages;
pub mod params;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use crate::account;
use crate::oauth::{authorize, introspect, revoke, signin, token};
use crate::oidc::{discovery, logout, userinfo};
use crate::secret::random_id;
use crate::state::AppState;

/// The TCP peer of the request, when the server was started with connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        Ok(ClientAddr(peer))
    }
}

/// The client id a handler learned, for the request log line.
#[derive(Debug, Clone)]
pub struct ClientIdForLog(pub String);

/// The longest a request may take, body included, before it is answered 408.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds the router with every route and middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::oauth_metadata),
        )
        .route(
            "/.well-known/smart-configuration",
            get(discovery::smart_configuration),
        )
        .route("/jwks", get(discovery::jwks))
        .route(
            "/authorize",
            get(authorize::authorize).post(authorize::authorize),
        )
        .route("/authorize/resume", get(authorize::resume))
        .route("/login", get(signin::login_page).post(signin::login_submit))
        .route("/login/otp", get(signin::otp_page).post(signin::otp_submit))
        .route(
            "/login/enroll",
            get(signin::enroll_page).post(signin::enroll_submit),
        )
        .route(
            "/consent",
            get(authorize::consent_page).post(authorize::consent_submit),
        )
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        .route("/introspect", post(introspect::introspect))
        .route(
            "/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route("/logout", get(logout::logout).post(logout::logout))
        .route("/account", get(account::show))
        .route("/account/mfa/enroll", post(account::enroll))
        .route("/account/mfa/backup-codes", post(account::regenerate))
        .route("/account/mfa/disable", post(account::disable))
        .route("/account/sessions/end", post(account::end_session))
        .route("/api/account/mfa", delete(account::api_disable_mfa))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.check_store().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(err) => {
            tracing::warn!(target: "zarish::store", error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "unavailable" })),
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "not_found" })),
    )
        .into_response()
}

/// Logs one structured line per request and sets security headers common to every response.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = random_id();

    let mut response = next.run(request).await;

    let status = response.status().as_u16();
    let latency_us = started.elapsed().as_micros() as u64;
    let client_id = response
        .extensions()
        .get::<ClientIdForLog>()
        .map(|c| c.0.clone());
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    tracing::info!(
        target: "zarish::request",
        %method,
        route,
        status,
        latency_us,
        client_id = client_id.as_deref(),
        request_id,
        "request"
    );
    response
}
