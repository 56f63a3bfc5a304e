//! Starting the server and acting as a browser.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WEB_REDIRECT: &str = "http://localhost:3000/callback";
pub const SPA_REDIRECT: &str = "http://localhost:5173/callback";

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file in the data directory.
    Sqlite,
    /// A fresh database on the PostgreSQL at 127.0.0.1:5432 (or `ZARISH_TEST_PG`).
    Postgres,
}

/// A PostgreSQL database created for one test and dropped after it.
pub struct PgDatabase {
    name: String,
}

fn pg_admin_url() -> String {
    std::env::var("ZARISH_TEST_PG").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

impl PgDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let name = format!(
            "zarish_t_{}",
            zarish::secret::random_id()
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL for tests");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create db");
        Self { name }
    }

    /// The URL of this database, on `port` (a proxy's, to cut the connection in tests).
    pub fn url_via(&self, port: u16) -> String {
        let admin = url::Url::parse(&pg_admin_url()).expect("admin url");
        format!(
            "postgres://{}@127.0.0.1:{port}/{}",
            admin.username(),
            self.name
        )
    }

    pub fn url(&self) -> String {
        let admin = url::Url::parse(&pg_admin_url()).expect("admin url");
        self.url_via(admin.port().unwrap_or(5432))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// How to start a server.
#[derive(Default)]
pub struct Launch {
    /// Extra arguments for `serve`.
    pub args: Vec<String>,
    /// A PostgreSQL URL to use instead of the backend's default.
    pub database_url: Option<String>,
    /// Lines of a TOML config file.
    pub config: Option<String>,
}

/// A running `zarish serve --demo` with its own data directory.
pub struct TestServer {
    child: Child,
    pub base: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    pub database_url: Option<String>,
    pub creds: Value,
    config: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    pub pg: Option<PgDatabase>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub fn zarish_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zarish"))
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::launch(backend, Launch::default()).await
    }

    /// Starts the first node of a deployment on `backend`.
    pub async fn launch(backend: Backend, launch: Launch) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        let database_url = launch
            .database_url
            .clone()
            .or_else(|| pg.as_ref().map(PgDatabase::url));
        let config = launch.config.as_ref().map(|text| {
            let path = dir.path().join("zarish.toml");
            std::fs::write(&path, text).expect("config");
            path
        });
        let data_dir = dir.path().join("data");
        let mut server = Self::spawn(&data_dir, database_url, config, &launch.args, "node-a").await;
        server._dir = Some(dir);
        server.pg = pg;
        server
    }

    /// Starts another node on the same database, master key, config and issuer, as a load
    /// balancer would front them.
    pub async fn another_node(&self, database_url: Option<String>) -> Self {
        let url = database_url.or_else(|| self.database_url.clone());
        let args = ["--issuer".to_owned(), self.base.clone()];
        Self::spawn(
            &self.data_dir,
            url,
            self.config.clone(),
            &args,
            &format!("node-{}", free_port()),
        )
        .await
    }

    async fn spawn(
        data_dir: &Path,
        database_url: Option<String>,
        config: Option<PathBuf>,
        args: &[String],
        name: &str,
    ) -> Self {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log_path = data_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(zarish_bin());
        cmd.args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("ZARISH_LOG", "info")
            .env_remove("ZARISH_DATABASE_URL")
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log));
        if let Some(url) = &database_url {
            cmd.env("ZARISH_DATABASE_URL", url);
        }
        if let Some(config) = &config {
            cmd.arg("--config").arg(config);
        }
        let child = cmd.spawn().expect("spawn zarish");
        let mut server = Self {
            child,
            base,
            data_dir: data_dir.to_owned(),
            log_path,
            database_url,
            creds: Value::Null,
            config,
            _dir: None,
            pg: None,
        };
        server.wait_ready().await;
        let creds_path = server.data_dir().join("demo-credentials.json");
        server.creds = serde_json::from_str(&std::fs::read_to_string(creds_path).expect("creds"))
            .expect("json");
        server
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/ready", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server not ready; log:\n{}", self.log());
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn client_secret(&self, client_id: &str) -> Option<String> {
        demo_secret(&self.creds, client_id)
    }

    pub fn password(&self, username: &str) -> String {
        demo_password(&self.creds, username)
    }

    /// Runs a `zarish` admin command on this server's data dir and database, with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut env = Vec::new();
        if let Some(url) = &self.database_url {
            env.push(("ZARISH_DATABASE_URL", url.as_str()));
        }
        run_cli(&self.data_dir(), args, stdin, &env)
    }
}

pub fn run_cli(data_dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut child = Command::new(zarish_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("ZARISH_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser: a cookie jar, no automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
    base: String,
}

/// Query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    let parsed = url::Url::parse(url).expect("absolute url");
    parsed.query_pairs().into_owned().collect()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_owned()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location; status {}", resp.status()))
        .to_str()
        .expect("ascii")
        .to_owned()
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            http,
            base: server.base.clone(),
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{}", self.base, location)
        } else {
            location.to_owned()
        }
    }

    /// Follows the server's own redirects from `url` until one leaves the server, signing in
    /// with `credentials` and answering consent with `consent` on the way. Returns the final
    /// Location (the client's redirect URI with its query).
    pub async fn authorize(
        &self,
        url: &str,
        credentials: Option<(&str, &str)>,
        consent: &str,
    ) -> String {
        let mut next = url.to_owned();
        for _ in 0..10 {
            let resp = self.http.get(&next).send().await.expect("get");
            let status = resp.status();
            if status.is_redirection() {
                let loc = self.absolute(&location(&resp));
                if !loc.starts_with(&self.base) {
                    return loc;
                }
                next = loc;
                continue;
            }
            let html = resp.text().await.expect("body");
            assert_eq!(status, 200, "unexpected page at {next}: {html}");
            let rid = hidden(&html, "rid");
            let csrf = hidden(&html, "csrf_token");
            let form: Vec<(&str, &str)> = if html.contains("name=\"password\"") {
                let (user, pass) =
                    credentials.expect("sign-in form shown but no credentials given");
                vec![
                    ("rid", &rid),
                    ("csrf_token", &csrf),
                    ("username", user),
                    ("password", pass),
                ]
            } else {
                vec![("rid", &rid), ("csrf_token", &csrf), ("decision", consent)]
            };
            let action = if html.contains("action=\"/login\"") {
                "/login"
            } else {
                "/consent"
            };
            let resp = self
                .http
                .post(self.absolute(action))
                .form(&form)
                .send()
                .await
                .expect("post");
            assert!(
                resp.status().is_redirection(),
                "form post failed: {}",
                resp.status()
            );
            let loc = self.absolute(&location(&resp));
            if !loc.starts_with(&self.base) {
                return loc;
            }
            next = loc;
        }
        panic!("too many redirects");
    }
}

/// A demo user's password from a demo-credentials document.
pub fn demo_password(creds: &Value, username: &str) -> String {
    creds["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == username)
        .and_then(|u| u["password"].as_str())
        .expect("user")
        .to_owned()
}

/// A demo client's secret (none for public clients) from a demo-credentials document.
pub fn demo_secret(creds: &Value, client_id: &str) -> Option<String> {
    creds["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["client_id"] == client_id)
        .and_then(|c| c["client_secret"].as_str().map(str::to_owned))
}

/// Introspects `token` at `base` as `client` (RFC 7662) and returns the answer.
pub async fn introspect_at(base: &str, client: &str, secret: Option<String>, token: &str) -> Value {
    http()
        .post(format!("{base}/introspect"))
        .basic_auth(client, secret)
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}

/// A browser-like client: a cookie jar, no automatic redirects.
pub fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A plain HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// S256 PKCE pair (verifier, challenge).
pub fn pkce_pair() -> (String, String) {
    use base64::Engine;
    let verifier = format!("{}{}", "v".repeat(30), zarish::secret::random_id());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (
        verifier,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
    )
}
