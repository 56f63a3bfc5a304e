//! Regression tests for the findings of the attack review: each was a real weakness once.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::flows::code_flow;

fn authorize_url(server: &TestServer, extra: &[(&str, &str)]) -> String {
    let (_, challenge) = pkce_pair();
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "demo-web"),
        ("redirect_uri", WEB_REDIRECT),
        ("scope", "openid"),
        ("state", "h"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    reqwest::Url::parse_with_params(&server.url("/authorize"), &params)
        .expect("url")
        .to_string()
}

/// A pending request waiting at the sign-in step cannot be pushed through /consent.
async fn consent_does_not_skip_a_required_sign_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let browser = Browser::new(&server);
    let password = server.password("clinician");
    let first = browser
        .authorize(
            &authorize_url(&server, &[]),
            Some(("clinician", &password)),
            "allow",
        )
        .await;
    assert!(query(&first).contains_key("code"));

    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        let resp = browser
            .http
            .get(authorize_url(&server, &extra))
            .send()
            .await
            .expect("get");
        let login = location(&resp);
        assert!(login.starts_with("/login?rid="), "{login}");
        let rid = login.trim_start_matches("/login?rid=");

        let page = browser
            .http
            .get(server.url(&format!("/consent?rid={rid}")))
            .send()
            .await
            .expect("get");
        assert_eq!(page.status(), 303);
        assert!(
            location(&page).starts_with("/login?rid="),
            "the consent page sends back to sign-in"
        );

        let csrf_html = browser
            .http
            .get(server.url(&login))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("html");
        let marker = "name=\"csrf_token\" value=\"";
        let start = csrf_html.find(marker).expect("csrf") + marker.len();
        let csrf = &csrf_html[start..start + csrf_html[start..].find('"').expect("quote")];
        let post = browser
            .http
            .post(server.url("/consent"))
            .form(&[("rid", rid), ("csrf_token", csrf), ("decision", "allow")])
            .send()
            .await
            .expect("post");
        assert_eq!(post.status(), 303);
        let loc = location(&post);
        assert!(
            loc.starts_with("/login?rid="),
            "no code without the fresh sign-in: {loc}"
        );
    }
}

/// Signing in as someone other than the `id_token_hint` names ends in `login_required`.
async fn id_token_hint_must_match_the_user_who_signs_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tokens = code_flow(&server, "demo-web", "clinician", "openid").await;
    let hint = tokens["id_token"].as_str().expect("id token");
    let browser = Browser::new(&server);
    let password = server.password("analyst");
    let back = browser
        .authorize(
            &authorize_url(&server, &[("id_token_hint", hint)]),
            Some(("analyst", &password)),
            "allow",
        )
        .await;
    let q = query(&back);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("login_required"),
        "{back}"
    );
    assert!(!q.contains_key("code"));
}

/// NUL bytes are refused as invalid_request on every backend (PostgreSQL text cannot hold them).
async fn nul_bytes_are_invalid_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let resp = http()
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=demo%00&client_secret=x")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "invalid_request"
    );

    let resp = http()
        .post(server.url("/token"))
        .basic_auth("demo%00", Some("x"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 401);

    let resp = http()
        .get(server.url("/authorize?client_id=demo-web%00"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

/// A refresh token is introspectable only by the client it was issued to.
async fn refresh_tokens_are_private_to_their_client(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tokens = code_flow(&server, "demo-web", "clinician", "openid offline_access").await;
    let refresh = tokens["refresh_token"].as_str().expect("rt");
    let ask = |client: &'static str| {
        http()
            .post(server.url("/introspect"))
            .basic_auth(client, server.client_secret(client))
            .form(&[("token", refresh)])
            .send()
    };
    let own: Value = ask("demo-web")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(own["active"], true);
    let other: Value = ask("demo-backend")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(other, serde_json::json!({ "active": false }));
}

/// Access tokens in the URL query are not read (RFC 9700 §4.3.2).
async fn userinfo_ignores_tokens_in_the_query(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tokens = code_flow(&server, "demo-web", "clinician", "openid profile").await;
    let access = tokens["access_token"].as_str().expect("at");
    let resp = http()
        .get(server.url(&format!("/userinfo?access_token={access}")))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 401);
    let resp = http()
        .post(server.url("/userinfo"))
        .form(&[("access_token", access)])
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status(),
        200,
        "the form body is allowed (RFC 6750 §2.2)"
    );
}

/// A client that never finishes its request headers is disconnected.
async fn slow_headers_are_cut_off(backend: Backend) {
    let server = TestServer::start(backend).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
    let closed = matches!(outcome, Ok(Ok(_)) | Ok(Err(_)));
    assert!(closed, "the server keeps a half-sent request open");
    assert!(started.elapsed() < Duration::from_secs(30));
}

on_both_backends!(
    consent_does_not_skip_a_required_sign_in,
    id_token_hint_must_match_the_user_who_signs_in,
    nul_bytes_are_invalid_requests,
    refresh_tokens_are_private_to_their_client,
    userinfo_ignores_tokens_in_the_query,
    slow_headers_are_cut_off,
);
