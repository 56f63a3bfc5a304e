//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, and `none` for public clients. Only
//! [`authenticate`] can make an [`AuthenticatedClient`], so an endpoint that needs one cannot
//! forget the check.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;

use crate::http::params::Params;
use crate::model::{Client, ClientKind};
use crate::oauth::error::OAuthError;
use crate::secret::{HashPurpose, SecretString};
use crate::state::AppState;

/// How the client proved its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic with the client id and secret.
    SecretBasic,
    /// `client_id` and `client_secret` in the form body.
    SecretPost,
    /// A public client that only names itself.
    None,
}

/// A client whose credentials were checked in this request.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    client: std::sync::Arc<Client>,
    method: AuthMethod,
}

impl AuthenticatedClient {
    /// The client's registration.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How it authenticated.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// Whether it proved possession of a secret.
    pub fn is_confidential(&self) -> bool {
        self.method != AuthMethod::None
    }
}

/// The longest client id or secret accepted.
const MAX_CREDENTIAL_LEN: usize = 256;

struct Presented {
    client_id: String,
    secret: Option<SecretString>,
    method: AuthMethod,
}

fn decode_form_component(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .filter(|s| !s.contains('\0'))
        .map(|s| s.into_owned())
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, SecretString)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = OAuthError::InvalidClient("malformed Basic credentials");
    let value = value.to_str().map_err(|_| bad.clone())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(bad);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidClient(
            "unsupported authentication scheme",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad.clone())?;
    let decoded = SecretString::new(String::from_utf8(decoded).map_err(|_| bad.clone())?);
    let (id, secret) = decoded.expose().split_once(':').ok_or(bad.clone())?;
    let id = decode_form_component(id).ok_or(bad.clone())?;
    let secret = SecretString::new(decode_form_component(secret).ok_or(bad)?);
    Ok(Some((id, secret)))
}

fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, OAuthError> {
    let basic = basic_credentials(headers)?;
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");

    let presented = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "use only one client authentication method",
            ));
        }
        (Some((id, secret)), None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::InvalidClient(
                    "client_id does not match credentials",
                ));
            }
            Presented {
                client_id: id,
                secret: Some(secret),
                method: AuthMethod::SecretBasic,
            }
        }
        (None, Some(secret)) => Presented {
            client_id: body_id
                .ok_or(OAuthError::InvalidClient("client_id is required"))?
                .to_owned(),
            secret: Some(SecretString::new(secret.to_owned())),
            method: AuthMethod::SecretPost,
        },
        (None, None) => Presented {
            client_id: body_id
                .ok_or(OAuthError::InvalidClient(
                    "client authentication is required",
                ))?
                .to_owned(),
            secret: None,
            method: AuthMethod::None,
        },
    };

    let too_long = presented.client_id.len() > MAX_CREDENTIAL_LEN
        || presented
            .secret
            .as_ref()
            .is_some_and(|s| s.expose().len() > MAX_CREDENTIAL_LEN);
    if too_long {
        return Err(OAuthError::InvalidClient("client authentication failed"));
    }
    Ok(presented)
}

/// Authenticates the client of a token-endpoint-style request.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<AuthenticatedClient, OAuthError> {
    let failed = OAuthError::InvalidClient("client authentication failed");
    let presented = presented(headers, params)?;

    let client = state
        .clients
        .get(&state.store, &presented.client_id, state.now())
        .await?;

    let Some(client) = client else {
        if let Some(secret) = &presented.secret {
            // Spend the same work as for a known client, so timing does not reveal client ids.
            let _ = state
                .hash_key
                .verify(HashPurpose::ClientSecret, secret.expose(), "");
        }
        tracing::debug!(target: "zarish::oauth", "unknown client");
        return Err(failed);
    };

    match (client.kind, &presented.secret, &client.secret_hash) {
        (ClientKind::Confidential, Some(secret), Some(hash)) => {
            if !state
                .hash_key
                .verify(HashPurpose::ClientSecret, secret.expose(), hash)
            {
                tracing::debug!(target: "zarish::oauth", client_id = %client.client_id, "wrong client secret");
                return Err(failed);
            }
        }
        (ClientKind::Public, None, _) => {}
        _ => return Err(failed),
    }

    Ok(AuthenticatedClient {
        client,
        method: presented.method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_decodes_form_encoding() {
        let mut headers = HeaderMap::new();
        let creds = STANDARD.encode("my%20client:s%3Acret+x");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {creds}")).expect("header"),
        );
        let (id, secret) = basic_credentials(&headers).expect("ok").expect("present");
        assert_eq!(id, "my client");
        assert_eq!(secret.expose(), "s:cret x");
    }

    #[test]
    fn basic_rejects_garbage() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(basic_credentials(&headers).is_err());
    }
}
