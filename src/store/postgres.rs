//! The PostgreSQL backend, for many stateless nodes sharing one database.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::sql::sql_store;
use super::*;
use crate::model::{ClientKind, GrantType, Role, SigningAlg};

/// A [`Store`] on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and applies pending migrations. The migrator holds a PostgreSQL
    /// advisory lock while it runs, so nodes starting together migrate once.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::InvalidUrl)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            // A dead connection fails its query with a connection error, which answers 503 and
            // drops it; pinging before every query would double the round trips.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;

        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

sql_store!(PgStore, PgRow, {
    async fn backup_to(&self, _path: &Path) -> StoreResult<()> {
        Err(StoreError::Unsupported(
            "online backup of PostgreSQL is pg_dump's job; see docs/operations.md",
        ))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
});
