//! Latchkey as a process (`latchkey serve`), for the tests that stop, kill or restart it:
//! its log goes to a file (a pipe nobody reads fills up and stalls a busy server), and the
//! helpers speak plain HTTP over loopback so that they work while the test's runtime is busy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{bin, cli_with_env};

/// A `latchkey serve` process on a free loopback port.
pub struct Node {
    pub child: Child,
    pub base: String,
    pub port: u16,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    /// Starts a node and waits until `/readyz` answers 200.
    pub fn spawn(env: &[(String, String)], dir: &Path) -> Node {
        let node = Node::start(env, dir, free_port());
        node.wait_ready(Duration::from_secs(60));
        node
    }

    /// Starts a node on `port` without waiting for it.
    pub fn start(env: &[(String, String)], dir: &Path, port: u16) -> Node {
        let base = format!("http://127.0.0.1:{port}");
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("latchkey.log");
        let mut cmd = Command::new(bin());
        for (k, _) in std::env::vars() {
            if k.starts_with("LATCHKEY_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LATCHKEY_BIND", format!("127.0.0.1:{port}"))
            .env("LATCHKEY_ISSUER", "http://latchkey.test")
            .current_dir(dir)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn latchkey serve");
        Node {
            child,
            base,
            port,
            log,
            _logdir: logdir,
        }
    }

    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if get_status(&format!("{}/readyz", self.base)).is_ok_and(|s| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "latchkey at {} never became ready; its log:\n{}",
            self.base,
            self.logs()
        );
    }

    /// Everything the node has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // kill(2) itself, not the `kill` program (whose argument parsing once took a process
        // group for "every process").
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "latchkey did not exit in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory of the process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking GET, status code only (`Err` when nothing answers).
pub fn get_status(url: &str) -> std::io::Result<u16> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    buf.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData.into())
}

/// The CLI with `env` in `dir`; its JSON output (panics when it fails).
pub fn cli(env: &[(String, String)], dir: &Path, args: &[&str]) -> Value {
    let out = cli_with_env(env, dir.to_path_buf(), args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A client_credentials client `name` of `org`, created with the CLI: (client_id, client_secret).
pub fn service_client(
    env: &[(String, String)],
    dir: &Path,
    org: &str,
    name: &str,
) -> (String, String) {
    let c = cli(
        env,
        dir,
        &[
            "client",
            "create",
            "--org",
            org,
            "--name",
            name,
            "--grant-types",
            "client_credentials",
        ],
    );
    (
        c["client_id"].as_str().unwrap().to_string(),
        c["client_secret"].as_str().unwrap().to_string(),
    )
}

/// Creates a person with the CLI (the password on standard input).
pub fn person(env: &[(String, String)], dir: &Path, org: &str, username: &str, password: &str) {
    let out = super::cli_with_stdin(
        env,
        dir.to_path_buf(),
        &[
            "user",
            "create",
            "--org",
            org,
            "--username",
            username,
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "user create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path and query of a `Location` (nodes run with the issuer `http://latchkey.test`).
fn on(base: &str, location: &str) -> String {
    let u = url::Url::parse(location)
        .or_else(|_| url::Url::parse("http://x/").unwrap().join(location))
        .unwrap();
    match u.query() {
        Some(q) => format!("{base}{}?{q}", u.path()),
        None => format!("{base}{}", u.path()),
    }
}

/// Signs `username` in on `base` and runs the authorization-code flow with PKCE for the
/// confidential client `client` (redirect URI `redirect`, scope `offline_access read`):
/// the refresh token it is issued.
pub async fn refresh_token_by_code_flow(
    base: &str,
    client: (&str, &str),
    redirect: &str,
    username: &str,
    password: &str,
) -> String {
    use base64::Engine;
    let browser = super::Browser::new();
    let verifier = latchkey::crypto::random_base62(64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", client.0)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "offline_access read")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let (status, headers, _) = browser
        .get(&format!("{base}/oauth2/authorize?{}", q.finish()))
        .await;
    assert_eq!(status, 303);
    let login = on(base, headers["location"].to_str().unwrap());
    let (_, _, html) = browser.get(&login).await;
    let (status, headers, _) = browser
        .post(
            &format!("{base}/login"),
            &[
                ("csrf_token", &super::field(&html, "csrf_token")),
                ("return_to", &super::field(&html, "return_to")),
                ("username", username),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let consent = on(base, headers["location"].to_str().unwrap());
    let (status, headers, html) = browser.get(&consent).await;
    let back = if status == 303 {
        // Consent given before: straight back to the client.
        headers["location"].to_str().unwrap().to_string()
    } else {
        assert_eq!(status, 200, "{html}");
        let form = super::consent_answer(&html, "allow");
        let res = browser
            .http
            .post(format!("{base}/oauth2/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        res.headers()["location"].to_str().unwrap().to_string()
    };
    assert!(back.starts_with(redirect), "{back}");
    let back = url::Url::parse(&back).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("a code")
        .1
        .into_owned();
    let res = super::http()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(client.0, Some(client.1))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    tokens["refresh_token"].as_str().unwrap().to_string()
}
