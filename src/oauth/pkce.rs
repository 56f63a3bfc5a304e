//! PKCE (RFC 7636), S256 only: `plain` would let an intercepted code be redeemed.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::constant_time_eq;

/// Whether `s` is 43 to 128 characters of the RFC 7636 unreserved set.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A well-formed S256 code challenge, as received at the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Accepts a challenge: a 43-character base64url SHA-256 value.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 43 && is_pkce_string(raw)).then(|| Self(raw.to_owned()))
    }

    /// The challenge text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `verifier` is well formed and hashes to `challenge`.
pub fn verify(challenge: &str, verifier: &str) -> bool {
    if !is_pkce_string(verifier) {
        return false;
    }
    let hash = digest::digest(&digest::SHA256, verifier.as_bytes());
    constant_time_eq(
        URL_SAFE_NO_PAD.encode(hash.as_ref()).as_bytes(),
        challenge.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(CodeChallenge::parse(challenge).is_some());
        assert!(verify(challenge, verifier));
        assert!(!verify(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx"
        ));
        assert!(!verify(challenge, "short"));
    }
}
