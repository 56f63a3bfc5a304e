//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). The session ends, its grants and
//! therefore its refresh tokens are revoked, and the browser returns to the client only through a
//! `post_logout_redirect_uri` registered for that client, matched exactly. Without an
//! `id_token_hint` naming the current session, the user confirms first, so a third-party page
//! cannot sign users out behind their backs.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::pages::{self, LogoutPage, NoticePage};
use crate::http::params::{ParamError, Params};
use crate::model::Client;
use crate::session::{self, SESSION_COOKIE};
use crate::state::AppState;
use crate::tokens::{Expectation, Expiry, IdClaims, TokenKind};

const CONFIRM_HANDLE: &str = "logout";

/// `GET` and `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let Ok(params) = params else {
        return pages::error(StatusCode::BAD_REQUEST, "Malformed request.");
    };
    match run(&state, &headers, &params).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

async fn hint_claims(state: &AppState, hint: &str) -> Option<IdClaims> {
    state
        .verify_token::<IdClaims>(
            hint,
            Expectation {
                kind: TokenKind::IdToken,
                issuer: &state.settings.issuer,
                audience: None,
                now: state.now(),
                expiry: Expiry::DangerousIgnore,
            },
        )
        .await
        .ok()
}

async fn run(state: &AppState, headers: &HeaderMap, params: &Params) -> Result<Response, Response> {
    let unavailable = |_| {
        pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable.",
        )
    };
    let hint = match params.get("id_token_hint") {
        Some(raw) => Some(hint_claims(state, raw).await.ok_or_else(|| {
            pages::error(StatusCode::BAD_REQUEST, "The id_token_hint is not valid.")
        })?),
        None => None,
    };

    let client_id = params
        .get("client_id")
        .map(str::to_owned)
        .or_else(|| hint.as_ref().map(|h| h.azp.clone()));
    if let (Some(given), Some(h)) = (params.get("client_id"), &hint)
        && given != h.azp
    {
        return Err(pages::error(
            StatusCode::BAD_REQUEST,
            "client_id does not match the id_token_hint.",
        ));
    }
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client: Option<Client> = match &client_id {
                Some(id) => state.store.get_client(id).await.map_err(unavailable)?,
                None => None,
            };
            let registered =
                client.is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
            if !registered {
                return Err(pages::error(
                    StatusCode::BAD_REQUEST,
                    "The post-logout redirect URI is not registered for this application.",
                ));
            }
            Some(uri.to_owned())
        }
    };

    let current = session::current(state, headers)
        .await
        .map_err(unavailable)?;
    let hinted_session = match (&hint, &current) {
        (Some(h), Some(s)) => h.sid.as_deref() == Some(s.id.as_str()),
        _ => false,
    };
    let confirmed = params.get("confirm") == Some("yes")
        && session::csrf_valid(state, headers, CONFIRM_HANDLE, params.get("csrf_token"));
    if current.is_some() && !hinted_session && !confirmed {
        let (cookie, set) = session::csrf_cookie(state, headers);
        let csrf_token = session::csrf_token(state, &cookie, CONFIRM_HANDLE);
        let page = LogoutPage {
            csrf_token: &csrf_token,
            client_id: client_id.as_deref(),
            post_logout_redirect_uri: redirect.as_deref(),
            state: params.get("state"),
        };
        let mut response = pages::render(StatusCode::OK, &page);
        if let Some(set) = set {
            response.headers_mut().append(header::SET_COOKIE, set);
        }
        return Ok(response);
    }

    if let Some(session) = &current {
        state
            .store
            .end_session(&session.id, state.now())
            .await
            .map_err(unavailable)?;
        tracing::info!(target: "zarish::security", "session ended by logout");
    }
    let mut response = match redirect {
        Some(uri) => back_to_client(&uri, params.get("state")),
        None => {
            let page = NoticePage {
                heading: "Signed out",
                message: "You are signed out.",
                next: None,
            };
            pages::render(StatusCode::OK, &page)
        }
    };
    let clear = session::set_cookie(SESSION_COOKIE, "", 0, state.settings.secure_cookies());
    response.headers_mut().append(header::SET_COOKIE, clear);
    Ok(response)
}

fn back_to_client(uri: &str, client_state: Option<&str>) -> Response {
    let Ok(mut url) = url::Url::parse(uri) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "The post-logout redirect URI is invalid.",
        );
    };
    if let Some(s) = client_state {
        url.query_pairs_mut().append_pair("state", s);
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => pages::error(
            StatusCode::BAD_REQUEST,
            "The post-logout redirect URI is invalid.",
        ),
    }
}
