//! Malformed requests: standard errors, never a 500.

use serde_json::Value;

use crate::common::*;

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

async fn malformed_token_requests_get_invalid_request(backend: Backend) {
    let server = TestServer::start(backend).await;
    let secret = server.client_secret("demo-backend").expect("secret");
    let post = |body: Vec<u8>, content_type: &'static str| {
        http()
            .post(server.url("/token"))
            .basic_auth("demo-backend", Some(secret.clone()))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";

    let dup = post(
        b"grant_type=client_credentials&grant_type=client_credentials".to_vec(),
        form,
    )
    .await
    .expect("post");
    assert_eq!(error_of(dup).await, (400, "invalid_request".into()));

    let json = post(
        br#"{"grant_type":"client_credentials"}"#.to_vec(),
        "application/json",
    )
    .await
    .expect("post");
    assert_eq!(error_of(json).await, (400, "invalid_request".into()));

    let bad_utf8 = post(
        b"grant_type=client_credentials&scope=\xff\xfe".to_vec(),
        form,
    )
    .await
    .expect("post");
    assert_eq!(error_of(bad_utf8).await, (400, "invalid_request".into()));

    let bad_escape = post(b"grant_type=client_credentials&scope=%C3%28".to_vec(), form)
        .await
        .expect("post");
    assert_eq!(error_of(bad_escape).await, (400, "invalid_request".into()));

    let missing = post(b"scope=x".to_vec(), form).await.expect("post");
    assert_eq!(error_of(missing).await, (400, "invalid_request".into()));

    let garbage = post(b"&&==&%%%&=x&y".to_vec(), form).await.expect("post");
    assert!(garbage.status().is_client_error());

    let huge = post(vec![b'a'; 10 * 1024 * 1024], form).await;
    match huge {
        Ok(resp) => assert_eq!(error_of(resp).await, (413, "invalid_request".into())),
        // The server may close the connection before reading the whole body; that is not a 500.
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }

    let mut many = String::from("grant_type=client_credentials");
    for i in 0..100 {
        many.push_str(&format!("&p{i}=1"));
    }
    let many = post(many.into_bytes(), form).await.expect("post");
    assert_eq!(error_of(many).await, (400, "invalid_request".into()));

    // The server still works afterwards.
    let ok = post(b"grant_type=client_credentials".to_vec(), form)
        .await
        .expect("post");
    assert_eq!(ok.status(), 200);
}

async fn malformed_authorization_and_login_requests_are_pages_not_500s(backend: Backend) {
    let server = TestServer::start(backend).await;
    for path in [
        "/authorize",
        "/authorize?client_id=%FF",
        "/authorize?client_id=demo-web&client_id=demo-spa",
        "/login",
        "/login?rid=nonsense",
        "/consent?rid=x",
        "/authorize/resume?rid=x",
    ] {
        let resp = http().get(server.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), 400, "{path}");
        assert!(resp.headers().get("location").is_none(), "{path}");
    }
    let resp = http()
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("rid=abc&csrf_token=def&username=x&password=y")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);

    let resp = http()
        .get(server.url("/userinfo"))
        .header("authorization", "Bearer")
        .send()
        .await
        .expect("get");
    assert!(resp.status().is_client_error());
    let resp = http().get(server.url("/nope")).send().await.expect("get");
    assert_eq!(resp.status(), 404);
}

async fn introspection_requires_a_confidential_client(backend: Backend) {
    let server = TestServer::start(backend).await;
    let resp = http()
        .post(server.url("/introspect"))
        .form(&[("token", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(error_of(resp).await, (401, "invalid_client".into()));
    let resp = http()
        .post(server.url("/introspect"))
        .form(&[("token", "x"), ("client_id", "demo-spa")])
        .send()
        .await
        .expect("post");
    assert_eq!(error_of(resp).await, (401, "invalid_client".into()));
    let resp = http()
        .post(server.url("/revoke"))
        .basic_auth("demo-backend", server.client_secret("demo-backend"))
        .form(&[("token", "unknown-token")])
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status(),
        200,
        "revoking an unknown token is not an error (RFC 7009)"
    );
}

on_both_backends!(
    malformed_token_requests_get_invalid_request,
    malformed_authorization_and_login_requests_are_pages_not_500s,
    introspection_requires_a_confidential_client,
);
