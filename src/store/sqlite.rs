//! The embedded SQLite backend (WAL mode, one file in the data directory).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::sql::sql_store;
use super::*;
use crate::model::{ClientKind, GrantType, Role, SigningAlg};

/// A [`Store`] on an SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        // Create the file ourselves, mode 0600; SQLite gives its -wal and -shm files the same mode.
        if !path.exists() {
            crate::keys::write_private_file(path, b"")
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            // A file on local disk does not drop connections; skip the ping before each query.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;

        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

sql_store!(SqliteStore, SqliteRow, {
    async fn backup_to(&self, path: &Path) -> StoreResult<()> {
        let target = path
            .to_str()
            .ok_or(StoreError::Unsupported("backup path must be UTF-8"))?;
        // VACUUM INTO fills an existing empty file, which keeps the mode it was created with.
        crate::keys::write_private_file(path, b"")
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
});
