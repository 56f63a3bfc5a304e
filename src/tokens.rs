//! Token formats and their verification: JWT access tokens (RFC 9068, `typ: at+jwt`, ES256),
//! JWT refresh tokens (ES256, also tracked server-side by `jti`) and OpenID Connect ID tokens
//! (RS256 by default, ES256 on request).
//!
//! Verification is strict and ordered: bound the length, parse the header, refuse `crit`, require
//! a known `kid` whose algorithm equals the header's `alg`, verify the signature, and only then
//! read and check the claims (`iss`, `aud`, `exp`, `nbf`, token type) against the injected clock.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::{KeySet, SigningKey};
use crate::model::SigningAlg;

/// The longest token this server will parse.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a presented token was not accepted. Clients only ever learn "invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWS compact serialization, or too long.
    #[error("malformed token")]
    Malformed,
    /// The header names a `crit` extension, which this server supports none of.
    #[error("critical header extension")]
    CriticalHeader,
    /// The header's `typ` is not the expected one.
    #[error("wrong token type")]
    WrongType,
    /// No `kid`, or a `kid` this server does not hold.
    #[error("unknown key")]
    UnknownKey,
    /// The header's `alg` is not the algorithm of the key (or not allowed here).
    #[error("algorithm mismatch")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The claims do not decode.
    #[error("malformed claims")]
    MalformedClaims,
    /// Wrong issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// Not meant for this audience.
    #[error("wrong audience")]
    WrongAudience,
    /// Expired.
    #[error("expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("not yet valid")]
    NotYetValid,
    /// Signing failed (our fault).
    #[error("signing failed")]
    Signing,
}

/// An `aud` claim: one value or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `value` is one of the audiences.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(a) => a == value,
            Audience::Many(list) => list.iter().any(|a| a == value),
        }
    }
}

/// Claims every token of ours carries, used for the generic checks.
pub trait RegisteredClaims {
    /// `iss`.
    fn iss(&self) -> &str;
    /// `aud`.
    fn aud(&self) -> &Audience;
    /// `exp`.
    fn exp(&self) -> i64;
    /// `nbf`, if present.
    fn nbf(&self) -> Option<i64>;
}

macro_rules! registered_claims {
    ($t:ty) => {
        impl RegisteredClaims for $t {
            fn iss(&self) -> &str {
                &self.iss
            }
            fn aud(&self) -> &Audience {
                &self.aud
            }
            fn exp(&self) -> i64 {
                self.exp
            }
            fn nbf(&self) -> Option<i64> {
                self.nbf
            }
        }
    };
}

/// Claims of an access token (RFC 9068 plus the platform's claims).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id, or the client id for client credentials.
    pub sub: String,
    /// The protected API.
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before (never set by us; checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id.
    pub jti: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Authentication context class of the sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods of the sign-in (RFC 8176).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The user's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// The user's organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The user's effective `resource:action` permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// The country whose rules apply (the organization's country).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_context: Option<String>,
    /// Always true: the token was issued under the platform's HIPAA controls.
    pub hipaa_compliance: bool,
}
registered_claims!(AccessClaims);

/// Claims of a refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The issuer itself: only this server accepts it.
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id, tracked in the store.
    pub jti: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Always `refresh`.
    pub token_type: String,
    /// Always true: each use rotates the token.
    pub rotation_enabled: bool,
}
registered_claims!(RefreshClaims);

/// Claims of an ID token (OpenID Connect Core §2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client.
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The request's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Half-hash of the access token issued with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Authorized party.
    pub azp: String,
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Authentication context class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}
registered_claims!(IdClaims);

/// A token a client presents for revocation or introspection, verified.
#[derive(Debug, Clone)]
pub enum Presented {
    /// An access token.
    Access(AccessClaims),
    /// A refresh token.
    Refresh(RefreshClaims),
}

/// The kinds of token the server verifies, each with its own header rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `typ: at+jwt`, ES256.
    Access,
    /// `typ: rt+jwt`, ES256, `token_type: refresh`.
    Refresh,
    /// An ID token we issued, presented back as `id_token_hint`; RS256 or ES256.
    IdToken,
}

impl TokenKind {
    fn typ(self) -> &'static str {
        match self {
            TokenKind::Access => "at+jwt",
            TokenKind::Refresh => "rt+jwt",
            TokenKind::IdToken => "JWT",
        }
    }

    fn allows(self, alg: SigningAlg) -> bool {
        match self {
            TokenKind::Access | TokenKind::Refresh => alg == SigningAlg::ES256,
            TokenKind::IdToken => true,
        }
    }
}

/// Signs `claims` as a JWT of `kind` with `key`: the key's constant encoded header, the
/// encoded claims, and the signature of the two.
pub fn sign<T: Serialize>(
    kind: TokenKind,
    key: &SigningKey,
    claims: &T,
) -> Result<String, TokenError> {
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
    let header = key.encoded_header(kind.typ());
    let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);

    let signature = key
        .sign(token.as_bytes())
        .map_err(|_| TokenError::Signing)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The JOSE header fields this server looks at. Unknown fields are ignored, except that the
/// presence of `crit` refuses the token.
#[derive(Debug, Deserialize)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// How expiry is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// An expired token is refused.
    Enforce,
    /// Expiry is ignored (an `id_token_hint` may be an old ID token, OIDC Core §3.1.2.1).
    DangerousIgnore,
}

/// What a verification expects.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The kind of token.
    pub kind: TokenKind,
    /// Required issuer.
    pub issuer: &'a str,
    /// Required audience, if any.
    pub audience: Option<&'a str>,
    /// The current time.
    pub now: i64,
    /// Expiry handling.
    pub expiry: Expiry,
}

/// Verifies a token and returns its claims.
pub fn verify<T>(keys: &KeySet, token: &str, expect: Expectation<'_>) -> Result<T, TokenError>
where
    T: DeserializeOwned + RegisteredClaims,
{
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }

    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed)?;
    let header: JoseHeader =
        serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    if header.crit.is_some() {
        return Err(TokenError::CriticalHeader);
    }
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        let t = t.strip_prefix("application/").unwrap_or(t);
        t.eq_ignore_ascii_case(expect.kind.typ())
    });
    if !typ_ok {
        return Err(TokenError::WrongType);
    }

    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.by_kid(kid))
        .ok_or(TokenError::UnknownKey)?;
    if header.alg != key.alg.as_str() || !expect.kind.allows(key.alg) {
        return Err(TokenError::AlgorithmMismatch);
    }

    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }

    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    let claims: T = serde_json::from_slice(&payload).map_err(|_| TokenError::MalformedClaims)?;
    check_claims(&claims, expect)?;
    Ok(claims)
}

fn check_claims<T: RegisteredClaims>(
    claims: &T,
    expect: Expectation<'_>,
) -> Result<(), TokenError> {
    if claims.iss() != expect.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if let Some(aud) = expect.audience
        && !claims.aud().contains(aud)
    {
        return Err(TokenError::WrongAudience);
    }
    if expect.expiry == Expiry::Enforce && claims.exp() <= expect.now {
        return Err(TokenError::Expired);
    }
    if claims.nbf().is_some_and(|nbf| nbf > expect.now) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// The `at_hash` of an access token: the left half of its SHA-256, base64url.
pub fn at_hash(access_token: &str) -> String {
    let digest = digest::digest(&digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_oidc_example_shape() {
        assert_eq!(at_hash("abc").len(), 22);
        assert_ne!(at_hash("abc"), at_hash("abd"));
    }

    #[test]
    fn audience_contains() {
        assert!(Audience::One("a".into()).contains("a"));
        assert!(Audience::Many(vec!["a".into(), "b".into()]).contains("b"));
        assert!(!Audience::One("a".into()).contains("b"));
    }
}
