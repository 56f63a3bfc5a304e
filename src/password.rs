//! Password hashing with Argon2id (19 MiB, 2 passes, 1 lane: the OWASP baseline). Hashing runs on
//! tokio's blocking pool behind a semaphore, so a flood of sign-ins cannot starve the async
//! runtime that serves tokens.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::secret::{SecretString, random_bytes};

/// A failure of the password hasher itself (not a wrong password).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Hashing failed.
    #[error("password hashing failed")]
    Hash,
    /// The blocking task was cancelled.
    #[error("password hashing task failed")]
    Task,
}

fn argon2() -> Argon2<'static> {
    #[expect(
        clippy::expect_used,
        reason = "constant parameters that are known to be valid"
    )]
    let params = Params::new(19 * 1024, 2, 1, Some(32)).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (blocking; call from a blocking context).
pub fn hash_blocking(password: &SecretString) -> Result<String, PasswordError> {
    let salt =
        SaltString::encode_b64(random_bytes::<16>().as_ref()).map_err(|_| PasswordError::Hash)?;
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Whether `password` matches the PHC string `hash` (blocking). A malformed hash never matches.
pub fn verify_blocking(password: &SecretString, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

/// The bounded password hasher shared by the server.
#[derive(Debug, Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    dummy_hash: Arc<tokio::sync::OnceCell<String>>,
}

impl PasswordHasherPool {
    /// A pool running at most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Result<Self, PasswordError> {
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// The hash unknown users are checked against, computed once and off the start-up path (the
    /// server warms it up right after it starts listening).
    pub async fn dummy_hash(&self) -> Result<String, PasswordError> {
        self.dummy_hash
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| hash_blocking(&crate::secret::random_token()))
                    .await
                    .map_err(|_| PasswordError::Task)?
            })
            .await
            .cloned()
    }

    /// Verifies a password against a stored hash, or against a dummy hash when there is no user,
    /// so that an unknown user costs the same time as a wrong password.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => self.dummy_hash().await?,
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Task)?;
        let matched = tokio::task::spawn_blocking(move || verify_blocking(&password, &hash))
            .await
            .map_err(|_| PasswordError::Task)?;
        Ok(known && matched)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Task)?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|_| PasswordError::Task)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let pw = SecretString::new("correct horse".into());
        let hash = hash_blocking(&pw).expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_blocking(&pw, &hash));
        assert!(!verify_blocking(&SecretString::new("wrong".into()), &hash));
        assert!(!verify_blocking(&pw, "not a hash"));
    }

    #[tokio::test]
    async fn unknown_user_never_matches() {
        let pool = PasswordHasherPool::new(1).expect("pool");
        let ok = pool
            .verify(SecretString::new("x".into()), None)
            .await
            .expect("verify");
        assert!(!ok);
    }
}
