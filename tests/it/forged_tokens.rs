//! Forged and tampered tokens: introspection answers exactly `{"active": false}` and userinfo
//! answers 401, for every one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::*;

struct Forge {
    kid: String,
    key: EncodingKey,
    jwks: Value,
}

impl Forge {
    /// Opens the server's own ES256 signing key through the library, as an attacker holding both
    /// the database and the master key file (or a test) could.
    async fn new(server: &TestServer) -> Self {
        let jwks: Value = http()
            .get(server.url("/jwks"))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
        let master = zarish::keys::MasterKey::load_or_create(
            &server.data_dir().join("keys").join("master.key"),
        )
        .expect("master key");
        let store = zarish::store::open(
            server.database_url.as_deref(),
            &server.data_dir().join("zarish.db"),
        )
        .await
        .expect("store");
        let keys = zarish::keys::KeyVault::new(std::sync::Arc::new(master))
            .load(&store, 0, i64::MAX / 2)
            .await
            .expect("keys");
        let signer = keys.signer(zarish::model::SigningAlg::ES256);
        Self {
            kid: signer.kid.clone(),
            key: signer.encoding.clone(),
            jwks,
        }
    }

    fn claims(server: &TestServer) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64;
        json!({
            "iss": server.base, "sub": "demo-backend", "aud": format!("{}/fhir", server.base),
            "exp": now + 600, "iat": now, "jti": "forged-jti", "scope": "system/Patient.read",
            "client_id": "demo-backend", "hipaa_compliance": true
        })
    }

    fn sign(&self, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

async fn assert_rejected(server: &TestServer, token: &str, what: &str) {
    let intro: Value = http()
        .post(server.url("/introspect"))
        .basic_auth("demo-backend", server.client_secret("demo-backend"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(intro, json!({ "active": false }), "{what} must be inactive");

    let resp = http()
        .get(server.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401, "{what} must not reach userinfo");
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token")
    );
}

async fn forged_and_tampered_tokens_are_inactive(backend: Backend) {
    let server = TestServer::start(backend).await;
    let forge = Forge::new(&server).await;
    let base = Forge::claims(&server);

    // Control: a token signed with the real key and correct claims is active, so every
    // rejection below is due to the one thing changed.
    let good = forge.sign(&base, |_| {});
    let intro: Value = http()
        .post(server.url("/introspect"))
        .basic_auth("demo-backend", server.client_secret("demo-backend"))
        .form(&[("token", good.as_str())])
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(
        intro["active"], true,
        "control token must be active: {intro}"
    );

    let mut expired = base.clone();
    expired["exp"] = json!(base["iat"].as_i64().expect("iat") - 10);
    assert_rejected(&server, &forge.sign(&expired, |_| {}), "an expired token").await;

    let mut future = base.clone();
    future["nbf"] = json!(base["iat"].as_i64().expect("iat") + 3600);
    assert_rejected(
        &server,
        &forge.sign(&future, |_| {}),
        "a token with nbf in the future",
    )
    .await;

    let mut other_aud = base.clone();
    other_aud["aud"] = json!("https://other-api.example");
    assert_rejected(
        &server,
        &forge.sign(&other_aud, |_| {}),
        "a token for another audience",
    )
    .await;

    let crit = forge.sign(&base, |h| h.crit = Some(vec!["exp".into()]));
    assert_rejected(&server, &crit, "a token with a crit header").await;

    let unknown_kid = forge.sign(&base, |h| h.kid = Some("no-such-key".into()));
    assert_rejected(&server, &unknown_kid, "a token with an unknown kid").await;

    let wrong_typ = forge.sign(&base, |h| h.typ = Some("JWT".into()));
    assert_rejected(&server, &wrong_typ, "a token without typ at+jwt").await;

    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "at+jwt", "kid": forge.kid })),
        b64(&base)
    );
    assert_rejected(&server, &none, "an alg=none token").await;

    // HS256 keyed with the server's public key material (the classic algorithm confusion).
    let jwk = forge.jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == forge.kid.as_str())
        .expect("jwk");
    let public_material = serde_json::to_vec(jwk).expect("json");
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(forge.kid.clone());
    let hs = jsonwebtoken::encode(
        &header,
        &base,
        &EncodingKey::from_secret(&public_material).expect("hmac key"),
    )
    .expect("hs256");
    assert_rejected(&server, &hs, "an HS256 token keyed with the public key").await;

    let mut tampered: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = base.clone();
    claims["scope"] = json!("system/Patient.write");
    tampered[1] = b64(&claims);
    assert_rejected(&server, &tampered.join("."), "a token with altered claims").await;

    assert_rejected(&server, "not-a-jwt", "garbage").await;
    assert_rejected(&server, &"a".repeat(9000), "an oversized token").await;
}

on_both_backends!(forged_and_tampered_tokens_are_inactive,);
