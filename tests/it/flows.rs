//! Happy paths with the `openidconnect` and `oauth2` crates as relying parties.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

use crate::common::*;

/// Runs the code flow by hand for `client_id` as `username`; returns the token response JSON.
pub async fn code_flow(server: &TestServer, client_id: &str, username: &str, scope: &str) -> Value {
    let (verifier, challenge) = pkce_pair();
    let redirect = if client_id == "demo-spa" {
        SPA_REDIRECT
    } else {
        WEB_REDIRECT
    };
    let url = reqwest::Url::parse_with_params(
        &server.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", scope),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("url");
    let browser = Browser::new(server);
    let password = server.password(username);
    let back = browser
        .authorize(url.as_str(), Some((username, &password)), "allow")
        .await;
    let q = query(&back);
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"), "{back}");
    let code = q.get("code").unwrap_or_else(|| panic!("no code in {back}"));

    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", &verifier),
    ];
    let mut req = http().post(server.url("/token"));
    let secret = server.client_secret(client_id);
    match &secret {
        Some(s) => req = req.basic_auth(client_id, Some(s)),
        None => form.push(("client_id", client_id)),
    }
    let resp = req.form(&form).send().await.expect("token");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn openidconnect_relying_party_code_pkce_nonce_and_refresh(backend: Backend) {
    let server = TestServer::start(backend).await;
    let http = http();

    let issuer = IssuerUrl::new(server.base.clone()).expect("issuer");
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("demo-web".into()),
        Some(ClientSecret::new(
            server.client_secret("demo-web").expect("secret"),
        )),
    )
    .set_redirect_uri(RedirectUrl::new(WEB_REDIRECT.into()).expect("redirect"));

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = Browser::new(&server);
    let password = server.password("clinician");
    let back = browser
        .authorize(auth_url.as_str(), Some(("clinician", &password)), "allow")
        .await;
    let q = query(&back);
    assert_eq!(q.get("state"), Some(csrf.secret()));
    assert_eq!(q.get("iss"), Some(&server.base));

    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");

    let id_token = tokens.id_token().expect("id token");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("valid id token");
    assert!(claims.auth_time().is_some());
    let expected_hash = claims.access_token_hash().expect("at_hash");
    let actual_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&id_verifier).expect("key"),
    )
    .expect("hash");
    assert_eq!(&actual_hash, expected_hash);

    let refresh = tokens
        .refresh_token()
        .expect("refresh token with offline_access");
    let refreshed = client
        .exchange_refresh_token(refresh)
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().expect("rotated").secret(),
        refresh.secret()
    );
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
}

async fn access_token_carries_platform_claims_and_userinfo_answers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tokens = code_flow(&server, "demo-web", "clinician", "openid profile email").await;
    let access = tokens["access_token"].as_str().expect("access token");

    let header: Value = decode_segment(access, 0);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    let claims: Value = decode_segment(access, 1);
    assert_eq!(claims["iss"], server.base.as_str());
    assert_eq!(claims["aud"], format!("{}/fhir", server.base));
    assert_eq!(claims["client_id"], "demo-web");
    assert_eq!(claims["user_type"], "clinical_staff");
    assert_eq!(claims["organization"], "hospital-abc");
    assert_eq!(claims["country_context"], "BD");
    assert_eq!(claims["hipaa_compliance"], true);
    assert!(
        claims["permissions"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p == "observation:write")
    );
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );

    let info: Value = http()
        .get(server.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["preferred_username"], "clinician");
    assert_eq!(info["email"], "clinician@hospital-abc.example");
}

pub fn decode_segment(jwt: &str, index: usize) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(index).expect("segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

async fn oauth2_crate_client_credentials_introspection_and_revocation(backend: Backend) {
    use oauth2::basic::BasicClient;
    use oauth2::{
        IntrospectionUrl, RevocationUrl, StandardRevocableToken, TokenIntrospectionResponse,
        TokenUrl,
    };

    let server = TestServer::start(backend).await;
    let http = http();
    let client = BasicClient::new(oauth2::ClientId::new("demo-backend".into()))
        .set_client_secret(oauth2::ClientSecret::new(
            server.client_secret("demo-backend").expect("secret"),
        ))
        .set_token_uri(TokenUrl::new(server.url("/token")).expect("url"))
        .set_introspection_url(IntrospectionUrl::new(server.url("/introspect")).expect("url"))
        .set_revocation_url(RevocationUrl::new(server.url("/revoke")).expect("url"));

    let token = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("system/Patient.read".into()))
        .request_async(&http)
        .await
        .expect("client credentials");
    assert!(token.refresh_token().is_none());
    let claims = decode_segment(token.access_token().secret(), 1);
    assert_eq!(claims["sub"], "demo-backend");
    assert_eq!(claims["scope"], "system/Patient.read");
    assert!(
        claims.get("organization").is_none(),
        "no user claims for a service"
    );

    let intro = client
        .introspect(token.access_token())
        .request_async(&http)
        .await
        .expect("introspect");
    assert!(intro.active());
    assert_eq!(intro.client_id().map(|c| c.as_str()), Some("demo-backend"));

    // The oauth2 crate refuses to revoke over plain HTTP (RFC 7009 asks for TLS), and these
    // tests run on loopback without TLS, so revocation is sent as a plain RFC 7009 request.
    assert!(matches!(
        client.revoke_token(StandardRevocableToken::AccessToken(
            token.access_token().clone()
        )),
        Err(oauth2::ConfigurationError::InsecureUrl(_))
    ));
    let resp = http
        .post(server.url("/revoke"))
        .basic_auth("demo-backend", server.client_secret("demo-backend"))
        .form(&[
            ("token", token.access_token().secret().as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let raw: Value = http
        .post(server.url("/introspect"))
        .basic_auth("demo-backend", server.client_secret("demo-backend"))
        .form(&[("token", token.access_token().secret())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(raw, serde_json::json!({ "active": false }));
}

async fn second_client_signs_in_through_sso_without_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let browser = Browser::new(&server);
    let password = server.password("clinician");
    let (_, challenge) = pkce_pair();
    let auth = |client: &str, redirect: &str| {
        reqwest::Url::parse_with_params(
            &server.url("/authorize"),
            &[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", redirect),
                ("scope", "openid profile"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .expect("url")
        .to_string()
    };
    let first = browser
        .authorize(
            &auth("demo-web", WEB_REDIRECT),
            Some(("clinician", &password)),
            "allow",
        )
        .await;
    assert!(query(&first).contains_key("code"));
    // No credentials this time: a password prompt would panic inside `authorize`.
    let second = browser
        .authorize(&auth("demo-spa", SPA_REDIRECT), None, "allow")
        .await;
    assert!(query(&second).contains_key("code"), "{second}");
}

async fn discovery_documents_describe_the_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let oidc: Value = http()
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(oidc["issuer"], server.base.as_str());
    assert_eq!(
        oidc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(oidc["token_endpoint"], server.url("/token"));
    let smart: Value = http()
        .get(server.url("/.well-known/smart-configuration"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(smart["authorization_endpoint"], server.url("/authorize"));
    assert!(
        smart["capabilities"]
            .as_array()
            .expect("caps")
            .iter()
            .any(|c| c == "launch-standalone")
    );

    // The issuer comes from configuration, never from the Host header.
    let spoofed: Value = http()
        .get(server.url("/.well-known/openid-configuration"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(spoofed["issuer"], server.base.as_str());
}

async fn logs_hold_no_secrets_after_a_full_sign_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tokens = code_flow(&server, "demo-web", "clinician", "openid offline_access").await;
    // Log lines are written by a background thread: wait (bounded) for the token request's line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut log = server.log();
    while !log.contains("route=\"/token\"") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = server.log();
    }
    assert!(
        log.contains("zarish::request") && log.contains("route=\"/token\""),
        "request lines are logged"
    );
    let secrets = [
        server.password("clinician"),
        server.client_secret("demo-web").expect("secret"),
        tokens["access_token"].as_str().expect("at").to_owned(),
        tokens["refresh_token"].as_str().expect("rt").to_owned(),
        tokens["id_token"].as_str().expect("idt").to_owned(),
    ];
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
    assert!(!log.contains("clinician"), "usernames stay out of the log");
}

on_both_backends!(
    openidconnect_relying_party_code_pkce_nonce_and_refresh,
    access_token_carries_platform_claims_and_userinfo_answers,
    oauth2_crate_client_credentials_introspection_and_revocation,
    second_client_signs_in_through_sso_without_password,
    discovery_documents_describe_the_server,
    logs_hold_no_secrets_after_a_full_sign_in,
);
