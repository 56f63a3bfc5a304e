//! A short-lived per-node cache of client registrations, for the token, introspection and
//! revocation endpoints, where reading the client from the store on every request cost a
//! database round trip per call. A change to a client (a new secret, a removed redirect URI)
//! reaches every node within `TTL` seconds. Unknown client ids are not cached, so a flood of
//! made-up ids cannot fill memory; the cache empties itself when it reaches `MAX_ENTRIES`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::model::Client;
use crate::store::{SharedStore, StoreResult};

/// Seconds a cached registration is trusted.
pub const TTL: i64 = 5;
/// Most registrations kept.
pub const MAX_ENTRIES: usize = 10_000;

/// The cache.
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: RwLock<HashMap<String, (i64, Arc<Client>)>>,
}

impl ClientCache {
    /// The client `client_id`, from the cache when fresh, else from the store.
    pub async fn get(
        &self,
        store: &SharedStore,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<Arc<Client>>> {
        if let Some(client) = self.fresh(client_id, now) {
            return Ok(Some(client));
        }
        let Some(client) = store.get_client(client_id).await? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        let mut entries = match self.entries.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(client_id.to_owned(), (now, client.clone()));
        Ok(Some(client))
    }

    fn fresh(&self, client_id: &str, now: i64) -> Option<Arc<Client>> {
        let entries = match self.entries.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries
            .get(client_id)
            .filter(|(at, _)| now - at < TTL)
            .map(|(_, c)| c.clone())
    }
}
