//! Two `zarish` nodes on one PostgreSQL database behave as one server; one node that loses its
//! database answers 503 and recovers by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::common::*;
use crate::flows::{code_flow, decode_segment};

async fn introspect(node: &TestServer, token: &str) -> Value {
    introspect_at(
        &node.base,
        "demo-backend",
        node.client_secret("demo-backend"),
        token,
    )
    .await
}

async fn refresh(node: &TestServer, token: &str) -> reqwest::Response {
    http()
        .post(node.url("/token"))
        .basic_auth("demo-web", node.client_secret("demo-web"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("refresh")
}

async fn redeem(node: &TestServer, code: &str, verifier: &str) -> reqwest::Response {
    http()
        .post(node.url("/token"))
        .basic_auth("demo-web", node.client_secret("demo-web"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("redeem")
}

/// Signs in at `node` and returns a fresh code with its PKCE verifier.
async fn fresh_code(node: &TestServer) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let url = reqwest::Url::parse_with_params(
        &node.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid offline_access"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("url");
    let password = node.password("clinician");
    let back = Browser::new(node)
        .authorize(url.as_str(), Some(("clinician", &password)), "allow")
        .await;
    (query(&back)["code"].clone(), verifier)
}

async fn two_nodes() -> (TestServer, TestServer) {
    let config = "key_refresh_interval = 1\n".to_owned();
    let a = TestServer::launch(
        Backend::Postgres,
        Launch {
            config: Some(config),
            ..Launch::default()
        },
    )
    .await;
    let b = a.another_node(None).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_from_a_redeems_once_at_b_and_replay_at_a_revokes() {
    let (a, b) = two_nodes().await;
    let (code, verifier) = fresh_code(&a).await;

    let first = redeem(&b, &code, &verifier).await;
    assert_eq!(first.status(), 200);
    let tokens: Value = first.json().await.expect("json");
    let access = tokens["access_token"].as_str().expect("at");
    assert_eq!(introspect(&a, access).await["active"], true);

    let replay = redeem(&a, &code, &verifier).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(
        replay.json::<Value>().await.expect("json")["error"],
        "invalid_grant"
    );
    assert_eq!(introspect(&b, access).await, json!({ "active": false }));
    assert_eq!(introspect(&a, access).await, json!({ "active": false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotated_at_a_and_replayed_at_b_kills_the_family_on_both() {
    let (a, b) = two_nodes().await;
    let first = code_flow(&a, "demo-web", "clinician", "openid offline_access").await;
    let rt1 = first["refresh_token"].as_str().expect("rt1");

    let rotated: Value = refresh(&a, rt1).await.json().await.expect("json");
    let rt2 = rotated["refresh_token"].as_str().expect("rt2");

    assert_eq!(refresh(&b, rt1).await.status(), 400);
    assert_eq!(
        refresh(&a, rt2).await.status(),
        400,
        "the family is dead at A"
    );
    let at2 = rotated["access_token"].as_str().expect("at2");
    assert_eq!(introspect(&b, at2).await, json!({ "active": false }));
    assert_eq!(introspect(&a, at2).await, json!({ "active": false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoked_at_a_is_inactive_at_b_at_once() {
    let (a, b) = two_nodes().await;
    let token: Value = http()
        .post(a.url("/token"))
        .basic_auth("demo-backend", a.client_secret("demo-backend"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let access = token["access_token"].as_str().expect("at");
    assert_eq!(introspect(&b, access).await["active"], true);

    let revoked = http()
        .post(a.url("/revoke"))
        .basic_auth("demo-backend", a.client_secret("demo-backend"))
        .form(&[("token", access)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect(&b, access).await, json!({ "active": false }));
}

async fn jwks_kids(node: &TestServer) -> Vec<String> {
    let jwks: Value = http()
        .get(node.url("/jwks"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

async fn cc_token(node: &TestServer) -> String {
    let token: Value = http()
        .post(node.url("/token"))
        .basic_auth("demo-backend", node.client_secret("demo-backend"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    token["access_token"].as_str().expect("at").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_reaches_both_nodes_without_rejecting_tokens() {
    let (a, b) = two_nodes().await;
    let before = cc_token(&a).await;
    let old_kid = decode_segment(&before, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_owned();

    let out = a.cli(&["keys", "rotate"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both nodes move to the new key within the refresh interval (1 s here); the deadline is
    // generous because CI machines are noisy, and the loop ends as soon as both have switched.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut new_a, mut new_b) = (before.clone(), before.clone());
    while Instant::now() < deadline {
        // During the switch every token signed by either key verifies at either node.
        for token in [&new_a, &new_b, &before] {
            assert_eq!(introspect(&a, token).await["active"], true);
            assert_eq!(introspect(&b, token).await["active"], true);
        }
        new_a = cc_token(&a).await;
        new_b = cc_token(&b).await;
        let kid = |t: &str| {
            decode_segment(t, 0)["kid"]
                .as_str()
                .expect("kid")
                .to_owned()
        };
        if kid(&new_a) != old_kid && kid(&new_b) != old_kid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_kid = decode_segment(&new_a, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert_ne!(new_kid, old_kid, "node A signs with the new key");
    assert_eq!(
        decode_segment(&new_b, 0)["kid"],
        new_kid.as_str(),
        "node B signs with the new key"
    );
    for node in [&a, &b] {
        let kids = jwks_kids(node).await;
        assert!(
            kids.contains(&old_kid) && kids.contains(&new_kid),
            "both public keys are served"
        );
    }
    for token in [&before, &new_a, &new_b] {
        assert_eq!(introspect(&a, token).await["active"], true);
        assert_eq!(introspect(&b, token).await["active"], true);
    }
}

/// Fires `count` identical requests, alternating between the nodes, all at once; returns how
/// many got 200.
async fn race<F, Fut>(nodes: &[&TestServer], count: usize, request: F) -> usize
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let mut tasks = Vec::new();
    for i in 0..count {
        let fut = request(nodes[i % nodes.len()].base.clone());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await.status().as_u16()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let status = task.await.expect("task");
        assert!(status == 200 || status == 400, "unexpected status {status}");
        ok += usize::from(status == 200);
    }
    ok
}

fn post_form(
    base: String,
    client: (&str, String),
    form: Vec<(&'static str, String)>,
) -> impl std::future::Future<Output = reqwest::Response> + Send + 'static {
    let client = (client.0.to_owned(), client.1);
    async move {
        http()
            .post(format!("{base}/token"))
            .basic_auth(client.0, Some(client.1))
            .form(&form)
            .send()
            .await
            .expect("post")
    }
}

async fn parallel_redemptions_give_exactly_one_success(nodes: &[&TestServer]) {
    let first = nodes[0];
    let secret = first.client_secret("demo-web").expect("secret");
    let (code, verifier) = fresh_code(first).await;
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", WEB_REDIRECT.to_owned()),
        ("code_verifier", verifier),
    ];
    let wins = race(nodes, 200, |base| {
        post_form(base, ("demo-web", secret.clone()), form.clone())
    })
    .await;
    assert_eq!(
        wins, 1,
        "exactly one of 200 parallel code redemptions succeeds"
    );

    let tokens = code_flow(first, "demo-web", "clinician", "openid offline_access").await;
    let rt = tokens["refresh_token"].as_str().expect("rt").to_owned();
    let form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", rt),
    ];
    let wins = race(nodes, 200, |base| {
        post_form(base, ("demo-web", secret.clone()), form.clone())
    })
    .await;
    assert_eq!(wins, 1, "exactly one of 200 parallel refreshes succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_redemptions_across_nodes_one_success() {
    let (a, b) = two_nodes().await;
    parallel_redemptions_give_exactly_one_success(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_redemptions_on_sqlite_one_success() {
    let a = TestServer::start(Backend::Sqlite).await;
    parallel_redemptions_give_exactly_one_success(&[&a]).await;
}

/// A TCP forwarder on loopback between a node and PostgreSQL, that a test can cut and restore.
struct Proxy {
    port: u16,
    target: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Self {
            port,
            target,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener).await;
        proxy
    }

    async fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let target = self.target;
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().await.push(handle);
            }
        });
        self.tasks.lock().await.push(acceptor);
    }

    /// Drops every connection and stops listening.
    async fn cut(&self) {
        for task in self.tasks.lock().await.drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind");
        self.serve(listener).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_loses_its_database_answers_503_and_recovers() {
    let pg = PgDatabase::create().await;
    let pg_port = url::Url::parse(&pg.url())
        .expect("url")
        .port()
        .unwrap_or(5432);
    let proxy = Proxy::start(pg_port).await;
    let mut node = TestServer::launch(
        Backend::Sqlite,
        Launch {
            database_url: Some(pg.url_via(proxy.port)),
            ..Launch::default()
        },
    )
    .await;
    node.pg = Some(pg);
    let secret = node.client_secret("demo-backend");
    let token_request = || {
        http()
            .post(node.url("/token"))
            .basic_auth("demo-backend", secret.clone())
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(token_request().await.expect("token").status(), 200);

    proxy.cut().await;
    let ready = http().get(node.url("/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 503);
    let resp = token_request().await.expect("token");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none());

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while Instant::now() < deadline {
        if http()
            .get(node.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the node recovers by itself");
    assert_eq!(token_request().await.expect("token").status(), 200);
}
