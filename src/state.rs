//! The state every request handler shares.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::keys::{KeyDir, SharedKeys};
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
    /// Where key files live.
    pub key_dir: KeyDir,
    /// The clock.
    pub clock: SharedClock,
    /// The keyed-hash key for stored secrets and CSRF tokens.
    pub hash_key: HashKey,
    /// The bounded Argon2id pool.
    pub passwords: PasswordHasherPool,
}

impl AppState {
    /// The current time.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
