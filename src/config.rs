//! Configuration: defaults, overridden by a TOML file (`--config`), overridden by `ZARISH_*`
//! environment variables and command-line flags. Every setting is documented in
//! `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem, reported to the operator at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The config file is not valid TOML for our settings.
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, String),
    /// A value is out of range or malformed.
    #[error("invalid setting {0}: {1}")]
    Invalid(&'static str, &'static str),
}

/// The settings a TOML config file may hold. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; SQLite in the data directory when absent.
    pub database_url: Option<String>,
    /// Master key file.
    pub master_key_file: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Issuer URL.
    pub issuer: Option<String>,
    /// Audience of access tokens.
    pub audience: Option<String>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Token and session lifetimes.
    #[serde(default)]
    pub lifetimes: LifetimeConfig,
    /// Seconds between reloads of the signing keys from the store.
    pub key_refresh_interval: Option<u64>,
    /// Concurrent password hashes.
    pub password_hash_concurrency: Option<usize>,
    /// Roles that must sign in with a second factor.
    pub mfa_required_roles: Option<Vec<crate::model::Role>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<std::net::IpAddr>>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Brute-force limits.
    #[serde(default)]
    pub signin: SigninConfig,
}

/// Brute-force limits as they appear in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigninConfig {
    /// Failures from one address that trigger a block.
    pub ip_failure_limit: Option<i64>,
    /// Window in which they are counted (seconds).
    pub ip_window: Option<i64>,
    /// How long the block lasts (seconds).
    pub ip_block: Option<i64>,
    /// Failures of one account before delays start.
    pub account_free_failures: Option<i64>,
    /// Longest delay between attempts on one account (seconds).
    pub account_delay_cap: Option<i64>,
    /// Quiet seconds after which an account's count restarts.
    pub account_reset_after: Option<i64>,
}

/// Brute-force limits.
#[derive(Debug, Clone, Copy)]
pub struct SigninLimits {
    /// Failures from one address within `ip_window` that block it (default 5).
    pub ip_failure_limit: i64,
    /// Counting window (default 900 s).
    pub ip_window: i64,
    /// Block length (default 900 s).
    pub ip_block: i64,
    /// Failures of one account that cost nothing (default 3); each further one doubles the wait.
    pub account_free_failures: i64,
    /// Longest wait between attempts on one account (default 30 s).
    pub account_delay_cap: i64,
    /// Quiet time after which an account's count restarts (default 900 s).
    pub account_reset_after: i64,
}

/// Lifetimes in seconds, as they appear in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeConfig {
    /// Access token lifetime.
    pub access_token: Option<i64>,
    /// Refresh token lifetime.
    pub refresh_token: Option<i64>,
    /// ID token lifetime.
    pub id_token: Option<i64>,
    /// Authorization code lifetime (at most 60).
    pub authorization_code: Option<i64>,
    /// SSO session lifetime.
    pub session: Option<i64>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Lifetimes in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Access token lifetime (default 1 hour).
    pub access_token: i64,
    /// Refresh token lifetime (default 30 days).
    pub refresh_token: i64,
    /// ID token lifetime (default 1 hour).
    pub id_token: i64,
    /// Authorization code lifetime (default 60 s, never more).
    pub authorization_code: i64,
    /// SSO session lifetime (default 8 hours).
    pub session: i64,
    /// Pending authorization request lifetime (10 minutes).
    pub auth_request: i64,
}

impl Lifetimes {
    /// How long a retired signing key must stay verifiable.
    pub fn key_retention(&self) -> i64 {
        self.access_token.max(self.refresh_token).max(self.id_token)
    }
}

/// The resolved server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the SQLite database, the master key and demo credentials live.
    pub data_dir: PathBuf,
    /// PostgreSQL URL; `None` selects the embedded SQLite store. May hold a password: never log it.
    pub database_url: Option<String>,
    /// The master key file (default `DATA_DIR/keys/master.key`); every node of a cluster must
    /// read the same key.
    pub master_key_file: PathBuf,
    /// Socket address to listen on.
    pub listen: SocketAddr,
    /// The issuer identifier (`iss`), never derived from a request.
    pub issuer: String,
    /// The `aud` of access tokens: the protected API's identifier.
    pub audience: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Token and session lifetimes.
    pub lifetimes: Lifetimes,
    /// Seconds between reloads of the signing keys from the store.
    pub key_refresh_interval: u64,
    /// How many Argon2id hashes may run at once.
    pub password_hash_concurrency: usize,
    /// Roles that must sign in with a second factor.
    pub mfa_required_roles: Vec<crate::model::Role>,
    /// Proxies whose `X-Forwarded-For` is believed; every other peer is the client itself.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections served at once (default 1000; keep it under the process's file limit).
    pub max_connections: usize,
    /// Brute-force limits.
    pub signin: SigninLimits,
}

/// Values given on the command line or in the environment; each wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir` / `ZARISH_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url` / `ZARISH_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--master-key-file` / `ZARISH_MASTER_KEY_FILE`.
    pub master_key_file: Option<PathBuf>,
    /// `--listen` / `ZARISH_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--issuer` / `ZARISH_ISSUER`.
    pub issuer: Option<String>,
    /// `--log-format` / `ZARISH_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
}

impl FileConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e.message().to_owned()))
    }
}

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "zarish-data";
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Settings {
    /// Resolves settings from defaults, the file and the overrides, and checks them.
    pub fn resolve(file: FileConfig, overrides: Overrides) -> Result<Self, ConfigError> {
        let listen = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let issuer = overrides
            .issuer
            .or(file.issuer)
            .unwrap_or_else(|| format!("http://{listen}"));
        let issuer = validate_issuer(&issuer)?;
        let audience = file.audience.unwrap_or_else(|| format!("{issuer}/fhir"));

        let l = file.lifetimes;
        let lifetimes = Lifetimes {
            access_token: positive("lifetimes.access_token", l.access_token.unwrap_or(3600))?,
            refresh_token: positive(
                "lifetimes.refresh_token",
                l.refresh_token.unwrap_or(2_592_000),
            )?,
            id_token: positive("lifetimes.id_token", l.id_token.unwrap_or(3600))?,
            authorization_code: positive(
                "lifetimes.authorization_code",
                l.authorization_code.unwrap_or(60),
            )?,
            session: positive("lifetimes.session", l.session.unwrap_or(28_800))?,
            auth_request: 600,
        };
        if lifetimes.authorization_code > 60 {
            return Err(ConfigError::Invalid(
                "lifetimes.authorization_code",
                "must be at most 60",
            ));
        }

        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let data_dir = overrides
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = overrides
            .database_url
            .or(file.database_url)
            .filter(|u| !u.is_empty());
        let postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        if database_url.as_deref().is_some_and(|u| !postgres(u)) {
            return Err(ConfigError::Invalid(
                "database_url",
                "must be a postgres:// URL",
            ));
        }
        Ok(Self {
            master_key_file: overrides
                .master_key_file
                .or(file.master_key_file)
                .unwrap_or_else(|| data_dir.join("keys").join("master.key")),
            data_dir,
            database_url,
            listen,
            issuer,
            audience,
            log_format: overrides
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            lifetimes,
            key_refresh_interval: file.key_refresh_interval.unwrap_or(60).max(1),
            password_hash_concurrency: file.password_hash_concurrency.unwrap_or(cores).max(1),
            mfa_required_roles: file.mfa_required_roles.unwrap_or_else(|| {
                use crate::model::Role;
                vec![
                    Role::SuperAdmin,
                    Role::OrganizationAdmin,
                    Role::HealthcareProvider,
                ]
            }),
            trusted_proxies: file.trusted_proxies.unwrap_or_default(),
            max_connections: file.max_connections.unwrap_or(1000).max(1),
            signin: SigninLimits {
                ip_failure_limit: positive(
                    "signin.ip_failure_limit",
                    file.signin.ip_failure_limit.unwrap_or(5),
                )?,
                ip_window: positive("signin.ip_window", file.signin.ip_window.unwrap_or(900))?,
                ip_block: positive("signin.ip_block", file.signin.ip_block.unwrap_or(900))?,
                account_free_failures: file.signin.account_free_failures.unwrap_or(3).max(0),
                account_delay_cap: positive(
                    "signin.account_delay_cap",
                    file.signin.account_delay_cap.unwrap_or(30),
                )?,
                account_reset_after: positive(
                    "signin.account_reset_after",
                    file.signin.account_reset_after.unwrap_or(900),
                )?,
            },
        })
    }

    /// Whether cookies must carry `Secure` (the issuer is HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("zarish.db")
    }
}

fn positive(name: &'static str, value: i64) -> Result<i64, ConfigError> {
    if value <= 0 {
        return Err(ConfigError::Invalid(
            name,
            "must be a positive number of seconds",
        ));
    }
    Ok(value)
}

fn validate_issuer(raw: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(raw).map_err(|_| ConfigError::Invalid("issuer", "not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid("issuer", "must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::Invalid(
            "issuer",
            "must not have a query or fragment",
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_derive_issuer_from_listen() {
        let s = Settings::resolve(FileConfig::default(), Overrides::default()).expect("valid");
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.lifetimes.authorization_code, 60);
    }

    #[test]
    fn overrides_win_over_file() {
        let file: FileConfig =
            toml::from_str("issuer = \"https://a.example\"\n[lifetimes]\naccess_token = 60\n")
                .expect("toml");
        let o = Overrides {
            issuer: Some("https://b.example/".into()),
            ..Default::default()
        };
        let s = Settings::resolve(file, o).expect("valid");
        assert_eq!(s.issuer, "https://b.example");
        assert_eq!(s.lifetimes.access_token, 60);
    }

    #[test]
    fn rejects_long_code_lifetime_and_unknown_keys() {
        let file: FileConfig =
            toml::from_str("[lifetimes]\nauthorization_code = 600\n").expect("toml");
        assert!(Settings::resolve(file, Overrides::default()).is_err());
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }
}
