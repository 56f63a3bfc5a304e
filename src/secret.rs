//! Secrets: generation from the system CSPRNG, keyed hashing for storage, constant-time checks,
//! and a string type that never prints its value and is wiped when dropped.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A secret value (password, client secret, token). `Debug` and `Display` print `[redacted]`; the
/// value is reachable only through [`SecretString::expose`], and is zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret's value. Every caller is a place where the secret leaves its wrapper.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Fills a buffer from the operating system's CSPRNG.
///
/// # Panics
/// Never in practice: the system RNG failing means the process cannot do anything securely, and it
/// is better to stop than to continue with predictable secrets.
pub fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut buf = Zeroizing::new([0u8; N]);
    #[expect(clippy::expect_used, reason = "an RNG failure must stop the process")]
    SystemRandom::new()
        .fill(buf.as_mut())
        .expect("system random number generator failed");
    buf
}

/// A random 256-bit secret, base64url without padding (43 characters).
pub fn random_token() -> SecretString {
    SecretString::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>().as_ref()))
}

/// A random 128-bit identifier, base64url without padding (22 characters). Not a secret.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>().as_ref())
}

/// The server's keyed-hash key: stored tokens and secrets are kept only as
/// HMAC-SHA-256(key, purpose || value), so a stolen database does not yield usable credentials.
#[derive(Clone)]
pub struct HashKey {
    key: hmac::Key,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey([redacted])")
    }
}

/// What a keyed hash is for; mixing the purpose in keeps a hash of one kind from matching another.
#[derive(Debug, Clone, Copy)]
pub enum HashPurpose {
    /// A client secret.
    ClientSecret,
    /// An authorization code.
    AuthorizationCode,
    /// An SSO session cookie.
    Session,
    /// A pending authorization request handle.
    AuthRequest,
    /// A CSRF token.
    Csrf,
    /// A backup code of the second factor.
    BackupCode,
}

impl HashPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::ClientSecret => b"client-secret\0",
            Self::AuthorizationCode => b"authorization-code\0",
            Self::Session => b"session\0",
            Self::AuthRequest => b"auth-request\0",
            Self::Csrf => b"csrf\0",
            Self::BackupCode => b"backup-code\0",
        }
    }
}

impl HashKey {
    /// A key from 32 bytes of key material.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The keyed hash of `value` for `purpose`, base64url encoded.
    pub fn hash(&self, purpose: HashPurpose, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(purpose.label());
        ctx.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// Whether `value` hashes to `expected`, compared in constant time.
    pub fn verify(&self, purpose: HashPurpose, value: &str, expected: &str) -> bool {
        constant_time_eq(self.hash(purpose, value).as_bytes(), expected.as_bytes())
    }
}

/// Constant-time equality of two byte strings (the length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug() {
        let s = SecretString::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn keyed_hash_depends_on_purpose_and_key() {
        let k1 = HashKey::from_bytes(&[1; 32]);
        let k2 = HashKey::from_bytes(&[2; 32]);
        let h = k1.hash(HashPurpose::ClientSecret, "s");
        assert!(k1.verify(HashPurpose::ClientSecret, "s", &h));
        assert!(!k1.verify(HashPurpose::Session, "s", &h));
        assert!(!k2.verify(HashPurpose::ClientSecret, "s", &h));
        assert!(!k1.verify(HashPurpose::ClientSecret, "t", &h));
    }
}
