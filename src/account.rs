//! The signed-in user's own account pages (second factor, backup codes, sessions) and the API
//! operation that needs a fresh second factor (RFC 9470 step-up).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::factors::{self, FactorError};
use crate::http::ClientAddr;
use crate::http::pages::{self, AccountEnroll, AccountPage, AccountSession, BackupCodesPage};
use crate::http::params::{ParamError, Params};
use crate::model::User;
use crate::oidc::userinfo::{BearerError, bearer_token, verify_bearer};
use crate::session;
use crate::state::AppState;
use crate::store::{SessionRecord, StoreError};
use crate::throttle::{self, Attempt};

/// How recent a second factor must be for the step-up API (seconds).
pub const STEP_UP_MAX_AGE: i64 = 300;
/// The scope a token needs to manage its user's account through the API.
pub const ACCOUNT_SCOPE: &str = "account";

fn role_requires_factor() -> Response {
    let body = json!({
        "error": "access_denied",
        "error_description": "this role must use a second factor; an administrator can reset it",
    });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// Why an account request failed.
#[derive(Debug)]
enum AccountError {
    NotSignedIn,
    BadForm,
    Internal,
}

impl From<StoreError> for AccountError {
    fn from(err: StoreError) -> Self {
        tracing::warn!(target: "zarish::account", error = %err, "store failure");
        AccountError::Internal
    }
}

impl From<FactorError> for AccountError {
    fn from(err: FactorError) -> Self {
        tracing::error!(target: "zarish::account", error = %err, "second-factor failure");
        AccountError::Internal
    }
}

impl IntoResponse for AccountError {
    fn into_response(self) -> Response {
        match self {
            AccountError::NotSignedIn => pages::error(
                StatusCode::UNAUTHORIZED,
                "You are not signed in. Sign in through an application first.",
            ),
            AccountError::BadForm => pages::error(
                StatusCode::FORBIDDEN,
                "The form has expired. Reload the page.",
            ),
            AccountError::Internal => pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable.",
            ),
        }
    }
}

async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(SessionRecord, User), AccountError> {
    let session = session::current(state, headers)
        .await?
        .ok_or(AccountError::NotSignedIn)?;
    let user = state
        .store
        .get_user(&session.user_id)
        .await?
        .ok_or(AccountError::NotSignedIn)?;
    Ok((session, user))
}

fn form_handle(session: &SessionRecord) -> String {
    format!("account:{}", session.id)
}

async fn checked_form(
    state: &AppState,
    headers: &HeaderMap,
    params: Result<Params, ParamError>,
) -> Result<(Params, SessionRecord, User), AccountError> {
    let params = params.map_err(|_| AccountError::BadForm)?;
    let (session, user) = signed_in(state, headers).await?;
    if !session::csrf_valid(
        state,
        headers,
        &form_handle(&session),
        params.get("csrf_token"),
    ) {
        return Err(AccountError::BadForm);
    }
    Ok((params, session, user))
}

fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{} seconds", s.max(0)),
        s if s < 7200 => format!("{} minutes", s / 60),
        s => format!("{} hours", s / 3600),
    }
}

async fn account_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, AccountError> {
    let (session, user) = signed_in(state, headers).await?;
    let now = state.now();
    let enrollment = factors::begin_enrollment(state, &user).await?;
    let backup_left = state.store.count_backup_codes(&user.id).await?;
    let sessions = state
        .store
        .list_sessions(&user.id, now)
        .await?
        .into_iter()
        .map(|s| AccountSession {
            current: s.id == session.id,
            age: ago(now - s.created_at),
            id: s.id,
        })
        .collect();
    let (cookie, set) = session::csrf_cookie(state, headers);
    let csrf_token = session::csrf_token(state, &cookie, &form_handle(&session));
    let page = AccountPage {
        username: &user.username,
        csrf_token: &csrf_token,
        enroll: enrollment.as_ref().map(|e| AccountEnroll {
            qr_svg: &e.qr_svg,
            secret: e.secret_base32.expose(),
        }),
        backup_left,
        sessions,
        notice,
        error,
    };
    let mut response = pages::render(status, &page);
    if let Some(set) = set {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    Ok(response)
}

/// `GET /account`.
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    account_page(&state, &headers, StatusCode::OK, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Runs a code check of the signed-in user under the brute-force rules; a blocked attempt is
/// answered with the 429 page.
async fn guarded<T>(
    state: &AppState,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    user: &User,
    check: impl std::future::Future<Output = Result<Option<T>, FactorError>>,
) -> Result<Result<Option<T>, Response>, AccountError> {
    let ip = throttle::client_ip(peer, headers, &state.settings.trusted_proxies);
    let check = async { Ok::<_, AccountError>(check.await?) };
    Ok(
        match throttle::attempt(state, &ip, &user.username, check).await? {
            Attempt::Blocked(seconds) => Err(pages::too_many_attempts(seconds)),
            Attempt::Refused => Ok(None),
            Attempt::Passed(value) => Ok(Some(value)),
        },
    )
}

fn backup_codes_page(codes: &[crate::secret::SecretString]) -> Response {
    let page = BackupCodesPage {
        codes: codes.iter().map(|c| c.expose()).collect(),
        next: "/account",
    };
    pages::render(StatusCode::OK, &page)
}

/// `POST /account/mfa/enroll`: confirms a factor started on the account page.
pub async fn enroll(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, _, user) = checked_form(&state, &headers, params).await?;
        let code = params.get("code").unwrap_or("").to_owned();
        match guarded(
            &state,
            peer,
            &headers,
            &user,
            factors::confirm_enrollment(&state, &user, &code),
        )
        .await?
        {
            Err(blocked) => Ok(blocked),
            Ok(Some(codes)) => Ok(backup_codes_page(&codes)),
            Ok(None) => {
                let error = Some("That code is not valid. Scan the new QR code and try again.");
                account_page(&state, &headers, StatusCode::UNAUTHORIZED, None, error).await
            }
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /account/mfa/backup-codes`: new backup codes, after a fresh second factor.
pub async fn regenerate(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, _, user) = checked_form(&state, &headers, params).await?;
        let code = params.get("code").unwrap_or("").to_owned();
        match guarded(
            &state,
            peer,
            &headers,
            &user,
            factors::verify(&state, &user, &code),
        )
        .await?
        {
            Err(blocked) => Ok(blocked),
            Ok(Some(_)) => Ok(backup_codes_page(
                &factors::regenerate_backup_codes(&state, &user).await?,
            )),
            Ok(None) => {
                account_page(
                    &state,
                    &headers,
                    StatusCode::UNAUTHORIZED,
                    None,
                    Some("That code is not valid."),
                )
                .await
            }
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /account/mfa/disable`: removes the factor, after a fresh second factor.
pub async fn disable(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, _, user) = checked_form(&state, &headers, params).await?;
        let code = params.get("code").unwrap_or("").to_owned();
        match guarded(
            &state,
            peer,
            &headers,
            &user,
            factors::verify(&state, &user, &code),
        )
        .await?
        {
            Err(blocked) => Ok(blocked),
            Ok(Some(_)) => {
                factors::remove(&state, &user).await?;
                account_page(
                    &state,
                    &headers,
                    StatusCode::OK,
                    Some("Two-step sign-in is off."),
                    None,
                )
                .await
            }
            Ok(None) => {
                account_page(
                    &state,
                    &headers,
                    StatusCode::UNAUTHORIZED,
                    None,
                    Some("That code is not valid."),
                )
                .await
            }
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /account/sessions/end`: ends one of the user's own sessions (and its refresh tokens).
pub async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, _, user) = checked_form(&state, &headers, params).await?;
        let sid = params.get("sid").unwrap_or("");
        let own = state
            .store
            .list_sessions(&user.id, state.now())
            .await?
            .into_iter()
            .any(|s| s.id == sid);
        if own {
            state.store.end_session(sid, state.now()).await?;
        }
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/account"));
        Ok::<_, AccountError>(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /api/account/mfa`: removes the caller's second factor. The token must carry the
/// `account` scope (403 `insufficient_scope` otherwise), and the sign-in behind it must have used
/// a second factor within the last five minutes, else the answer tells the client to step up
/// (RFC 9470 `insufficient_user_authentication`). Users of a role that requires a second factor
/// cannot remove theirs at all (only `zarish user reset-mfa` can).
pub async fn api_disable_mfa(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let token = bearer_token(&headers)?.ok_or(BearerError::Missing)?;
        let claims = verify_bearer(&state, &token).await?;
        let fresh = claims
            .auth_time
            .is_some_and(|t| state.now() - t <= STEP_UP_MAX_AGE);
        let second = claims
            .amr
            .as_ref()
            .is_some_and(|amr| amr.iter().any(|m| m == "otp"));
        if !fresh || !second {
            return Err(BearerError::InsufficientUserAuthentication);
        }
        let internal = |e: FactorError| {
            tracing::error!(target: "zarish::account", error = %e, "second-factor failure");
            BearerError::Internal(crate::oauth::error::OAuthError::ServerError)
        };
        let user = state
            .store
            .get_user(&claims.sub)
            .await
            .map_err(|e| BearerError::Internal(e.into()))?
            .ok_or(BearerError::InvalidToken)?;
        if state.settings.mfa_required_roles.contains(&user.role) {
            return Ok(role_requires_factor());
        }
        factors::remove(&state, &user).await.map_err(internal)?;
        Ok(Json(json!({ "mfa": "disabled" })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
