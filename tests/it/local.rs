//! An in-process server on a loopback port whose clock the test moves by hand, for the rules
//! that depend on time (TOTP steps, block windows, step-up age), without sleeping.

use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinHandle;
use zarish::clock::ManualClock;
use zarish::config::{FileConfig, Overrides, Settings};
use zarish::state::AppState;

use crate::common::{Backend, PgDatabase};

/// The time every in-process test starts at: 10 s into a TOTP step.
pub const START: i64 = 1_800_000_010;

pub struct Local {
    pub base: String,
    pub clock: ManualClock,
    pub state: AppState,
    pub creds: Value,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl Local {
    pub async fn start(backend: Backend, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let file: FileConfig = toml::from_str(config).expect("config");
        let overrides = Overrides {
            data_dir: Some(dir.path().join("data")),
            database_url: pg.as_ref().map(PgDatabase::url),
            listen: Some(addr),
            issuer: Some(base.clone()),
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, overrides).expect("settings");
        let clock = ManualClock::new(START);
        let state = zarish::server::prepare(settings, Arc::new(clock.clone()), true)
            .await
            .expect("prepare");
        let router = zarish::http::router(state.clone());
        let task = tokio::spawn(zarish::http::listener::serve(
            listener,
            router,
            1000,
            std::future::pending(),
        ));
        let creds_path = dir.path().join("data").join("demo-credentials.json");
        let creds = serde_json::from_str(&std::fs::read_to_string(creds_path).expect("creds"))
            .expect("json");
        Self {
            base,
            clock,
            state,
            creds,
            task,
            _dir: dir,
            _pg: pg,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn password(&self, username: &str) -> String {
        crate::common::demo_password(&self.creds, username)
    }

    pub fn client_secret(&self, client_id: &str) -> String {
        crate::common::demo_secret(&self.creds, client_id).expect("secret")
    }

    pub fn now(&self) -> i64 {
        use zarish::clock::Clock;
        self.clock.now()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.task.abort();
    }
}
