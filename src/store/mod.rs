//! Persistence. The domain talks to the [`Store`] trait; each backend implements it with its own
//! SQL. SQLite (embedded, WAL) is the default backend.

mod postgres;
mod sql;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{Client, Organization, Scopes, User};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The schema migrations, shared by both backends.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A failure of the storage layer. Never shown to clients: it maps to `server_error` or
/// `temporarily_unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with a connection-level failure.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness constraint was violated (e.g. the username or client id exists).
    #[error("record already exists")]
    Conflict,
    /// A stored row could not be decoded into a domain value.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database URL could not be parsed (the URL itself is not repeated: it may hold a
    /// password).
    #[error("invalid database URL")]
    InvalidUrl,
    /// The backend does not support the operation.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

/// Whether a database error means the database is unreachable or going away rather than that the
/// query was wrong: SQLSTATE class 08 (connection exception), 53 (insufficient resources) and
/// 57P (operator intervention: shutdown, crash recovery).
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_unavailable_code(&c)) => {
                StoreError::Unavailable(err)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            _ => StoreError::Database(err),
        }
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A signing key as stored: its private key sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id (the RFC 7638 thumbprint of the public key).
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// The PKCS#8 private key, sealed with AES-256-GCM (see [`crate::keys`]).
    pub sealed_key: String,
    /// Creation time.
    pub created_at: i64,
    /// When a newer key replaced it for signing.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// A signed-in browser session (SSO).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Public session id (used as `sid` and to end the session).
    pub id: String,
    /// Keyed hash of the cookie value.
    pub token_hash: String,
    /// The signed-in user.
    pub user_id: String,
    /// When the user last authenticated.
    pub auth_time: i64,
    /// Authentication methods used (RFC 8176 values), space separated.
    pub amr: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// An authorization request waiting for the user to sign in or consent.
#[derive(Debug, Clone)]
pub struct PendingAuthRequest {
    /// Keyed hash of the handle carried by the login and consent forms.
    pub handle_hash: String,
    /// The requesting client.
    pub client_id: String,
    /// The validated request, serialized.
    pub params: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// A user's authorization of a client: the family of every code, access and refresh token that
/// follows from one sign-in. Revoking it kills them all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRecord {
    /// Grant id.
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The user.
    pub user_id: String,
    /// The SSO session it came from.
    pub session_id: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Authentication methods, space separated.
    pub amr: String,
    /// Creation time.
    pub created_at: i64,
    /// The grant ends with its last refresh token.
    pub expires_at: i64,
}

/// A stored authorization code.
#[derive(Debug, Clone)]
pub struct CodeRecord {
    /// Keyed hash of the code.
    pub code_hash: String,
    /// The grant it belongs to.
    pub grant_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// OIDC nonce.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// Expiry.
    pub expires_at: i64,
}

/// What redeeming a code found.
#[derive(Debug)]
pub enum CodeRedemption {
    /// First use: the code and its grant.
    Fresh(Box<(CodeRecord, GrantRecord)>),
    /// The code was used before; its grant id is returned so that it can be revoked.
    Replayed {
        /// The grant of the replayed code.
        grant_id: String,
    },
    /// No such code.
    Unknown,
}

/// A stored refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// The token's `jti`.
    pub jti: String,
    /// Its grant (family).
    pub grant_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its scope, space separated.
    pub scope: String,
    /// Issue time.
    pub issued_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// When it was spent by a rotation.
    pub rotated_at: Option<i64>,
}

/// What rotating a refresh token found.
#[derive(Debug)]
pub enum RefreshRotation {
    /// The token was current and is now spent; its record and grant.
    Rotated(Box<(RefreshRecord, GrantRecord)>),
    /// The token had been rotated before: reuse. The grant id is returned so it can be revoked.
    Reused {
        /// The grant of the reused token.
        grant_id: String,
    },
    /// The token's grant is revoked.
    Revoked,
    /// No such token.
    Unknown,
}

/// A user's TOTP factor as stored.
#[derive(Clone)]
pub struct MfaRecord {
    /// The user.
    pub user_id: String,
    /// The secret, sealed under the master key.
    pub sealed_secret: String,
    /// When the user confirmed it with a first code; `None` while pending.
    pub confirmed_at: Option<i64>,
    /// The newest accepted time step.
    pub last_used_step: Option<i64>,
}

impl std::fmt::Debug for MfaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaRecord")
            .field("user_id", &self.user_id)
            .field("confirmed_at", &self.confirmed_at)
            .finish()
    }
}

/// The per-account failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFailures {
    /// Consecutive failures.
    pub failures: i64,
    /// Time of the last one.
    pub last_failure: i64,
}

/// The storage interface of the server.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Whether any user exists (bootstrap runs only when none does).
    async fn has_users(&self) -> StoreResult<bool>;

    /// Stores the first organization with its users and clients in one transaction.
    async fn insert_bootstrap(
        &self,
        org: &Organization,
        users: &[User],
        clients: &[Client],
        now: i64,
    ) -> StoreResult<()>;

    /// Adds an organization.
    async fn insert_organization(&self, org: &Organization, now: i64) -> StoreResult<()>;
    /// Looks up an organization.
    async fn get_organization(&self, id: &str) -> StoreResult<Option<Organization>>;

    /// Adds a user.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    /// Finds a user by sign-in name.
    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Finds a user by id.
    async fn get_user(&self, id: &str) -> StoreResult<Option<User>>;

    /// Registers a client.
    async fn insert_client(&self, client: &Client) -> StoreResult<()>;
    /// Looks up a client.
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    /// Lists every client.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;

    /// Records a new signing key.
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()>;
    /// Lists every signing key, newest first.
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Marks every key of `alg` other than `keep` as retired at `at`.
    async fn retire_signing_keys(&self, alg: &str, keep: &str, at: i64) -> StoreResult<()>;

    /// Stores a session.
    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// Finds a live session by the hash of its cookie.
    async fn find_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session and revokes the grants made in it.
    async fn end_session(&self, session_id: &str, now: i64) -> StoreResult<()>;

    /// Stores a pending authorization request.
    async fn insert_auth_request(&self, request: &PendingAuthRequest) -> StoreResult<()>;
    /// Finds a live pending authorization request.
    async fn find_auth_request(
        &self,
        handle_hash: &str,
        now: i64,
    ) -> StoreResult<Option<PendingAuthRequest>>;
    /// Deletes a pending authorization request.
    async fn delete_auth_request(&self, handle_hash: &str) -> StoreResult<()>;

    /// Stores a new grant and its authorization code together.
    async fn insert_grant_with_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
    ) -> StoreResult<()>;
    /// Redeems a code exactly once, atomically.
    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption>;
    /// Revokes a grant and with it every token of its family.
    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()>;

    /// Stores a refresh token.
    async fn insert_refresh_token(&self, token: &RefreshRecord) -> StoreResult<()>;
    /// Spends a refresh token exactly once, atomically.
    async fn rotate_refresh_token(&self, jti: &str, now: i64) -> StoreResult<RefreshRotation>;
    /// Finds a refresh token's record.
    async fn find_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshRecord>>;

    /// Records an access token issued under a grant.
    async fn record_access_token(
        &self,
        jti: &str,
        grant_id: &str,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// Revokes one token id until `expires_at`.
    async fn revoke_token_id(&self, jti: &str, expires_at: i64) -> StoreResult<()>;
    /// Whether a token id is revoked, individually or through its grant.
    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool>;

    /// The scopes a user has consented to for a client.
    async fn get_consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<Scopes>>;
    /// Records a user's consent.
    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scopes,
        now: i64,
    ) -> StoreResult<()>;

    /// Deletes expired codes, requests, sessions, tokens and revocations. Returns rows removed.
    async fn purge_expired(&self, now: i64) -> StoreResult<u64>;

    /// The user's TOTP factor, pending or confirmed.
    async fn get_mfa(&self, user_id: &str) -> StoreResult<Option<MfaRecord>>;
    /// Stores a pending factor, replacing a pending one; a confirmed factor is left alone.
    async fn put_pending_mfa(
        &self,
        user_id: &str,
        sealed_secret: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Confirms a pending factor with the step of its first code. False if none was pending.
    async fn confirm_mfa(&self, user_id: &str, step: i64, now: i64) -> StoreResult<bool>;
    /// Accepts a code of `step` once: true only if no code of this or a later step was accepted.
    async fn accept_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Removes the factor and the backup codes.
    async fn delete_mfa(&self, user_id: &str) -> StoreResult<()>;
    /// Replaces every backup code of the user.
    async fn replace_backup_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        now: i64,
    ) -> StoreResult<()>;
    /// Spends a backup code once. Returns the number left, or `None` if it was not valid.
    async fn use_backup_code(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<i64>>;
    /// Unused backup codes of the user.
    async fn count_backup_codes(&self, user_id: &str) -> StoreResult<i64>;

    /// Until when `ip` is blocked from sign-in, if it is at `now`.
    async fn ip_blocked_until(&self, ip: &str, now: i64) -> StoreResult<Option<i64>>;
    /// Records a failed sign-in from `ip`. When `limit` failures fall within `window` seconds the
    /// address is blocked for `block` seconds and the block's end is returned.
    async fn record_ip_failure(
        &self,
        ip: &str,
        now: i64,
        window: i64,
        limit: i64,
        block: i64,
    ) -> StoreResult<Option<i64>>;
    /// The account's failure counter.
    async fn account_failures(&self, user_id: &str) -> StoreResult<Option<AccountFailures>>;
    /// Counts a failure against the account; the count restarts after `reset_after` quiet seconds.
    async fn record_account_failure(
        &self,
        user_id: &str,
        now: i64,
        reset_after: i64,
    ) -> StoreResult<()>;
    /// Clears the account's failures after a successful sign-in.
    async fn clear_account_failures(&self, user_id: &str) -> StoreResult<()>;

    /// The user's live sessions, newest first.
    async fn list_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>>;
    /// Ends every session of the user and revokes the grants made in them. Returns how many.
    async fn end_user_sessions(&self, user_id: &str, now: i64) -> StoreResult<u64>;

    /// Writes a consistent copy of the database to `path` while it is in use.
    async fn backup_to(&self, path: &Path) -> StoreResult<()>;

    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;
}

/// Opens the store a configuration names: PostgreSQL when a database URL is given, otherwise the
/// SQLite file at `sqlite_path`. Migrations run before it is returned.
pub async fn open(database_url: Option<&str>, sqlite_path: &Path) -> StoreResult<SharedStore> {
    Ok(match database_url {
        Some(url) => Arc::new(PgStore::connect(url).await?),
        None => Arc::new(SqliteStore::open(sqlite_path).await?),
    })
}

/// The store handle shared by the server's components.
pub type SharedStore = Arc<dyn Store>;
