//! Multi-factor sign-in, brute-force defence, sessions and logout, over HTTP against an
//! in-process server whose clock the tests move.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;
use crate::flows::decode_segment;
use crate::local::Local;

/// A browser on the in-process server.
struct Tab {
    http: reqwest::Client,
    base: String,
}

fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in:\n{html}"))
        + marker.len();
    html[start..start + html[start..].find('"').expect("quote")].to_owned()
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
        .replace("&#x2f;", "/")
}

/// The TOTP generator of the enrolment page's `otpauth://` link.
fn totp_from_page(html: &str) -> totp_rs::Totp {
    let start = html.find("href=\"otpauth://").expect("otpauth link") + 6;
    let end = start + html[start..].find('"').expect("quote");
    totp_rs::Totp::from_url(unescape(&html[start..end])).expect("otpauth uri")
}

fn code_at(totp: &totp_rs::Totp, time: i64) -> String {
    totp.generate(time as u64).to_string()
}

struct Step {
    status: StatusCode,
    location: Option<String>,
    html: String,
}

impl Tab {
    fn new(local: &Local) -> Self {
        Self {
            http: crate::common::browser_client(),
            base: local.base.clone(),
        }
    }

    fn abs(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            path.to_owned()
        }
    }

    async fn get(&self, path: &str) -> Step {
        Self::step(self.http.get(self.abs(path)).send().await.expect("get")).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Step {
        Self::step(
            self.http
                .post(self.abs(path))
                .form(form)
                .send()
                .await
                .expect("post"),
        )
        .await
    }

    async fn step(resp: reqwest::Response) -> Step {
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("ascii").to_owned());
        Step {
            status,
            location,
            html: resp.text().await.expect("body"),
        }
    }

    /// Starts an authorization request and returns the sign-in page.
    async fn start(&self, extra: &[(&str, &str)]) -> Step {
        let (_, challenge) = pkce_pair();
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid offline_access"),
            ("state", "s"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        params.extend_from_slice(extra);
        let url = reqwest::Url::parse_with_params(&self.abs("/authorize"), &params).expect("url");
        let first = self.get(url.as_str()).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER);
        self.get(first.location.as_deref().expect("to login")).await
    }

    async fn password(&self, page: &Step, username: &str, password: &str) -> Step {
        let (rid, csrf) = (field(&page.html, "rid"), field(&page.html, "csrf_token"));
        self.post(
            "/login",
            &[
                ("rid", &rid),
                ("csrf_token", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    async fn code(&self, page: &Step, action: &str, code: &str) -> Step {
        let (rid, csrf) = (field(&page.html, "rid"), field(&page.html, "csrf_token"));
        self.post(
            action,
            &[("rid", &rid), ("csrf_token", &csrf), ("code", code)],
        )
        .await
    }

    /// Follows the server's redirects to the client's redirect URI and returns its query.
    async fn finish(&self, mut step: Step) -> std::collections::HashMap<String, String> {
        for _ in 0..5 {
            let loc = step
                .location
                .clone()
                .unwrap_or_else(|| panic!("expected a redirect: {}", step.html));
            if loc.starts_with(WEB_REDIRECT) {
                return query(&loc);
            }
            step = self.get(&loc).await;
        }
        panic!("too many redirects");
    }
}

fn continue_link(html: &str) -> String {
    let start = html.find("<a href=\"").expect("continue link") + 9;
    unescape(&html[start..start + html[start..].find('"').expect("quote")])
}

/// Signs `username` in as far as a code, enrolling a factor when asked. Returns (code, verifier,
/// TOTP generator if one was enrolled).
async fn sign_in_enrolling(
    local: &Local,
    tab: &Tab,
    username: &str,
) -> (String, String, Option<totp_rs::Totp>) {
    sign_in(local, tab, username, None).await
}

/// Signs `username` in as far as a code: enrols when asked, or answers the second-factor page
/// with `known` at the current time.
async fn sign_in(
    local: &Local,
    tab: &Tab,
    username: &str,
    known: Option<&totp_rs::Totp>,
) -> (String, String, Option<totp_rs::Totp>) {
    let (verifier, challenge) = pkce_pair();
    let url = reqwest::Url::parse_with_params(
        &local.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid offline_access account"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("url");
    let first = tab
        .get(&format!(
            "{url}{}",
            if username == "analyst" {
                "&acr_values=urn%3Azarish%3Aacr%3Amfa"
            } else {
                ""
            }
        ))
        .await;
    let login = tab.get(first.location.as_deref().expect("login")).await;
    let after = tab
        .password(&login, username, &local.password(username))
        .await;
    let loc = after.location.clone().expect("redirect after password");
    if loc.starts_with("/login/otp") {
        let otp = tab.get(&loc).await;
        let totp = known.expect("a second factor is asked for");
        let done = tab
            .code(&otp, "/login/otp", &code_at(totp, local.now()))
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
        return (tab.finish(done).await["code"].clone(), verifier, None);
    }
    if !loc.starts_with("/login/enroll") {
        return (tab.finish(after).await["code"].clone(), verifier, None);
    }
    let enroll = tab.get(&loc).await;
    let totp = totp_from_page(&enroll.html);
    let codes_page = tab
        .code(&enroll, "/login/enroll", &code_at(&totp, local.now()))
        .await;
    assert_eq!(codes_page.status, StatusCode::OK);
    let next = tab.get(&continue_link(&codes_page.html)).await;
    (tab.finish(next).await["code"].clone(), verifier, Some(totp))
}

async fn redeem(local: &Local, code: &str, verifier: &str) -> Value {
    let resp = http()
        .post(local.url("/token"))
        .basic_auth("demo-web", Some(local.client_secret("demo-web")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn mfa_required_role_enrols_before_any_token(backend: Backend) {
    let local = Local::start(backend, "").await;
    let tab = Tab::new(&local);
    let login = tab.start(&[]).await;
    let after = tab
        .password(&login, "provider", &local.password("provider"))
        .await;
    let enroll_url = after.location.clone().expect("redirect");
    assert!(enroll_url.starts_with("/login/enroll?rid="), "{enroll_url}");

    // The password alone gets no code: resuming the request leads back to sign-in.
    let rid = enroll_url.split("rid=").nth(1).expect("rid");
    let resumed = tab.get(&format!("/authorize/resume?rid={rid}")).await;
    assert!(
        resumed
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login?rid="))
    );

    let enroll = tab.get(&enroll_url).await;
    assert!(
        enroll.html.contains("<svg"),
        "a QR code is rendered server-side"
    );
    let totp = totp_from_page(&enroll.html);
    let uri = totp.to_url().expect("uri");
    assert!(
        uri.starts_with("otpauth://totp/ZARISH%20SPHERE:provider?"),
        "{uri}"
    );
    let wrong = tab.code(&enroll, "/login/enroll", "000000").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let codes = tab
        .code(&wrong, "/login/enroll", &code_at(&totp, local.now()))
        .await;
    assert_eq!(codes.status, StatusCode::OK);
    assert_eq!(
        codes.html.matches("<li><code>").count(),
        10,
        "ten backup codes shown once"
    );
    let next = tab.get(&continue_link(&codes.html)).await;
    let q = tab.finish(next).await;
    assert!(q.contains_key("code"));
}

async fn amr_and_acr_follow_the_factors_used(backend: Backend) {
    let local = Local::start(backend, "").await;
    let (code, verifier, totp) = sign_in_enrolling(&local, &Tab::new(&local), "provider").await;
    assert!(totp.is_some());
    let tokens = redeem(&local, &code, &verifier).await;
    let access = decode_segment(tokens["access_token"].as_str().expect("at"), 1);
    assert_eq!(access["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(access["acr"], "urn:zarish:acr:mfa");
    let id = decode_segment(tokens["id_token"].as_str().expect("id"), 1);
    assert_eq!(id["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(id["acr"], "urn:zarish:acr:mfa");

    let (code, verifier, totp) = sign_in_enrolling(&local, &Tab::new(&local), "clinician").await;
    assert!(
        totp.is_none(),
        "clinical_staff needs no second factor by default"
    );
    let tokens = redeem(&local, &code, &verifier).await;
    let access = decode_segment(tokens["access_token"].as_str().expect("at"), 1);
    assert_eq!(access["amr"], serde_json::json!(["pwd"]));
    assert_eq!(access["acr"], "urn:zarish:acr:pwd");
}

async fn totp_codes_are_single_use_and_the_window_is_one_step(backend: Backend) {
    let local = Local::start(backend, "").await;
    let (_, _, totp) = sign_in_enrolling(&local, &Tab::new(&local), "provider").await;
    let totp = totp.expect("enrolled");
    let enrolled_at = local.now();

    // The enrolment code's step is spent: the same code cannot sign in again.
    let tab = Tab::new(&local);
    let login = tab.start(&[]).await;
    let otp = tab
        .get(
            tab.password(&login, "provider", &local.password("provider"))
                .await
                .location
                .as_deref()
                .expect("otp"),
        )
        .await;
    assert!(otp.html.contains("action=\"/login/otp\""));
    let replay = tab
        .code(&otp, "/login/otp", &code_at(&totp, enrolled_at))
        .await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "a used code is refused"
    );

    // Two steps later: a code from two steps ago is outside the window.
    local.clock.advance(60);
    let stale = tab
        .code(&replay, "/login/otp", &code_at(&totp, local.now() - 60))
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNAUTHORIZED,
        "two steps ago is too old"
    );

    let ok = tab
        .code(&stale, "/login/otp", &code_at(&totp, local.now() - 30))
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "one step ago is accepted");
    assert!(tab.finish(ok).await.contains_key("code"));

    // The current step is newer than the last used one, but the previous step is not any more.
    let tab = Tab::new(&local);
    let login = tab.start(&[]).await;
    let otp = tab
        .get(
            tab.password(&login, "provider", &local.password("provider"))
                .await
                .location
                .as_deref()
                .expect("otp"),
        )
        .await;
    let again = tab
        .code(&otp, "/login/otp", &code_at(&totp, local.now() - 30))
        .await;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "the neighbouring step was used"
    );
    let current = tab
        .code(&again, "/login/otp", &code_at(&totp, local.now()))
        .await;
    assert_eq!(current.status, StatusCode::SEE_OTHER);
}

async fn racing_totp_codes_succeed_once(backend: Backend) {
    let local = Local::start(backend, "").await;
    let (_, _, totp) = sign_in_enrolling(&local, &Tab::new(&local), "provider").await;
    let totp = totp.expect("enrolled");
    local.clock.advance(30);
    let user = local
        .state
        .store
        .find_user_by_username("provider")
        .await
        .expect("store")
        .expect("user");
    let code = code_at(&totp, local.now());
    let state = Arc::new(local.state.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (state, user, code) = (state.clone(), user.clone(), code.clone());
            tokio::spawn(async move {
                zarish::factors::verify(&state, &user, &code)
                    .await
                    .expect("verify")
                    .is_some()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.expect("task"));
    }
    assert_eq!(wins, 1, "one TOTP code, fifty racing requests, one success");
}

async fn backup_codes_work_once_and_race_to_one_success(backend: Backend) {
    let local = Local::start(backend, "").await;
    let tab = Tab::new(&local);
    let login = tab.start(&[]).await;
    let after = tab
        .password(&login, "provider", &local.password("provider"))
        .await;
    let enroll = tab.get(after.location.as_deref().expect("enroll")).await;
    let totp = totp_from_page(&enroll.html);
    let codes_page = tab
        .code(&enroll, "/login/enroll", &code_at(&totp, local.now()))
        .await;
    let codes: Vec<String> = codes_page
        .html
        .split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find("</code>").expect("end")].to_owned())
        .collect();
    assert_eq!(codes.len(), 10);

    // Sign in with the first backup code: the page says how many remain.
    let tab2 = Tab::new(&local);
    let login = tab2.start(&[]).await;
    let otp = tab2
        .get(
            tab2.password(&login, "provider", &local.password("provider"))
                .await
                .location
                .as_deref()
                .expect("otp"),
        )
        .await;
    let used = tab2.code(&otp, "/login/otp", &codes[0]).await;
    assert_eq!(used.status, StatusCode::OK);
    assert!(used.html.contains("9 backup codes left"), "{}", used.html);

    // The same code again fails.
    let tab3 = Tab::new(&local);
    let login = tab3.start(&[]).await;
    let otp = tab3
        .get(
            tab3.password(&login, "provider", &local.password("provider"))
                .await
                .location
                .as_deref()
                .expect("otp"),
        )
        .await;
    let reused = tab3.code(&otp, "/login/otp", &codes[0]).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);

    // Fifty parallel uses of one code: exactly one succeeds.
    let user = local
        .state
        .store
        .find_user_by_username("provider")
        .await
        .expect("store")
        .expect("user");
    let state = Arc::new(local.state.clone());
    let code = codes[1].clone();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (state, user, code) = (state.clone(), user.clone(), code.clone());
            tokio::spawn(async move {
                zarish::factors::verify(&state, &user, &code)
                    .await
                    .expect("verify")
                    .is_some()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.expect("task"));
    }
    assert_eq!(
        wins, 1,
        "fifty parallel uses of one backup code, one success"
    );

    // Regenerating invalidates every earlier code.
    let fresh = zarish::factors::regenerate_backup_codes(&local.state, &user)
        .await
        .expect("regenerate");
    assert!(
        zarish::factors::verify(&local.state, &user, &codes[2])
            .await
            .expect("verify")
            .is_none()
    );
    assert!(
        zarish::factors::verify(&local.state, &user, fresh[0].expose())
            .await
            .expect("verify")
            .is_some()
    );
}

async fn ip_block_starts_at_the_fifth_failure_and_ends_after_the_window(backend: Backend) {
    let local = Local::start(backend, "").await;
    let tab = Tab::new(&local);
    let mut page = tab.start(&[]).await;
    for attempt in 1..=5 {
        // Different usernames, so the per-account delay stays out of the way; a spoofed
        // X-Forwarded-For from an untrusted peer must not move the count elsewhere.
        let (rid, csrf) = (field(&page.html, "rid"), field(&page.html, "csrf_token"));
        let user = format!("nobody{attempt}");
        let resp = tab
            .http
            .post(local.url("/login"))
            .header("x-forwarded-for", format!("10.9.9.{attempt}"))
            .form(&[
                ("rid", rid.as_str()),
                ("csrf_token", &csrf),
                ("username", &user),
                ("password", "wrong-password"),
            ])
            .send()
            .await
            .expect("post");
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").to_owned());
        if attempt < 5 {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
            page = Step {
                status,
                location: None,
                html: resp.text().await.expect("html"),
            };
        } else {
            assert_eq!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "the fifth failure blocks"
            );
            assert_eq!(retry.as_deref(), Some("900"));
            assert!(
                resp.text()
                    .await
                    .expect("html")
                    .contains("Too many failed sign-in attempts")
            );
        }
    }

    // Even the right password is refused while blocked, from any claimed address.
    let tab = Tab::new(&local);
    let login = tab.start(&[]).await;
    let blocked = tab
        .password(&login, "clinician", &local.password("clinician"))
        .await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.html
    );

    // (Pending requests live ten minutes, so each attempt below starts a new one.)
    local.clock.advance(899);
    let login = tab.start(&[]).await;
    let still = tab
        .password(&login, "clinician", &local.password("clinician"))
        .await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    local.clock.advance(2);
    let login = tab.start(&[]).await;
    let open = tab
        .password(&login, "clinician", &local.password("clinician"))
        .await;
    assert_eq!(
        open.status,
        StatusCode::SEE_OTHER,
        "the block ends after 15 minutes"
    );
}

async fn trusted_proxy_forwarded_address_is_counted(backend: Backend) {
    let local = Local::start(backend, "trusted_proxies = [\"127.0.0.1\"]\n").await;
    let tab = Tab::new(&local);
    let page = tab.start(&[]).await;
    let (rid, csrf) = (field(&page.html, "rid"), field(&page.html, "csrf_token"));
    let attempt = |ip: &'static str, user: String| {
        let form = vec![
            ("rid", rid.clone()),
            ("csrf_token", csrf.clone()),
            ("username", user),
            ("password", "bad".to_owned()),
        ];
        tab.http
            .post(local.url("/login"))
            .header("x-forwarded-for", ip)
            .form(&form)
            .send()
    };
    for i in 0..5 {
        let status = attempt("192.0.2.7", format!("u{i}"))
            .await
            .expect("post")
            .status();
        assert_eq!(
            status,
            if i < 4 {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::TOO_MANY_REQUESTS
            }
        );
    }
    assert_eq!(
        attempt("192.0.2.7", "x".into())
            .await
            .expect("post")
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        attempt("198.51.100.4", "y".into())
            .await
            .expect("post")
            .status(),
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy is not blocked"
    );
}

async fn account_delay_grows_and_a_success_resets_it(backend: Backend) {
    let local = Local::start(backend, "[signin]\nip_failure_limit = 100\n").await;
    let tab = Tab::new(&local);
    let page = tab.start(&[]).await;
    for _ in 0..4 {
        let step = tab.password(&page, "clinician", "not-the-password").await;
        assert_eq!(step.status, StatusCode::UNAUTHORIZED);
    }
    // After four failures (three free), the next attempt waits 2 s.
    let wait = tab
        .password(&page, "clinician", &local.password("clinician"))
        .await;
    assert_eq!(wait.status, StatusCode::TOO_MANY_REQUESTS);
    local.clock.advance(2);
    let fail = tab.password(&page, "clinician", "still-wrong").await;
    assert_eq!(fail.status, StatusCode::UNAUTHORIZED);
    local.clock.advance(3);
    let wait = tab
        .password(&page, "clinician", &local.password("clinician"))
        .await;
    assert_eq!(
        wait.status,
        StatusCode::TOO_MANY_REQUESTS,
        "five failures: 4 s"
    );
    local.clock.advance(1);
    let ok = tab
        .password(&page, "clinician", &local.password("clinician"))
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);

    // The delay never exceeds the cap, however many failures.
    let user = "nobody-at-all";
    use zarish::throttle::{Attempt, attempt};
    type Outcome = Result<Option<()>, zarish::store::StoreError>;
    for _ in 0..20 {
        local.clock.advance(31);
        let refused = attempt(&local.state, "203.0.113.1", user, async {
            Outcome::Ok(None)
        })
        .await
        .expect("attempt");
        assert!(matches!(refused, Attempt::Refused), "{refused:?}");
    }
    let next = attempt(&local.state, "203.0.113.1", user, async {
        Outcome::Ok(Some(()))
    })
    .await
    .expect("attempt");
    assert!(
        matches!(next, Attempt::Blocked(30)),
        "the delay is capped at 30 s: {next:?}"
    );
}

async fn acr_values_demand_a_second_factor_from_any_role(backend: Backend) {
    let local = Local::start(backend, "").await;
    let tab = Tab::new(&local);
    let login = tab.start(&[("acr_values", "urn:zarish:acr:mfa")]).await;
    let after = tab
        .password(&login, "clinician", &local.password("clinician"))
        .await;
    assert!(
        after
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login/enroll"))
    );
}

async fn step_up_api_needs_a_fresh_second_factor(backend: Backend) {
    let local = Local::start(backend, "").await;
    let (code, verifier, _) = sign_in_enrolling(&local, &Tab::new(&local), "clinician").await;
    let pwd_only = redeem(&local, &code, &verifier).await;
    let call = |token: String| {
        http()
            .delete(local.url("/api/account/mfa"))
            .bearer_auth(token)
            .send()
    };
    let resp = call(pwd_only["access_token"].as_str().expect("at").to_owned())
        .await
        .expect("delete");
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("acr_values=\"urn:zarish:acr:mfa\""));

    // analyst (no role requirement) enrols because the client asks for acr=mfa.
    let (code, verifier, totp) = sign_in_enrolling(&local, &Tab::new(&local), "analyst").await;
    let totp = totp.expect("enrolled");
    let mfa = redeem(&local, &code, &verifier).await;
    let token = mfa["access_token"].as_str().expect("at").to_owned();
    local.clock.advance(301);
    let stale = call(token).await.expect("delete");
    assert_eq!(
        stale.status(),
        401,
        "a second factor five minutes old is not fresh"
    );

    let (code, verifier, _) = sign_in(&local, &Tab::new(&local), "analyst", Some(&totp)).await;
    let fresh = redeem(&local, &code, &verifier).await;
    let resp = call(fresh["access_token"].as_str().expect("at").to_owned())
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let user = local
        .state
        .store
        .find_user_by_username("analyst")
        .await
        .expect("store")
        .expect("user");
    assert!(
        local
            .state
            .store
            .get_mfa(&user.id)
            .await
            .expect("store")
            .is_none(),
        "the factor is gone"
    );
    let sessions = local
        .state
        .store
        .list_sessions(&user.id, local.now())
        .await
        .expect("store");
    assert!(
        sessions.is_empty(),
        "removing the factor ends the sessions it protected"
    );

    // A role that requires a second factor cannot remove it, however fresh the sign-in.
    let (code, verifier, _) = sign_in_enrolling(&local, &Tab::new(&local), "provider").await;
    let provider = redeem(&local, &code, &verifier).await;
    let resp = call(provider["access_token"].as_str().expect("at").to_owned())
        .await
        .expect("delete");
    assert_eq!(resp.status(), 403);
}

async fn logout_ends_the_session_and_its_refresh_tokens(backend: Backend) {
    let local = Local::start(backend, "").await;
    let tab = Tab::new(&local);
    let (code, verifier, _) = sign_in_enrolling(&local, &tab, "clinician").await;
    let tokens = redeem(&local, &code, &verifier).await;
    let id_token = tokens["id_token"].as_str().expect("id").to_owned();
    let refresh = tokens["refresh_token"].as_str().expect("rt").to_owned();

    let bad = tab
        .get(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fevil&state=z"
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.location.is_none(),
        "an unregistered post-logout URI is never followed"
    );

    let out = tab
        .get(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A3000%2F&state=z"
        ))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        out.location.as_deref(),
        Some("http://localhost:3000/?state=z")
    );

    let resp = http()
        .post(local.url("/token"))
        .basic_auth("demo-web", Some(local.client_secret("demo-web")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .expect("refresh");
    assert_eq!(
        resp.status(),
        400,
        "logout revoked the session's refresh tokens"
    );

    // The browser is signed out: a new request asks for the password again.
    let again = tab.start(&[]).await;
    assert!(again.html.contains("name=\"password\""));
}

/// Thirty guesses sent at once from one address are checked one by one: only the first five
/// are evaluated, the rest meet the block (they once all passed the check together).
async fn parallel_guesses_cannot_outrun_the_block(backend: Backend) {
    let local = Local::start(backend, "").await;
    let tab = Tab::new(&local);
    let page = tab.start(&[]).await;
    let (rid, csrf) = (field(&page.html, "rid"), field(&page.html, "csrf_token"));
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let form = vec![
                ("rid", rid.clone()),
                ("csrf_token", csrf.clone()),
                ("username", "orgadmin".to_owned()),
                ("password", format!("guess-number-{i}")),
            ];
            let request = tab.http.post(local.url("/login")).form(&form).send();
            tokio::spawn(async move { request.await.expect("post").status() })
        })
        .collect();
    let mut evaluated = 0;
    for task in tasks {
        let status = task.await.expect("task");
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        evaluated += usize::from(status == StatusCode::UNAUTHORIZED);
    }
    assert!(
        evaluated <= 4,
        "{evaluated} guesses were evaluated before the block"
    );
}

on_both_backends!(
    parallel_guesses_cannot_outrun_the_block,
    mfa_required_role_enrols_before_any_token,
    amr_and_acr_follow_the_factors_used,
    totp_codes_are_single_use_and_the_window_is_one_step,
    racing_totp_codes_succeed_once,
    backup_codes_work_once_and_race_to_one_success,
    ip_block_starts_at_the_fifth_failure_and_ends_after_the_window,
    trusted_proxy_forwarded_address_is_counted,
    account_delay_grows_and_a_success_resets_it,
    acr_values_demand_a_second_factor_from_any_role,
    step_up_api_needs_a_fresh_second_factor,
    logout_ends_the_session_and_its_refresh_tokens,
);
