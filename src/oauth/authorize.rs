//! The authorization endpoint (RFC 6749 §4.1, OIDC Core §3.1.2) and the sign-in and consent
//! steps it may need.
//!
//! An unknown client or a redirect URI that is not registered exactly ends on an error page and
//! never redirects; every later error redirects to the client with `error` and the original
//! `state` (RFC 6749 §4.1.2.1). A request that needs the user's sign-in or consent is kept in the
//! store under a random handle while the user answers the server's forms.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::http::pages::{self, ConsentPage};
use crate::http::params::{ParamError, Params};
use crate::model::{Client, ClientKind, GrantType, Scopes};
use crate::oauth::error::OAuthError;
use crate::oauth::issue;
use crate::oauth::pkce::CodeChallenge;
use crate::secret::{HashPurpose, SecretString, random_id, random_token};
use crate::session;
use crate::state::AppState;
use crate::store::{CodeRecord, GrantRecord, PendingAuthRequest, SessionRecord};
use crate::tokens::{Expectation, Expiry, IdClaims, TokenKind};

/// Longest accepted `state`, `nonce` or `login_hint`.
const MAX_OPAQUE_LEN: usize = 1024;

/// A validated authorization request, as kept while the user signs in or consents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) prompt_none: bool,
    pub(crate) prompt_login: bool,
    pub(crate) prompt_consent: bool,
    pub(crate) max_age: Option<i64>,
    pub(crate) login_hint: Option<String>,
    pub(crate) hint_sub: Option<String>,
    /// The client asked for a second factor (`acr_values` names the MFA level).
    #[serde(default)]
    pub(crate) acr_mfa: bool,
    /// The password was verified for this user; the second factor is still due.
    #[serde(default)]
    pub(crate) mfa_user: Option<String>,
}

/// Why an authorization request stops.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user; the client cannot be trusted with a redirect.
    Page(StatusCode, &'static str),
    /// Sent back to the client's registered redirect URI.
    Redirect {
        /// The registered redirect URI.
        redirect_uri: String,
        /// The request's `state`.
        state: Option<String>,
        /// The error code.
        error: &'static str,
        /// A fixed description.
        description: &'static str,
    },
    /// A failure of ours, shown as a page.
    Internal(OAuthError),
}

impl From<crate::store::StoreError> for AuthorizeError {
    fn from(err: crate::store::StoreError) -> Self {
        AuthorizeError::Internal(err.into())
    }
}

impl From<crate::password::PasswordError> for AuthorizeError {
    fn from(err: crate::password::PasswordError) -> Self {
        AuthorizeError::Internal(err.into())
    }
}

impl AuthorizeError {
    pub(crate) fn redirect(
        req: &AuthorizationRequest,
        error: &'static str,
        description: &'static str,
    ) -> Self {
        AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            error,
            description,
        }
    }
}

/// Carries the issuer into error redirects (RFC 9207).
struct Issuer<'a>(&'a str);

fn redirect_to(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let location = match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in pairs {
                    query.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => return pages::error(StatusCode::BAD_REQUEST, "The redirect URI is invalid."),
    };
    see_other(&location)
}

pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => pages::error(StatusCode::BAD_REQUEST, "The redirect URI is invalid."),
    }
}

impl AuthorizeError {
    fn into_response_with(self, issuer: Issuer<'_>) -> Response {
        match self {
            AuthorizeError::Page(status, message) => pages::error(status, message),
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![("error", error), ("error_description", description)];
                if let Some(state) = state.as_deref() {
                    pairs.push(("state", state));
                }
                pairs.push(("iss", issuer.0));
                redirect_to(&redirect_uri, &pairs)
            }
            AuthorizeError::Internal(OAuthError::TemporarilyUnavailable) => pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable. Please try again shortly.",
            ),
            AuthorizeError::Internal(_) => pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An internal error occurred.",
            ),
        }
    }
}

pub(crate) fn finish(state: &AppState, result: Result<Response, AuthorizeError>) -> Response {
    result.unwrap_or_else(|e| e.into_response_with(Issuer(&state.settings.issuer)))
}

/// `GET` and `POST /authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let params = params.map_err(|_| {
            AuthorizeError::Page(
                StatusCode::BAD_REQUEST,
                "The authorization request is malformed.",
            )
        })?;
        let (client, request) = validate(&state, &params).await?;
        proceed(&state, &headers, &client, request, None).await
    }
    .await;
    finish(&state, result)
}

fn bounded(params: &Params, name: &str) -> Result<Option<String>, ()> {
    match params.get(name) {
        Some(v) if v.len() > MAX_OPAQUE_LEN => Err(()),
        other => Ok(other.map(str::to_owned)),
    }
}

async fn validate(
    state: &AppState,
    params: &Params,
) -> Result<(Client, AuthorizationRequest), AuthorizeError> {
    let page = |msg| AuthorizeError::Page(StatusCode::BAD_REQUEST, msg);

    let client_id = params
        .get("client_id")
        .ok_or(page("The request names no client."))?;
    let client = state
        .store
        .get_client(client_id)
        .await?
        .ok_or(page("The application is not registered."))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or(page("The request has no redirect URI."))?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(page(
            "The redirect URI is not registered for this application.",
        ));
    }

    let mut request = AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope: String::new(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt_none: false,
        prompt_login: false,
        prompt_consent: false,
        max_age: None,
        login_hint: None,
        hint_sub: None,
        acr_mfa: false,
        mfa_user: None,
    };
    let Ok(state_param) = bounded(params, "state") else {
        return Err(AuthorizeError::redirect(
            &request,
            "invalid_request",
            "state is too long",
        ));
    };
    request.state = state_param;
    let fail = |error, description| AuthorizeError::redirect(&request, error, description);

    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(fail(
            "unauthorized_client",
            "the client may not use the authorization code flow",
        ));
    }
    if params.get("request").is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match params.get("response_type") {
        None => return Err(fail("invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }

    let scope = validate_scope(&client, params).map_err(|d| fail("invalid_scope", d))?;
    let code_challenge = validate_pkce(&client, params).map_err(|d| fail("invalid_request", d))?;
    let nonce =
        bounded(params, "nonce").map_err(|_| fail("invalid_request", "nonce is too long"))?;
    if code_challenge.is_none() && scope.contains("openid") && nonce.is_none() {
        return Err(fail(
            "invalid_request",
            "nonce is required when PKCE is not used",
        ));
    }
    let prompt = parse_prompt(params.get("prompt")).map_err(|d| fail("invalid_request", d))?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|v| *v >= 0).ok_or(fail(
            "invalid_request",
            "max_age must be a non-negative integer",
        ))?),
    };
    let login_hint = bounded(params, "login_hint")
        .map_err(|_| fail("invalid_request", "login_hint is too long"))?;
    let hint_sub = match params.get("id_token_hint") {
        None => None,
        Some(hint) => Some(hint_subject(state, &client, hint).await.ok_or(fail(
            "invalid_request",
            "id_token_hint is not a valid ID token",
        ))?),
    };

    // display, ui_locales, claims_locales and acr_values are accepted and need no action here;
    // unknown parameters are ignored (OIDC Core §3.1.2.1).
    request.scope = scope.to_string();
    request.nonce = nonce;
    request.code_challenge = code_challenge.map(|c| c.as_str().to_owned());
    (
        request.prompt_none,
        request.prompt_login,
        request.prompt_consent,
    ) = prompt;
    request.max_age = max_age;
    request.login_hint = login_hint;
    request.hint_sub = hint_sub;
    request.acr_mfa = params
        .get("acr_values")
        .is_some_and(|v| v.split(' ').any(|acr| acr == crate::mfa::ACR_MFA));
    Ok((client, request))
}

fn validate_scope(client: &Client, params: &Params) -> Result<Scopes, &'static str> {
    let raw = params.get("scope").ok_or("scope is required")?;
    let mut scope = Scopes::parse(raw).map_err(|_| "scope is malformed")?;
    if !client.allows_grant(GrantType::RefreshToken) {
        scope.remove("offline_access");
        scope.remove("online_access");
    }
    if scope.is_empty() || !scope.is_subset(&client.scope) {
        return Err("the requested scope is not allowed for this client");
    }
    Ok(scope)
}

fn validate_pkce(client: &Client, params: &Params) -> Result<Option<CodeChallenge>, &'static str> {
    let method = params.get("code_challenge_method");
    let Some(raw) = params.get("code_challenge") else {
        if client.pkce_required || client.kind == ClientKind::Public {
            return Err("code_challenge with code_challenge_method=S256 is required");
        }
        return Ok(None);
    };
    if method != Some("S256") {
        return Err("code_challenge_method must be S256");
    }
    CodeChallenge::parse(raw)
        .map(Some)
        .ok_or("code_challenge is malformed")
}

fn parse_prompt(raw: Option<&str>) -> Result<(bool, bool, bool), &'static str> {
    let (mut none, mut login, mut consent) = (false, false, false);
    for value in raw.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => none = true,
            "login" => login = true,
            "consent" => consent = true,
            "select_account" => {}
            _ => return Err("prompt has an unsupported value"),
        }
    }
    if none && (login || consent) {
        return Err("prompt=none cannot be combined with other values");
    }
    Ok((none, login, consent))
}

pub(crate) async fn hint_subject(state: &AppState, client: &Client, hint: &str) -> Option<String> {
    let claims: IdClaims = state
        .verify_token(
            hint,
            Expectation {
                kind: TokenKind::IdToken,
                issuer: &state.settings.issuer,
                audience: Some(&client.client_id),
                now: state.now(),
                expiry: Expiry::DangerousIgnore,
            },
        )
        .await
        .ok()?;
    Some(claims.sub)
}

/// Moves a validated request on: to sign-in, to consent, or to a code.
async fn proceed(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    request: AuthorizationRequest,
    pending: Option<String>,
) -> Result<Response, AuthorizeError> {
    let now = state.now();
    let session = session::current(state, headers).await?;

    let needs_login = login_needed(&request, session.as_ref(), now);
    if needs_login {
        if request.prompt_none {
            return Err(AuthorizeError::redirect(
                &request,
                "login_required",
                "the user must sign in",
            ));
        }
        let rid = keep_pending(state, &request, pending).await?;
        return Ok(see_other(&format!("/login?rid={rid}")));
    }
    let Some(session) = session else {
        return Err(AuthorizeError::Internal(OAuthError::ServerError));
    };

    let scope = Scopes::parse(&request.scope)
        .map_err(|_| AuthorizeError::Internal(OAuthError::ServerError))?;
    let consented = match state
        .store
        .get_consent(&session.user_id, &client.client_id)
        .await?
    {
        Some(granted) => scope.is_subset(&granted),
        None => false,
    };
    if request.prompt_consent || (!client.first_party && !consented) {
        if request.prompt_none {
            return Err(AuthorizeError::redirect(
                &request,
                "consent_required",
                "the user must consent",
            ));
        }
        let rid = keep_pending(state, &request, pending).await?;
        return Ok(see_other(&format!("/consent?rid={rid}")));
    }

    if let Some(rid) = pending {
        drop_pending(state, &rid).await?;
    }
    issue_code(state, client, &request, &session, &scope).await
}

/// Whether the request needs a (fresh) sign-in before it may go on: no session, `prompt=login`,
/// `max_age` passed, `id_token_hint` naming someone else, or a second factor asked for and not
/// used. Consent is only ever reached when this is false.
fn login_needed(request: &AuthorizationRequest, session: Option<&SessionRecord>, now: i64) -> bool {
    let Some(s) = session else {
        return true;
    };
    request.mfa_user.is_some()
        || request.prompt_login
        || request
            .max_age
            .is_some_and(|max| max == 0 || now - s.auth_time > max)
        || request
            .hint_sub
            .as_deref()
            .is_some_and(|sub| sub != s.user_id)
        || (request.acr_mfa && !crate::mfa::amr_has_second_factor(&s.amr))
}

pub(crate) async fn keep_pending(
    state: &AppState,
    request: &AuthorizationRequest,
    existing: Option<String>,
) -> Result<String, AuthorizeError> {
    if let Some(rid) = existing {
        return Ok(rid);
    }
    let now = state.now();
    let rid: SecretString = random_token();
    let params = serde_json::to_string(request)
        .map_err(|_| AuthorizeError::Internal(OAuthError::ServerError))?;
    state
        .store
        .insert_auth_request(&PendingAuthRequest {
            handle_hash: state.hash_key.hash(HashPurpose::AuthRequest, rid.expose()),
            client_id: request.client_id.clone(),
            params,
            created_at: now,
            expires_at: now + state.settings.lifetimes.auth_request,
        })
        .await?;
    Ok(rid.expose().to_owned())
}

pub(crate) async fn drop_pending(state: &AppState, rid: &str) -> Result<(), AuthorizeError> {
    let hash = state.hash_key.hash(HashPurpose::AuthRequest, rid);
    state.store.delete_auth_request(&hash).await?;
    Ok(())
}

pub(crate) async fn load_pending(
    state: &AppState,
    rid: Option<&str>,
) -> Result<(Client, AuthorizationRequest, String), AuthorizeError> {
    let expired = AuthorizeError::Page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired or is unknown.",
    );
    let rid = rid.filter(|r| r.len() <= 64).ok_or(AuthorizeError::Page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired or is unknown.",
    ))?;
    let hash = state.hash_key.hash(HashPurpose::AuthRequest, rid);
    let pending = state
        .store
        .find_auth_request(&hash, state.now())
        .await?
        .ok_or(expired)?;
    let request: AuthorizationRequest = serde_json::from_str(&pending.params)
        .map_err(|_| AuthorizeError::Internal(OAuthError::ServerError))?;
    let client = state
        .store
        .get_client(&request.client_id)
        .await?
        .ok_or(AuthorizeError::Page(
            StatusCode::BAD_REQUEST,
            "The application is not registered.",
        ))?;
    Ok((client, request, rid.to_owned()))
}

async fn issue_code(
    state: &AppState,
    client: &Client,
    request: &AuthorizationRequest,
    session: &SessionRecord,
    scope: &Scopes,
) -> Result<Response, AuthorizeError> {
    let now = state.now();
    let lifetimes = state.settings.lifetimes;
    let code: SecretString = random_token();
    let grant = GrantRecord {
        id: random_id(),
        client_id: client.client_id.clone(),
        user_id: session.user_id.clone(),
        session_id: session.id.clone(),
        scope: scope.to_string(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        created_at: now,
        expires_at: now
            + if issue::wants_refresh(client, scope) {
                lifetimes.refresh_token
            } else {
                lifetimes.access_token
            },
    };
    let record = CodeRecord {
        code_hash: state
            .hash_key
            .hash(HashPurpose::AuthorizationCode, code.expose()),
        grant_id: grant.id.clone(),
        client_id: client.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        expires_at: now + lifetimes.authorization_code,
    };
    state.store.insert_grant_with_code(&grant, &record).await?;

    let mut pairs = vec![("code", code.expose())];
    if let Some(s) = request.state.as_deref() {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &state.settings.issuer));
    Ok(redirect_to(&request.redirect_uri, &pairs))
}

pub(crate) fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /authorize/resume?rid=…`: continues a pending request after sign-in.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let params = params
            .map_err(|_| AuthorizeError::Page(StatusCode::BAD_REQUEST, "Malformed request."))?;
        let (client, request, rid) = load_pending(&state, params.get("rid")).await?;
        proceed(&state, &headers, &client, request, Some(rid)).await
    }
    .await;
    finish(&state, result)
}

/// `GET /consent?rid=…`: asks the signed-in user to allow the client's scopes.
pub async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let params = params
            .map_err(|_| AuthorizeError::Page(StatusCode::BAD_REQUEST, "Malformed request."))?;
        let (client, request, rid) = load_pending(&state, params.get("rid")).await?;
        let current = session::current(&state, &headers).await?;
        if login_needed(&request, current.as_ref(), state.now()) {
            return Ok(see_other(&format!("/login?rid={rid}")));
        }
        let (csrf_cookie, set) = session::csrf_cookie(&state, &headers);
        let csrf_token = session::csrf_token(&state, &csrf_cookie, &rid);
        let page = ConsentPage {
            client_name: &client.name,
            scopes: request.scope.split(' ').collect(),
            rid: &rid,
            csrf_token: &csrf_token,
        };
        Ok(with_cookie(pages::render(StatusCode::OK, &page), set))
    }
    .await;
    finish(&state, result)
}

/// `POST /consent`: records the user's decision and answers the client.
pub async fn consent_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ParamError>,
) -> Response {
    let result = async {
        let params = params
            .map_err(|_| AuthorizeError::Page(StatusCode::BAD_REQUEST, "Malformed request."))?;
        let (client, request, rid) = load_pending(&state, params.get("rid")).await?;
        if !session::csrf_valid(&state, &headers, &rid, params.get("csrf_token")) {
            return Err(AuthorizeError::Page(
                StatusCode::FORBIDDEN,
                "The form has expired.",
            ));
        }
        let current = session::current(&state, &headers).await?;
        let Some(session) = current.filter(|s| !login_needed(&request, Some(s), state.now()))
        else {
            return Ok(see_other(&format!("/login?rid={rid}")));
        };

        drop_pending(&state, &rid).await?;
        if params.get("decision") != Some("allow") {
            return Err(AuthorizeError::redirect(
                &request,
                "access_denied",
                "the user denied the request",
            ));
        }
        let scope = Scopes::parse(&request.scope)
            .map_err(|_| AuthorizeError::Internal(OAuthError::ServerError))?;
        state
            .store
            .save_consent(&session.user_id, &client.client_id, &scope, state.now())
            .await?;
        issue_code(&state, &client, &request, &session, &scope).await
    }
    .await;
    finish(&state, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_rules() {
        assert_eq!(parse_prompt(None), Ok((false, false, false)));
        assert_eq!(parse_prompt(Some("login consent")), Ok((false, true, true)));
        assert!(parse_prompt(Some("none login")).is_err());
        assert!(parse_prompt(Some("bogus")).is_err());
    }
}
