//! Test harness: a real Latchkey on a random loopback port, on a fresh database per test —
//! a SQLite file in a temporary directory, or, when `TEST_DATABASE_URL` names a PostgreSQL
//! server (`postgres://127.0.0.1/postgres`), a new database created on it and dropped after.
//! The CLI is the real binary, run against the same database and instance secret.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use actix_web::dev::ServerHandle;
use actix_web::web;
use base64::Engine;
use diesel::{Connection, RunQueryDsl};
use serde_json::Value;

pub const SECRET_B64: &str = "dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtMzJieXRlcw==";

/// A database for one test.
pub struct TestDb {
    pub url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn new() -> TestDb {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if base.starts_with("postgres") => {
                let name = format!(
                    "latchkey_test_{}",
                    latchkey::crypto::random_base62(12).to_lowercase()
                );
                let mut admin =
                    diesel::PgConnection::establish(&base).expect("TEST_DATABASE_URL reachable");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create test database");
                let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestDb {
                    url: url.to_string(),
                    admin: Some((base, name)),
                    _dir: None,
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = dir
                    .path()
                    .join("latchkey.db")
                    .to_string_lossy()
                    .into_owned();
                TestDb {
                    url,
                    admin: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.admin.is_some()
    }
}

impl TestDb {
    /// Drops a PostgreSQL test database now, open connections and all (an outage).
    pub fn drop_now(&self) {
        if let Some((base, name)) = &self.admin {
            let mut admin = diesel::PgConnection::establish(base).expect("admin connection");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .expect("drop");
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = &self.admin {
            if let Ok(mut admin) = diesel::PgConnection::establish(base) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }
}

pub fn postgres_available() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"))
}

/// A running server and what a test needs to reach it.
pub struct TestServer {
    pub base: String,
    pub issuer: String,
    pub db: std::sync::Arc<TestDb>,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub state: web::Data<latchkey::app::AppState>,
    handle: ServerHandle,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(&[]).await
    }

    /// Starts with extra settings (`LATCHKEY_ACCESS_TOKEN_TTL`, …) on a fresh database.
    pub async fn start_with(extra: &[(&str, &str)]) -> TestServer {
        TestServer::start_on(std::sync::Arc::new(TestDb::new()), extra).await
    }

    /// Starts another server on an existing test database (same secret).
    pub async fn start_on(db: std::sync::Arc<TestDb>, extra: &[(&str, &str)]) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("LATCHKEY_SECRET".into(), SECRET_B64.into()),
            ("LATCHKEY_ISSUER".into(), base.clone()),
            ("LATCHKEY_BIND".into(), format!("127.0.0.1:{port}")),
        ];
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let config = latchkey::config::Config::from_sources(None, &env)
            .expect("test configuration is valid");
        let issuer = config.issuer.clone();
        let state = web::Data::new(latchkey::app::prepare(config).expect("server prepares"));
        let server = latchkey::app::server(state.clone(), listener).expect("server builds");
        let handle = server.handle();
        actix_rt::spawn(server);
        latchkey::app::spawn_background(state.clone());
        TestServer {
            base,
            issuer,
            db,
            dir: tempfile::tempdir().unwrap(),
            env,
            state,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The text of `GET /metrics`, as a scraper reads it.
    pub async fn metrics(&self) -> String {
        http()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Runs the real `latchkey` binary against this server's database and secret.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_with_env(&self.env, self.dir.path().to_path_buf(), args)
    }

    /// Runs the CLI and parses its JSON, failing the test on a non-zero exit.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "latchkey {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("CLI prints JSON")
    }

    pub fn org(&self, name: &str) -> String {
        self.cli_json(&["org", "create", name])["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A confidential client_credentials client; returns (client_id, client_secret).
    pub fn cc_client(&self, org: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "client",
            "create",
            "--org",
            org,
            "--name",
            "svc",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "read write",
        ];
        args.extend_from_slice(extra);
        let c = self.cli_json(&args);
        (
            c["client_id"].as_str().unwrap().to_string(),
            c["client_secret"].as_str().unwrap_or_default().to_string(),
        )
    }

    pub async fn token(
        &self,
        id: &str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(params);
        http()
            .post(self.url("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    pub async fn access_token(&self, id: &str, secret: &str, params: &[(&str, &str)]) -> String {
        let res = self.token(id, secret, params).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn introspect(&self, id: &str, secret: &str, token: &str) -> Value {
        let res = http()
            .post(self.url("/oauth2/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "introspection answers 200");
        res.json().await.unwrap()
    }
}

impl TestServer {
    /// A person of `org` created with the CLI (`extra`: `--name`, `--email`, `--admin`);
    /// returns the JSON the CLI printed.
    pub fn person(&self, org: &str, username: &str, password: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "user",
            "create",
            "--org",
            org,
            "--username",
            username,
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        let out = cli_with_stdin(
            &self.env,
            self.dir.path().to_path_buf(),
            &args,
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("CLI prints JSON")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stop accepting; the runtime ends with the test.
        actix_rt::spawn(async move { handle.stop(false).await });
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GETs a URL and parses its JSON body as `T`.
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_latchkey"))
}

/// The binary with exactly the given settings (the test process's own `LATCHKEY_*` removed).
pub fn cli_with_env(env: &[(String, String)], dir: PathBuf, args: &[&str]) -> Output {
    cli_with_stdin(env, dir, args, "")
}

/// The same, writing `input` to the command's standard input.
pub fn cli_with_stdin(
    env: &[(String, String)],
    dir: PathBuf,
    args: &[&str],
    input: &str,
) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run latchkey");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("latchkey finishes")
}

/// Decodes a JWT's payload without checking anything (to look at what a test crafted).
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A browser over HTTP: a cookie jar, no redirects followed.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self.http.get(url).send().await.unwrap();
        (
            res.status().as_u16(),
            res.headers().clone(),
            res.text().await.unwrap(),
        )
    }

    pub async fn post(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self.http.post(url).form(form).send().await.unwrap();
        (
            res.status().as_u16(),
            res.headers().clone(),
            res.text().await.unwrap(),
        )
    }

    /// Opens the login page and returns its CSRF token.
    pub async fn login_token(&self, server: &TestServer) -> String {
        let (status, _, html) = self.get(&server.url("/login")).await;
        assert_eq!(status, 200);
        field(&html, "csrf_token")
    }

    pub async fn login(
        &self,
        server: &TestServer,
        username: &str,
        password: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let token = self.login_token(server).await;
        self.post(
            &server.url("/login"),
            &[
                ("csrf_token", &token),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }
}

/// The value of a hidden input.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    unescape(html[start..].split('"').next().unwrap())
}

/// The consent page's answer as its form posts it: every hidden field the page holds, and
/// `decision` (`allow` or `deny`).
pub fn consent_answer(html: &str, decision: &str) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = [
        "csrf_token",
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "state",
        "nonce",
    ]
    .into_iter()
    .filter(|name| html.contains(&format!("name=\"{name}\" value=\"")))
    .map(|name| (name.to_string(), field(html, name)))
    .collect();
    form.push(("decision".into(), decision.into()));
    form
}

/// What a browser makes of an HTML-escaped attribute value.
pub fn unescape(s: &str) -> String {
    s.replace("&#38;", "&")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

// The /v1 API.

/// A `/v1` call: (status, headers, JSON body).
pub async fn v1(
    server: &TestServer,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http().request(method.parse().unwrap(), server.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "raw": text }));
    (status, headers, body)
}

/// Asserts the SPEC §4 error envelope with `code`, its `request_id` equal to `X-Request-Id`.
pub fn assert_error(
    got: &(u16, reqwest::header::HeaderMap, Value),
    status: u16,
    code: &str,
    context: &str,
) {
    let (s, headers, body) = got;
    assert_eq!(*s, status, "{context}: {body}");
    assert_eq!(body["error"], code, "{context}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{context}: {body}"
    );
    let rid = headers["x-request-id"].to_str().unwrap();
    assert!(rid.starts_with("req_"), "{context}");
    assert_eq!(
        body["request_id"], rid,
        "{context}: the envelope names the request"
    );
}

/// A key minted with the CLI: (id, key).
pub fn cli_key(
    server: &TestServer,
    org: &str,
    env: &str,
    scopes: &str,
    extra: &[&str],
) -> (String, String) {
    let mut args = vec![
        "api-key", "create", "--org", org, "--env", env, "--scopes", scopes,
    ];
    args.extend_from_slice(extra);
    let k = server.cli_json(&args);
    (
        k["id"].as_str().unwrap().to_string(),
        k["api_key"].as_str().unwrap().to_string(),
    )
}

pub const ALL: &str = "read,write,delete,admin,keys:manage,clients:manage,users:manage,audit:read";

pub mod node;
