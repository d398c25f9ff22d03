//! The pages in a real browser: Debian's chromium, driven through chromedriver (WebDriver).
//! `.ci/run` installs both (`apt-get install chromium chromium-driver`); without them this
//! test fails and says so. Screenshots land in `target/screenshots/`, or in `docs/` (the ones
//! the README shows) with `UPDATE_SCREENSHOTS=1`.

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
        // all of it, so no browser outlives the test.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(format!("-{}", self.driver.id()))
            .status();
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

#[actix_web::test]
async fn a_person_signs_in_and_out_in_a_real_browser() {
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
