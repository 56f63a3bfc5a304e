//! Protocol negatives: each asserts the exact status and OAuth error.

use serde_json::Value;

use crate::common::*;
use crate::flows::code_flow;

async fn token_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json error body");
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

fn authorize_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params(&server.url("/authorize"), params)
        .expect("url")
        .to_string()
}

async fn unknown_client_and_wrong_secret_are_invalid_client(backend: Backend) {
    let server = TestServer::start(backend).await;
    let form = [("grant_type", "client_credentials")];

    let resp = http()
        .post(server.url("/token"))
        .basic_auth("nobody", Some("x"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(token_error(resp).await, (401, "invalid_client".into()));

    let resp = http()
        .post(server.url("/token"))
        .basic_auth("demo-backend", Some("wrong"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(token_error(resp).await, (401, "invalid_client".into()));

    let resp = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-backend"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(token_error(resp).await, (401, "invalid_client".into()));
}

async fn unregistered_or_prefix_redirect_uri_shows_a_page_and_never_redirects(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, challenge) = pkce_pair();
    for redirect in [
        "http://localhost:3000/callback/evil",
        "http://localhost:3000/callbac",
        "http://localhost:3000/callback?x=1",
        "https://attacker.example/callback",
    ] {
        let url = authorize_url(
            &server,
            &[
                ("response_type", "code"),
                ("client_id", "demo-web"),
                ("redirect_uri", redirect),
                ("scope", "openid"),
                ("state", "s"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let resp = http().get(url).send().await.expect("get");
        assert_eq!(resp.status(), 400, "{redirect}");
        assert!(
            resp.headers().get("location").is_none(),
            "must not redirect to {redirect}"
        );
        assert!(resp.text().await.expect("body").contains("not registered"));
    }

    let resp = http()
        .get(authorize_url(
            &server,
            &[
                ("response_type", "code"),
                ("client_id", "ghost"),
                ("redirect_uri", WEB_REDIRECT),
            ],
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

async fn missing_or_plain_pkce_redirects_invalid_request_with_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (verifier, _) = pkce_pair();
    let base = [
        ("response_type", "code"),
        ("client_id", "demo-spa"),
        ("redirect_uri", SPA_REDIRECT),
        ("scope", "openid"),
        ("state", "keep-me"),
    ];
    let mut plain = base.to_vec();
    plain.extend([
        ("code_challenge", verifier.as_str()),
        ("code_challenge_method", "plain"),
    ]);
    let mut no_method = base.to_vec();
    no_method.push((
        "code_challenge",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    ));

    for params in [base.to_vec(), plain, no_method] {
        let resp = http()
            .get(authorize_url(&server, &params))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 303);
        let loc = location(&resp);
        assert!(loc.starts_with(SPA_REDIRECT), "{loc}");
        let q = query(&loc);
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["state"], "keep-me");
        assert_eq!(q["iss"], server.base);
    }
}

async fn unsupported_response_type_and_request_objects(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, challenge) = pkce_pair();
    let mut params = vec![
        ("client_id", "demo-web"),
        ("redirect_uri", WEB_REDIRECT),
        ("scope", "openid"),
        ("state", "s1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.push(("response_type", "token"));
    let resp = http()
        .get(authorize_url(&server, &params))
        .send()
        .await
        .expect("get");
    assert_eq!(
        query(&location(&resp))["error"],
        "unsupported_response_type"
    );

    params.pop();
    params.push(("response_type", "code"));
    params.push(("request", "eyJhbGciOiJub25lIn0.e30."));
    let resp = http()
        .get(authorize_url(&server, &params))
        .send()
        .await
        .expect("get");
    assert_eq!(query(&location(&resp))["error"], "request_not_supported");

    params.pop();
    params.push(("scope", "openid"));
    let resp = http()
        .get(authorize_url(&server, &params))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 400, "a repeated parameter is refused");
}

async fn wrong_code_verifier_is_invalid_grant(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, challenge) = pkce_pair();
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", SPA_REDIRECT),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let password = server.password("analyst");
    let back = Browser::new(&server)
        .authorize(&url, Some(("analyst", &password)), "allow")
        .await;
    let code = query(&back)["code"].clone();
    let (wrong, _) = pkce_pair();
    let resp = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo-spa"),
            ("code", &code),
            ("redirect_uri", SPA_REDIRECT),
            ("code_verifier", &wrong),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(token_error(resp).await, (400, "invalid_grant".into()));
}

/// Introspects as demo-web, the client these tests' tokens belong to (refresh tokens are only
/// shown to their own client).
async fn introspect(server: &TestServer, token: &str) -> Value {
    introspect_at(
        &server.base,
        "demo-web",
        server.client_secret("demo-web"),
        token,
    )
    .await
}

async fn refresh(server: &TestServer, token: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    http()
        .post(server.url("/token"))
        .basic_auth("demo-web", server.client_secret("demo-web"))
        .form(&form)
        .send()
        .await
        .expect("refresh")
}

async fn replayed_code_fails_and_revokes_tokens_of_its_first_use(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (verifier, challenge) = pkce_pair();
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid offline_access"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let password = server.password("clinician");
    let back = Browser::new(&server)
        .authorize(&url, Some(("clinician", &password)), "allow")
        .await;
    let code = query(&back)["code"].clone();
    let exchange = || async {
        http()
            .post(server.url("/token"))
            .basic_auth("demo-web", server.client_secret("demo-web"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .expect("post")
    };

    let first: Value = exchange().await.json().await.expect("json");
    let access = first["access_token"].as_str().expect("access token");
    assert_eq!(introspect(&server, access).await["active"], true);

    assert_eq!(
        token_error(exchange().await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        introspect(&server, access).await,
        serde_json::json!({ "active": false })
    );
    let resp = refresh(&server, first["refresh_token"].as_str().expect("rt"), None).await;
    assert_eq!(token_error(resp).await, (400, "invalid_grant".into()));
}

async fn reused_refresh_token_kills_the_whole_family(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = code_flow(&server, "demo-web", "clinician", "openid offline_access").await;
    let rt1 = first["refresh_token"].as_str().expect("rt1");

    let second: Value = refresh(&server, rt1, None)
        .await
        .json()
        .await
        .expect("json");
    let rt2 = second["refresh_token"].as_str().expect("rt2");
    let at2 = second["access_token"].as_str().expect("at2");
    assert_eq!(introspect(&server, at2).await["active"], true);
    assert_eq!(introspect(&server, rt2).await["active"], true);
    assert_eq!(
        introspect(&server, rt1).await,
        serde_json::json!({ "active": false })
    );

    assert_eq!(
        token_error(refresh(&server, rt1, None).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        token_error(refresh(&server, rt2, None).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        introspect(&server, at2).await,
        serde_json::json!({ "active": false })
    );
}

async fn refresh_may_narrow_but_not_widen_scope(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = code_flow(
        &server,
        "demo-web",
        "clinician",
        "openid profile offline_access",
    )
    .await;
    let rt = first["refresh_token"].as_str().expect("rt");

    let resp = refresh(&server, rt, Some("openid profile email offline_access")).await;
    assert_eq!(token_error(resp).await, (400, "invalid_scope".into()));

    let narrowed: Value = refresh(&server, rt, Some("openid"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(narrowed["scope"], "openid");
    let rt2 = narrowed["refresh_token"].as_str().expect("rotated");
    let again: Value = refresh(&server, rt2, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["scope"], "offline_access openid profile",
        "the grant keeps its scope"
    );
}

async fn public_client_cannot_use_client_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    let resp = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-spa"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(token_error(resp).await, (400, "unauthorized_client".into()));

    let resp = http()
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-spa"),
            ("client_secret", "guess"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(token_error(resp).await, (401, "invalid_client".into()));
}

async fn unsupported_grant_and_scope_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let secret = server.client_secret("demo-backend");
    let post = |form: Vec<(&'static str, &'static str)>| {
        http()
            .post(server.url("/token"))
            .basic_auth("demo-backend", secret.clone())
            .form(&form)
            .send()
    };
    let resp = post(vec![("grant_type", "password")]).await.expect("post");
    assert_eq!(
        token_error(resp).await,
        (400, "unsupported_grant_type".into())
    );
    let resp = post(vec![
        ("grant_type", "client_credentials"),
        ("scope", "system/Encounter.write"),
    ])
    .await
    .expect("post");
    assert_eq!(token_error(resp).await, (400, "invalid_scope".into()));
    let resp = post(vec![("grant_type", "authorization_code"), ("code", "x")])
        .await
        .expect("post");
    assert_eq!(token_error(resp).await, (400, "unauthorized_client".into()));
}

async fn prompt_none_without_session_is_login_required(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, challenge) = pkce_pair();
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid"),
            ("state", "pn"),
            ("prompt", "none"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let resp = http().get(url).send().await.expect("get");
    let q = query(&location(&resp));
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "pn");
}

async fn wrong_password_and_unknown_user_look_the_same(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, challenge) = pkce_pair();
    let url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let browser = Browser::new(&server);
    let login = browser.http.get(url).send().await.expect("get");
    let login_url = server.url(&location(&login));
    let html = browser
        .http
        .get(&login_url)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).expect("field") + marker.len();
        html[start..start + html[start..].find('"').expect("quote")].to_owned()
    };
    let (rid, csrf) = (field("rid"), field("csrf_token"));
    let mut pages = Vec::new();
    for (user, pass) in [
        ("clinician", "wrong-password-123"),
        ("no-such-user", "wrong-password-123"),
    ] {
        let resp = browser
            .http
            .post(server.url("/login"))
            .form(&[
                ("rid", rid.as_str()),
                ("csrf_token", &csrf),
                ("username", user),
                ("password", pass),
            ])
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 401);
        let text = resp.text().await.expect("html");
        pages.push(text.replace(user, "USER"));
    }
    assert_eq!(pages[0], pages[1]);
    assert!(pages[0].contains("Invalid username or password."));

    let resp = browser
        .http
        .post(server.url("/login"))
        .form(&[
            ("rid", rid.as_str()),
            ("csrf_token", "forged"),
            ("username", "clinician"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403, "a forged CSRF token is refused");
}

async fn confidential_client_with_optional_pkce_must_send_nonce(backend: Backend) {
    let server = TestServer::start(backend).await;
    let out = server.cli(
        &[
            "client",
            "add",
            "--id",
            "legacy",
            "--name",
            "Legacy",
            "--redirect-uri",
            "https://legacy.example/cb",
            "--scope",
            "openid profile",
            "--pkce-optional",
            "--first-party",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        created["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 43)
    );

    let no_nonce = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "legacy"),
            ("redirect_uri", "https://legacy.example/cb"),
            ("scope", "openid"),
            ("state", "x"),
        ],
    );
    let resp = http().get(no_nonce).send().await.expect("get");
    assert_eq!(query(&location(&resp))["error"], "invalid_request");

    let with_nonce = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "legacy"),
            ("redirect_uri", "https://legacy.example/cb"),
            ("scope", "openid"),
            ("nonce", "n"),
        ],
    );
    let resp = http().get(with_nonce).send().await.expect("get");
    assert!(location(&resp).starts_with("/login?rid="));
}

on_both_backends!(
    unknown_client_and_wrong_secret_are_invalid_client,
    unregistered_or_prefix_redirect_uri_shows_a_page_and_never_redirects,
    missing_or_plain_pkce_redirects_invalid_request_with_state,
    unsupported_response_type_and_request_objects,
    wrong_code_verifier_is_invalid_grant,
    replayed_code_fails_and_revokes_tokens_of_its_first_use,
    reused_refresh_token_kills_the_whole_family,
    refresh_may_narrow_but_not_widen_scope,
    public_client_cannot_use_client_credentials,
    unsupported_grant_and_scope_errors,
    prompt_none_without_session_is_login_required,
    wrong_password_and_unknown_user_look_the_same,
    confidential_client_with_optional_pkce_must_send_nonce,
);

/// Administrative commands refuse to create a fresh, empty deployment by accident.
#[tokio::test]
async fn admin_commands_refuse_a_missing_deployment() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = run_cli(
        &empty.path().join("nothing-here"),
        &["client", "list"],
        "",
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start the server once first"), "{err}");
    assert!(
        !empty
            .path()
            .join("nothing-here")
            .join("keys")
            .join("master.key")
            .exists()
    );
}

/// A backup is a consistent SQLite file readable only by its owner.
#[tokio::test]
async fn backup_writes_a_private_consistent_copy() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start(Backend::Sqlite).await;
    let target = server.data_dir().join("backup.db");
    let out = server.cli(&["backup", "--to", target.to_str().expect("utf8")], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&target)
        .expect("backup")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let db_mode = std::fs::metadata(server.data_dir().join("zarish.db"))
        .expect("db")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(db_mode, 0o600);
    let again = server.cli(&["backup", "--to", target.to_str().expect("utf8")], "");
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );
}
