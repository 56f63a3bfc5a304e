//! The state every request handler shares.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::keys::{KeyVault, SharedKeys};
use crate::password::PasswordHasherPool;
use crate::secret::HashKey;
use crate::store::SharedStore;

/// Shared server state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Resolved settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: SharedStore,
    /// The live signing keys.
    pub keys: SharedKeys,
    /// Creates and loads the sealed signing keys.
    pub vault: KeyVault,
    /// The clock.
    pub clock: SharedClock,
    /// The keyed-hash key for stored secrets and CSRF tokens.
    pub hash_key: HashKey,
    /// The bounded Argon2id pool.
    pub passwords: PasswordHasherPool,
    /// Recently read client registrations.
    pub clients: Arc<crate::clients::ClientCache>,
    /// Serializes sign-in attempts per address and username on this node.
    pub attempts: Arc<crate::throttle::AttemptLocks>,
    /// Whether the store answered its last health check. Token issuance refuses (503) while it
    /// does not, even for requests that cached data could serve: fail closed.
    pub store_healthy: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// The current time.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Pings the store and records the outcome.
    pub async fn check_store(&self) -> Result<(), crate::store::StoreError> {
        let outcome = self.store.ping().await;
        self.store_healthy
            .store(outcome.is_ok(), std::sync::atomic::Ordering::Relaxed);
        outcome
    }

    /// Whether the store answered its last health check.
    pub fn store_is_healthy(&self) -> bool {
        self.store_healthy
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Verifies a token with the live keys. A token whose `kid` is unknown may have been signed
    /// by a key another node created moments ago: the key set is then reloaded from the store
    /// (at most once a second) and the token checked once more.
    pub async fn verify_token<T>(
        &self,
        token: &str,
        expect: crate::tokens::Expectation<'_>,
    ) -> Result<T, crate::tokens::TokenError>
    where
        T: serde::de::DeserializeOwned + crate::tokens::RegisteredClaims,
    {
        let first = crate::tokens::verify::<T>(&self.keys.current(), token, expect);
        match first {
            Err(crate::tokens::TokenError::UnknownKey)
                if self.reload_keys_for_unknown_kid().await =>
            {
                crate::tokens::verify::<T>(&self.keys.current(), token, expect)
            }
            other => other,
        }
    }

    /// Reads a token presented to the revocation or introspection endpoint: one of our valid,
    /// unexpired refresh or access tokens, or nothing.
    pub async fn presented_token(&self, token: &str) -> Option<crate::tokens::Presented> {
        use crate::tokens::{Expectation, Expiry, Presented, TokenKind};

        let now = self.now();
        let issuer = self.settings.issuer.as_str();
        let refresh = Expectation {
            kind: TokenKind::Refresh,
            issuer,
            audience: Some(issuer),
            now,
            expiry: Expiry::Enforce,
        };
        if let Ok(claims) = self.verify_token(token, refresh).await {
            return Some(Presented::Refresh(claims));
        }
        let access = Expectation {
            kind: TokenKind::Access,
            issuer,
            audience: Some(&self.settings.audience),
            now,
            expiry: Expiry::Enforce,
        };
        self.verify_token(token, access)
            .await
            .ok()
            .map(Presented::Access)
    }

    /// Reloads the key set unless that happened less than a second ago. Returns whether it did.
    async fn reload_keys_for_unknown_kid(&self) -> bool {
        let now = self.now();
        if !self.keys.claim_reload(now) {
            return false;
        }
        let retention = self.settings.lifetimes.key_retention();
        match self.vault.load(&self.store, now, retention).await {
            Ok(set) => {
                self.keys.replace(set);
                true
            }
            Err(err) => {
                tracing::warn!(target: "zarish::keys", error = %err, "key reload failed");
                false
            }
        }
    }
}
