//! Starting the server: data directory, store, keys, first-start bootstrap, background tasks and
//! the HTTP listener with graceful shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bootstrap;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::keys::{KeyVault, MasterKey, SharedKeys};
use crate::password::PasswordHasherPool;
use crate::secret::HashKey;
use crate::state::AppState;
use crate::store::SharedStore;

/// A start-up failure, reported to the operator with a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable.
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The store could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Keys could not be created or loaded.
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// Bootstrap failed.
    #[error("first-start set-up: {0}")]
    Bootstrap(#[from] bootstrap::RegistrationError),
    /// The password hasher failed.
    #[error("password hasher: {0}")]
    Password(#[from] crate::password::PasswordError),
    /// The listener could not bind.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// Everything a command needs to work on a data directory.
pub struct Context {
    /// Settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: SharedStore,
    /// The keyed-hash key.
    pub hash_key: HashKey,
    /// The sealed signing keys.
    pub vault: KeyVault,
    /// The clock.
    pub clock: SharedClock,
}

/// Creates the data directory (mode 0700) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    if dir.exists() {
        let open_to_others = std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o077 != 0)
            .unwrap_or(false);
        if open_to_others {
            tracing::warn!(
                target: "zarish::server",
                data_dir = %dir.display(),
                "the data directory is readable by other users; restrict it to mode 0700"
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StartError::DataDir(dir.display().to_string(), e))
}

/// Opens the data directory and the store (with migrations), loads the master key, and makes
/// sure signing keys exist.
pub async fn open(settings: Settings) -> Result<Context, StartError> {
    open_with_clock(settings, Arc::new(SystemClock)).await
}

/// [`open`] with a given clock (tests move time by hand).
pub async fn open_with_clock(
    settings: Settings,
    clock: SharedClock,
) -> Result<Context, StartError> {
    ensure_data_dir(&settings.data_dir)?;
    let store =
        crate::store::open(settings.database_url.as_deref(), &settings.database_path()).await?;
    let master = Arc::new(MasterKey::load_or_create(&settings.master_key_file)?);
    let hash_key = master.hash_key();
    let vault = KeyVault::new(master);
    vault.ensure_keys(&store, clock.now()).await?;
    Ok(Context {
        settings: Arc::new(settings),
        store,
        hash_key,
        vault,
        clock,
    })
}

/// Opens everything, runs the first-start set-up and builds the shared state, with `clock`.
pub async fn prepare(
    settings: Settings,
    clock: SharedClock,
    demo: bool,
) -> Result<AppState, StartError> {
    let ctx = open_with_clock(settings, clock).await?;
    let settings = ctx.settings.clone();
    let passwords = PasswordHasherPool::new(settings.password_hash_concurrency)?;

    first_start(&ctx, &passwords, demo).await?;

    let now = ctx.clock.now();
    let keys = ctx
        .vault
        .load(&ctx.store, now, settings.lifetimes.key_retention())
        .await?;
    Ok(AppState {
        settings,
        store: ctx.store.clone(),
        keys: SharedKeys::new(keys),
        vault: ctx.vault.clone(),
        clock: ctx.clock.clone(),
        hash_key: ctx.hash_key.clone(),
        passwords,
        clients: Arc::default(),
        attempts: Arc::default(),
        store_healthy: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    })
}

/// The router as a service that records each connection's peer address (for client IPs).
pub fn app(
    state: AppState,
) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, std::net::SocketAddr>
{
    crate::http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>()
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(settings: Settings, demo: bool) -> Result<(), StartError> {
    let started = Instant::now();
    let state = prepare(settings, Arc::new(SystemClock), demo).await?;
    let settings = state.settings.clone();
    let state_backend = state.store.backend();
    spawn_key_refresh(state.clone());
    spawn_purge(state.clone());
    spawn_health_check(state.clone());
    let warm = state.passwords.clone();
    tokio::spawn(async move {
        let _ = warm.dummy_hash().await;
    });

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| StartError::Bind(settings.listen.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError::Bind(settings.listen.to_string(), e))?;
    tracing::info!(
        target: "zarish::server",
        listen = %local,
        store = state_backend,
        issuer = %settings.issuer,
        discovery = %format!("{}/.well-known/openid-configuration", settings.issuer),
        startup_ms = started.elapsed().as_millis() as u64,
        "zarish is ready"
    );

    crate::http::listener::serve(
        listener,
        crate::http::router(state),
        settings.max_connections,
        shutdown_signal(),
    )
    .await;
    tracing::info!(target: "zarish::server", "stopped");
    Ok(())
}

async fn first_start(
    ctx: &Context,
    passwords: &PasswordHasherPool,
    demo: bool,
) -> Result<(), StartError> {
    let credentials = ctx.settings.data_dir.join("demo-credentials.json");
    if ctx.store.has_users().await? {
        if demo && credentials.exists() {
            tracing::info!(
                target: "zarish::server",
                credentials = %credentials.display(),
                "demo data present; credentials file unchanged"
            );
        }
        return Ok(());
    }

    let now = ctx.clock.now();
    if demo {
        bootstrap::create_demo(
            &ctx.store,
            &ctx.hash_key,
            passwords,
            &ctx.settings.issuer,
            &credentials,
            now,
        )
        .await?;
        tracing::info!(
            target: "zarish::server",
            credentials = %credentials.display(),
            "demo organization, users and clients created; their credentials are in this file"
        );
    } else {
        let password = bootstrap::create_first_admin(&ctx.store, passwords, now).await?;
        eprintln!(
            "First start: created super_admin 'admin' with one-time password:\n\n    {}\n\n\
             It is shown only now. Store it safely.",
            password.expose()
        );
    }
    Ok(())
}

fn spawn_key_refresh(state: AppState) {
    let interval = Duration::from_secs(state.settings.key_refresh_interval);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let retention = state.settings.lifetimes.key_retention();
            match state.vault.load(&state.store, state.now(), retention).await {
                Ok(set) => state.keys.replace(set),
                Err(err) => {
                    tracing::warn!(target: "zarish::keys", error = %err, "key reload failed")
                }
            }
        }
    });
}

/// Pings the store every second, so that token issuance stops within a second of losing the
/// database and resumes by itself when it returns.
fn spawn_health_check(state: AppState) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let was = state.store_is_healthy();
            let now = state.check_store().await.is_ok();
            if was != now {
                tracing::warn!(target: "zarish::store", healthy = now, "store health changed");
            }
        }
    });
}

fn spawn_purge(state: AppState) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticker.tick().await;
            match state.store.purge_expired(state.now()).await {
                Ok(rows) => {
                    tracing::debug!(target: "zarish::store", rows, "expired records purged")
                }
                Err(err) => tracing::warn!(target: "zarish::store", error = %err, "purge failed"),
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
