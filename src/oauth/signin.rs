//! Signing in during an authorization request: the password form, then, when the account has a
//! factor, its role requires one or the client asked for it, the second factor (or enrolment of
//! one). Every step is guarded by the brute-force checks of [`crate::throttle`] and by a CSRF
//! token bound to the browser and the pending request.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::factors::{self, FactorError, Proof};
use crate::http::ClientAddr;
use crate::http::pages::{self, BackupCodesPage, EnrollPage, LoginPage, NoticePage, OtpPage};
use crate::http::params::{ParamError, Params};
use crate::model::{Client, User};
use crate::oauth::authorize::{
    AuthorizationRequest, AuthorizeError, drop_pending, finish, keep_pending, load_pending,
    see_other, with_cookie,
};
use crate::oauth::error::OAuthError;
use crate::secret::SecretString;
use crate::session;
use crate::state::AppState;
use crate::throttle::{self, Attempt};

/// Longest accepted username or password on the sign-in form.
const MAX_LOGIN_FIELD: usize = 1024;

impl From<FactorError> for AuthorizeError {
    fn from(err: FactorError) -> Self {
        tracing::error!(target: "zarish::mfa", error = %err, "second-factor failure");
        AuthorizeError::Internal(OAuthError::ServerError)
    }
}

fn malformed() -> AuthorizeError {
    AuthorizeError::Page(StatusCode::BAD_REQUEST, "Malformed request.")
}

fn expired_form() -> AuthorizeError {
    AuthorizeError::Page(StatusCode::FORBIDDEN, "The form has expired.")
}

/// A step of the flow's common start: parse, load the pending request, check CSRF on posts.
async fn pending_step(
    state: &AppState,
    headers: &HeaderMap,
    params: Result<Params, ParamError>,
    check_csrf: bool,
) -> Result<(Params, Client, AuthorizationRequest, String), AuthorizeError> {
    let params = params.map_err(|_| malformed())?;
    let (client, request, rid) = load_pending(state, params.get("rid")).await?;
    if check_csrf && !session::csrf_valid(state, headers, &rid, params.get("csrf_token")) {
        return Err(expired_form());
    }
    Ok((params, client, request, rid))
}

/// The user whose password was verified for this request, awaiting the second factor.
async fn password_verified_user(
    state: &AppState,
    request: &AuthorizationRequest,
) -> Result<User, AuthorizeError> {
    let id = request.mfa_user.as_deref().ok_or(expired_form())?;
    state.store.get_user(id).await?.ok_or(expired_form())
}

fn csrf_for(state: &AppState, headers: &HeaderMap, rid: &str) -> (String, Option<HeaderValue>) {
    let (cookie, set) = session::csrf_cookie(state, headers);
    (session::csrf_token(state, &cookie, rid), set)
}

#[allow(clippy::too_many_arguments)]
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    client: &Client,
    rid: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let (csrf_token, set) = csrf_for(state, headers, rid);
    let page = LoginPage {
        client_name: &client.name,
        rid,
        csrf_token: &csrf_token,
        username,
        error,
    };
    with_cookie(pages::render(status, &page), set)
}

/// `GET /login?rid=…`: the sign-in form of a pending request.
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (_, client, request, rid) = pending_step(&state, &headers, params, false).await?;
        let username = request.login_hint.as_deref().unwrap_or("");
        Ok(login_form(
            &state,
            &headers,
            StatusCode::OK,
            &client,
            &rid,
            username,
            None,
        ))
    }
    .await;
    finish(&state, result)
}

/// `POST /login`: checks the password, then finishes sign-in or moves to the second factor.
pub async fn login_submit(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, client, mut request, rid) = pending_step(&state, &headers, params, true).await?;
        let username = params.get("username").unwrap_or("");
        let password = params.get("password").unwrap_or("");
        if username.len() > MAX_LOGIN_FIELD || password.len() > MAX_LOGIN_FIELD {
            return Err(malformed());
        }

        let ip = throttle::client_ip(peer, &headers, &state.settings.trusted_proxies);
        let check = async {
            let user = state.store.find_user_by_username(username).await?;
            let hash = user.as_ref().map(|u| u.password_hash.clone());
            let ok = state.passwords.verify(SecretString::new(password.to_owned()), hash).await?;
            Ok::<_, AuthorizeError>(user.filter(|_| ok))
        };
        let user = match throttle::attempt(&state, &ip, username, check).await? {
            Attempt::Passed(user) => user,
            Attempt::Blocked(seconds) => return Ok(pages::too_many_attempts(seconds)),
            Attempt::Refused => {
                tracing::info!(target: "zarish::security", client_id = %client.client_id, ip, "sign-in failed");
                let message = Some("Invalid username or password.");
                return Ok(login_form(&state, &headers, StatusCode::UNAUTHORIZED, &client, &rid, username, message));
            }
        };

        // OIDC Core 3.1.2.1: a hint names who should be signed in; someone else gets an error.
        if request.hint_sub.as_deref().is_some_and(|sub| sub != user.id) {
            drop_pending(&state, &rid).await?;
            return Err(AuthorizeError::redirect(
                &request,
                "login_required",
                "the signed-in user is not the one id_token_hint names",
            ));
        }

        let enrolled = factors::is_enrolled(&state, &user).await?;
        let required = state.settings.mfa_required_roles.contains(&user.role);
        if !enrolled && !required && !request.acr_mfa {
            let (cookie, next) = complete(&state, &client, &mut request, &rid, &user, "pwd", &ip).await?;
            let mut response = see_other(&next);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            return Ok(response);
        }

        drop_pending(&state, &rid).await?;
        request.mfa_user = Some(user.id.clone());
        let next = keep_pending(&state, &request, None).await?;
        let step = if enrolled { "otp" } else { "enroll" };
        Ok(see_other(&format!("/login/{step}?rid={next}")))
    }
    .await;
    finish(&state, result)
}

/// Ends a successful sign-in: starts the SSO session and carries the request on under a new
/// handle. The fresh sign-in satisfies `prompt=login`, `max_age`, `id_token_hint` and
/// `acr_values`, so they are cleared and the resumed request cannot loop back here. Returns the
/// session cookie and the resume URL.
async fn complete(
    state: &AppState,
    client: &Client,
    request: &mut AuthorizationRequest,
    rid: &str,
    user: &User,
    amr: &str,
    ip: &str,
) -> Result<(HeaderValue, String), AuthorizeError> {
    let (_session, cookie) = session::start(state, &user.id, amr).await?;
    throttle::record_success(state, ip, &user.username).await?;
    tracing::info!(
        target: "zarish::security",
        client_id = %client.client_id,
        user_id = %user.id,
        ip,
        amr,
        "sign-in succeeded"
    );

    drop_pending(state, rid).await?;
    request.prompt_login = false;
    request.max_age = None;
    request.hint_sub = None;
    request.acr_mfa = false;
    request.mfa_user = None;
    let next = keep_pending(state, request, None).await?;
    Ok((cookie, format!("/authorize/resume?rid={next}")))
}

/// `GET /login/otp?rid=…`: asks for the second factor.
pub async fn otp_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (_, _, request, rid) = pending_step(&state, &headers, params, false).await?;
        password_verified_user(&state, &request).await?;
        let (csrf_token, set) = csrf_for(&state, &headers, &rid);
        let page = OtpPage {
            action: "/login/otp",
            rid: &rid,
            csrf_token: &csrf_token,
            error: None,
        };
        Ok(with_cookie(pages::render(StatusCode::OK, &page), set))
    }
    .await;
    finish(&state, result)
}

/// `POST /login/otp`: checks a TOTP or backup code and finishes sign-in.
pub async fn otp_submit(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, client, mut request, rid) =
            pending_step(&state, &headers, params, true).await?;
        let user = password_verified_user(&state, &request).await?;

        let ip = throttle::client_ip(peer, &headers, &state.settings.trusted_proxies);
        let code = params.get("code").unwrap_or("");
        let check = async { Ok::<_, AuthorizeError>(factors::verify(&state, &user, code).await?) };
        let proof = match throttle::attempt(&state, &ip, &user.username, check).await? {
            Attempt::Passed(proof) => proof,
            Attempt::Blocked(seconds) => return Ok(pages::too_many_attempts(seconds)),
            Attempt::Refused => {
                tracing::info!(
                    target: "zarish::security",
                    client_id = %client.client_id,
                    user_id = %user.id,
                    ip,
                    "second factor failed"
                );
                let (csrf_token, set) = csrf_for(&state, &headers, &rid);
                let error = Some("That code is not valid. Try the newest code, or a backup code.");
                let page = OtpPage {
                    action: "/login/otp",
                    rid: &rid,
                    csrf_token: &csrf_token,
                    error,
                };
                return Ok(with_cookie(
                    pages::render(StatusCode::UNAUTHORIZED, &page),
                    set,
                ));
            }
        };

        let (cookie, next) =
            complete(&state, &client, &mut request, &rid, &user, "pwd otp", &ip).await?;
        let mut response = match proof {
            Proof::Totp => see_other(&next),
            Proof::BackupCode { remaining } => {
                let message = format!(
                    "You signed in with a backup code. You have {remaining} backup code{} left.",
                    if remaining == 1 { "" } else { "s" }
                );
                let page = NoticePage {
                    heading: "Backup code used",
                    message: &message,
                    next: Some(&next),
                };
                pages::render(StatusCode::OK, &page)
            }
        };
        response.headers_mut().append(header::SET_COOKIE, cookie);
        Ok(response)
    }
    .await;
    finish(&state, result)
}

fn enroll_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    rid: &str,
    enrollment: &crate::mfa::Enrollment,
    error: Option<&str>,
) -> Response {
    let (csrf_token, set) = csrf_for(state, headers, rid);
    let page = EnrollPage {
        action: "/login/enroll",
        rid,
        csrf_token: &csrf_token,
        qr_svg: &enrollment.qr_svg,
        secret: enrollment.secret_base32.expose(),
        uri: enrollment.uri.expose(),
        error,
    };
    with_cookie(pages::render(status, &page), set)
}

/// `GET /login/enroll?rid=…`: a user who must have a second factor and has none sets one up.
pub async fn enroll_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (_, _, request, rid) = pending_step(&state, &headers, params, false).await?;
        let user = password_verified_user(&state, &request).await?;
        let Some(enrollment) = factors::begin_enrollment(&state, &user).await? else {
            return Ok(see_other(&format!("/login/otp?rid={rid}")));
        };
        Ok(enroll_form(
            &state,
            &headers,
            StatusCode::OK,
            &rid,
            &enrollment,
            None,
        ))
    }
    .await;
    finish(&state, result)
}

/// `POST /login/enroll`: confirms the new factor with a first code, shows the backup codes once
/// and finishes sign-in.
pub async fn enroll_submit(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let (params, client, mut request, rid) =
            pending_step(&state, &headers, params, true).await?;
        let user = password_verified_user(&state, &request).await?;

        let ip = throttle::client_ip(peer, &headers, &state.settings.trusted_proxies);
        let code = params.get("code").unwrap_or("");
        let check = async {
            Ok::<_, AuthorizeError>(factors::confirm_enrollment(&state, &user, code).await?)
        };
        let codes = match throttle::attempt(&state, &ip, &user.username, check).await? {
            Attempt::Passed(codes) => codes,
            Attempt::Blocked(seconds) => return Ok(pages::too_many_attempts(seconds)),
            Attempt::Refused => {
                let Some(enrollment) = factors::pending_enrollment(&state, &user).await? else {
                    return Ok(see_other(&format!("/login/otp?rid={rid}")));
                };
                let error = Some("That code is not valid. Enter the code your app shows now.");
                return Ok(enroll_form(
                    &state,
                    &headers,
                    StatusCode::UNAUTHORIZED,
                    &rid,
                    &enrollment,
                    error,
                ));
            }
        };

        let (cookie, next) =
            complete(&state, &client, &mut request, &rid, &user, "pwd otp", &ip).await?;
        let page = BackupCodesPage {
            codes: codes.iter().map(|c| c.expose()).collect(),
            next: &next,
        };
        let mut response = pages::render(StatusCode::OK, &page);
        response.headers_mut().append(header::SET_COOKIE, cookie);
        Ok(response.into_response())
    }
    .await;
    finish(&state, result)
}
