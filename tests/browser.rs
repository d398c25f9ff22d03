//! The pages in a real browser: Debian's chromium, driven through chromedriver (WebDriver).
//! `.ci/run` installs both (`apt-get install chromium chromium-driver`); without them these
//! tests fail and say so. Screenshots land in `target/screenshots/`, or in `docs/` (the ones
//! the README shows) with `UPDATE_SCREENSHOTS=1`. Every test name ends in
//! `in_a_real_browser`: `.ci/run` runs them apart from the rest, in a session of their own.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{ClientBuilder, Locator};

struct Chrome {
    client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // chromedriver and the chromium it started share a process group of their own: end
        // all of it, so no browser outlives the test. Signalled with kill(2) itself: Debian's procps `kill`
        // 4.0.2 took `kill -TERM -PGID` for "every process" and ended the whole machine (the
        // CI run that died with exit -1 at the end of this test).
        if let Ok(pgid) = i32::try_from(self.driver.id()) {
            if pgid > 1 {
                // SAFETY: kill(2) with a negative pid signals exactly that process group.
                unsafe {
                    libc::kill(-pgid, libc::SIGTERM);
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn chrome() -> Chrome {
    let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "chromedriver is missing: apt-get install -y chromium chromium-driver (.ci/run does)",
        );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .process_group(0)
        // Never the test's standard input: a browser that read it would eat the input of
        // whatever runs the tests (a CI runner's command stream).
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=720,720", format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session");
    Chrome {
        client,
        driver,
        _profile: profile,
    }
}

async fn screenshot(chrome: &Chrome, name: &str) {
    let png = chrome.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Clicks and waits until the browser has left the current document (its `<html>` element
/// goes stale) and the next one has a heading.
async fn click_and_wait(chrome: &Chrome, selector: &str) {
    let c = &chrome.client;
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(Locator::Css(selector))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while old.tag_name().await.is_ok() {
        assert!(Instant::now() < deadline, "the click did not navigate");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("h1"))
        .await
        .unwrap();
}

async fn fill_and_submit(chrome: &Chrome, username: &str, password: &str) {
    let c = &chrome.client;
    let user = c.find(Locator::Css("input[name=username]")).await.unwrap();
    user.clear().await.unwrap();
    user.send_keys(username).await.unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click_and_wait(chrome, "button[type=submit]").await;
}

/// A browser test may not hang CI: each gets two minutes.
async fn within_two_minutes(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("the browser test did not finish within two minutes");
}

#[actix_web::test]
async fn a_person_signs_in_and_out_in_a_real_browser() {
    within_two_minutes(sign_in_and_out()).await
}

async fn sign_in_and_out() {
    let server = TestServer::start().await;
    server.org("acme");
    server.person(
        "acme",
        "ada",
        "analytical engine",
        &["--name", "Ada Lovelace"],
    );
    let chrome = chrome().await;
    let c = &chrome.client;

    c.goto(&server.url("/login")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Sign in · Latchkey");
    screenshot(&chrome, "login.png").await;

    // A wrong password: the same page, an alert that names no field, the username kept.
    fill_and_submit(&chrome, "ada", "difference engine").await;
    let alert = c
        .find(Locator::Css("[role=alert]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(alert, "The username or password is not right.");
    let kept = c
        .find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("ada"));
    screenshot(&chrome, "login-error.png").await;

    // The right one: signed in.
    fill_and_submit(&chrome, "ada", "analytical engine").await;
    let heading = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Signed in");
    assert!(c.source().await.unwrap().contains("Ada Lovelace"));
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "lk_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));

    // Signing out ends the session: the home page sends the browser back to the login form.
    click_and_wait(&chrome, "button[type=submit]").await;
    assert!(c.source().await.unwrap().contains("You are signed out"));
    c.goto(&server.url("/")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    chrome.client.clone().close().await.unwrap();
}

/// Waits until the browser is at a URL starting with `prefix` and returns it.
async fn wait_for_url(chrome: &Chrome, prefix: &str) -> url::Url {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let at = chrome.client.current_url().await.unwrap();
        if at.as_str().starts_with(prefix) {
            return at;
        }
        assert!(Instant::now() < deadline, "never reached {prefix}; at {at}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn query(u: &url::Url) -> std::collections::HashMap<String, String> {
    u.query_pairs().into_owned().collect()
}

#[actix_web::test]
async fn a_person_consents_or_denies_in_a_real_browser() {
    within_two_minutes(consent()).await
}

async fn consent() {
    use base64::Engine;
    let server = TestServer::start().await;
    server.org("acme");
    server.person(
        "acme",
        "ada",
        "analytical engine",
        &["--name", "Ada Lovelace"],
    );
    let cb = server.url("/cb");
    let app = server.cli_json(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "Acme Notes",
        "--grant-types",
        "authorization_code,refresh_token",
        "--public",
        "--redirect-uri",
        &cb,
        "--scopes",
        "openid profile read write",
    ]);
    let client_id = app["client_id"].as_str().unwrap().to_string();
    let verifier = latchkey::crypto::random_base62(64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let authorize = |scope: &str, state: &str, extra: &str| {
        server.url(&format!(
            "/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state={state}&code_challenge={challenge}&code_challenge_method=S256{extra}",
            url::form_urlencoded::byte_serialize(cb.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>(),
        ))
    };
    let chrome = chrome().await;
    let c = &chrome.client;

    // prompt=none without a session: straight back to the app with login_required.
    c.goto(&authorize("openid", "s0", "&prompt=none"))
        .await
        .unwrap();
    let back = query(&wait_for_url(&chrome, &cb).await);
    assert_eq!(back["error"], "login_required");
    assert_eq!(back["state"], "s0");
    assert_eq!(back["iss"], server.issuer);

    // Log in, then the consent page names the app and each scope in plain words.
    c.goto(&authorize("openid profile read", "s1", ""))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    fill_and_submit(&chrome, "ada", "analytical engine").await;
    assert_eq!(c.title().await.unwrap(), "Allow Acme Notes? · Latchkey");
    let mut scopes = Vec::new();
    for li in c.find_all(Locator::Css("ul.scopes li")).await.unwrap() {
        scopes.push(li.text().await.unwrap());
    }
    assert_eq!(
        scopes,
        [
            "Confirm who you are",
            "See your name and username",
            "Read your data"
        ]
    );
    screenshot(&chrome, "consent.png").await;

    // Deny: back to the app with access_denied, and nothing remembered.
    c.find(Locator::Css("button[value=deny]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = query(&wait_for_url(&chrome, &cb).await);
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], "s1");
    assert!(!back.contains_key("code"));

    // A forged CSRF token is refused, and no code is issued.
    c.goto(&authorize("openid profile read", "s2", ""))
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "Allow Acme Notes? · Latchkey");
    c.execute(
        "document.querySelector('input[name=csrf_token]').value = arguments[0];",
        vec![serde_json::json!(latchkey::crypto::random_base62(43))],
    )
    .await
    .unwrap();
    click_and_wait(&chrome, "button[value=allow]").await;
    assert!(!c.current_url().await.unwrap().as_str().starts_with(&cb));
    assert!(
        c.source().await.unwrap().to_lowercase().contains("expired"),
        "the refusal page"
    );

    // Allow: a code, which redeems (with the verifier) for tokens.
    c.goto(&authorize("openid profile read", "s3", ""))
        .await
        .unwrap();
    c.find(Locator::Css("button[value=allow]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = query(&wait_for_url(&chrome, &cb).await);
    assert_eq!(back["state"], "s3");
    assert_eq!(back["iss"], server.issuer);
    let tokens: serde_json::Value = http()
        .post(server.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", back["code"].as_str()),
            ("redirect_uri", cb.as_str()),
            ("client_id", client_id.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // Consent is remembered: a subset of the scopes goes straight back with a code.
    c.goto(&authorize("openid read", "s4", "")).await.unwrap();
    let back = query(&wait_for_url(&chrome, &cb).await);
    assert!(back.contains_key("code"), "{back:?}");
    // prompt=consent asks again.
    c.goto(&authorize("openid read", "s5", "&prompt=consent"))
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "Allow Acme Notes? · Latchkey");
    chrome.client.clone().close().await.unwrap();
}

async fn text_of(chrome: &Chrome, selector: &str) -> String {
    chrome
        .client
        .find(Locator::Css(selector))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn value_of(chrome: &Chrome, selector: &str) -> String {
    chrome
        .client
        .find(Locator::Css(selector))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn authtest_status(server: &TestServer, key: &str) -> u16 {
    http()
        .get(server.url("/v1/utils/authtest"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn an_admin_manages_api_keys_on_the_dashboard_in_a_real_browser() {
    within_two_minutes(dashboard()).await
}

async fn dashboard() {
    let server = TestServer::start().await;
    server.org("acme");
    server.person("acme", "root", "correct horse battery", &["--admin"]);
    server.person("acme", "ada", "analytical engine", &[]);
    let chrome = chrome().await;
    let c = &chrome.client;

    // Signed out: the login page, then back to the dashboard.
    c.goto(&server.url("/dashboard/api-keys")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    fill_and_submit(&chrome, "root", "correct horse battery").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/dashboard/api-keys");
    assert_eq!(c.title().await.unwrap(), "API keys · Latchkey");

    // Create a restricted key with a few scopes (clicking the labels, as a person would).
    c.find(Locator::Css("#key-name"))
        .await
        .unwrap()
        .send_keys("Billing worker")
        .await
        .unwrap();
    for id in ["scope-write", "scope-keys-manage"] {
        c.find(Locator::Css(&format!("label[for={id}]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    click_and_wait(&chrome, "form.create button[type=submit]").await;
    let key = value_of(&chrome, "#new-key").await;
    assert!(key.starts_with("rk_live_"), "{key}");
    assert_eq!(key.len(), "rk_live_".len() + 43 + 6);
    assert!(
        latchkey::apikey::parse(&key).is_some(),
        "the checksum holds"
    );
    let readonly = c
        .find(Locator::Css("#new-key"))
        .await
        .unwrap()
        .attr("readonly")
        .await
        .unwrap();
    assert!(readonly.is_some(), "the key sits in a readonly input");

    // The Copy button: shown by the script (served from /assets/ under script-src 'self').
    let copy = c.find(Locator::Css("#copy-key")).await.unwrap();
    assert!(copy.is_displayed().await.unwrap(), "the script ran");
    assert_eq!(copy.text().await.unwrap(), "Copy");
    c.set_window_size(1180, 900).await.unwrap();
    screenshot(&chrome, "dashboard.png").await;
    copy.click().await.unwrap();
    // Headless chromium may refuse the clipboard; either way the page says what happened.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = text_of(&chrome, "#copy-status").await;
        if status.contains("clipboard") || status.contains("refused") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Copy button did nothing: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if copy.text().await.unwrap() == "Copied" {
        let read = c
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 navigator.clipboard.readText().then(done, () => done(null));",
                vec![],
            )
            .await
            .ok();
        if let Some(text) = read.as_ref().and_then(|v| v.as_str()) {
            assert_eq!(text, key, "the clipboard holds the key");
        }
    }
    assert_eq!(authtest_status(&server, &key).await, 200);

    // Reloading shows the key's prefix in the list, never the key again.
    c.goto(&server.url("/dashboard/api-keys")).await.unwrap();
    let source = c.source().await.unwrap();
    assert!(!source.contains(&key));
    assert!(source.contains("Billing worker"));
    assert!(source.contains("write, keys:manage"));

    // Rotate without grace: a new key, shown once; the old one stops at once.
    let select = c.find(Locator::Css("form.row-form select")).await.unwrap();
    select.select_by_value("0").await.unwrap();
    click_and_wait(&chrome, "form.row-form button[type=submit]").await;
    let rotated = value_of(&chrome, "#new-key").await;
    assert!(rotated.starts_with("rk_live_") && rotated != key);
    assert_eq!(authtest_status(&server, &rotated).await, 200);
    assert_eq!(authtest_status(&server, &key).await, 401);

    // Revoke the new key (its row is the one with its prefix): refused at once, and it leaves
    // the list; the old one is listed as rotated and expired.
    let prefix = &rotated[.."rk_live_".len() + 4];
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(Locator::XPath(&format!(
        "//tr[.//code[starts-with(., '{prefix}')]]//button[contains(@class, 'danger')]"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while old.tag_name().await.is_ok() {
        assert!(Instant::now() < deadline, "the click did not navigate");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    assert!(text_of(&chrome, "p.notice").await.contains("revoked"));
    assert_eq!(authtest_status(&server, &rotated).await, 401);
    let source = c.source().await.unwrap();
    assert!(!source.contains(prefix), "a revoked key leaves the list");
    assert!(source.contains("Rotated") && source.contains("Expired"));

    // Signing out, then in as a person who is not an admin: refused.
    click_and_wait(&chrome, "form.inline button[type=submit]").await;
    c.goto(&server.url("/login?return_to=/dashboard/api-keys"))
        .await
        .unwrap();
    fill_and_submit(&chrome, "ada", "analytical engine").await;
    assert_eq!(text_of(&chrome, "h1").await, "Administrators only");
    assert!(c
        .find_all(Locator::Css("form.create"))
        .await
        .unwrap()
        .is_empty());
    chrome.client.clone().close().await.unwrap();
}
