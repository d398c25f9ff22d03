//! Latchkey as processes: the embedded default from an empty directory, graceful shutdown with
//! a request in flight, and two nodes sharing one database and one instance secret.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::node::*;
use common::*;
use serde_json::{json, Value};

/// An organization `acme` and a client_credentials client in it: (client_id, client_secret).
fn new_client(env: &[(String, String)], dir: &Path) -> (String, String) {
    let org = cli(env, dir, &["org", "create", "acme"]);
    let org = org["id"].as_str().unwrap();
    service_client(env, dir, org, "svc")
}

fn post_form(base: &str, path: &str, basic: (&str, &str), form: &str) -> (u16, Value) {
    let host = base.strip_prefix("http://").unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", basic.0, basic.1),
    );
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    read_response(&mut s)
}

fn read_response(s: &mut TcpStream) -> (u16, Value) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn the_embedded_default_creates_its_database_secret_and_keys_then_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(&[], dir.path());
    let secret_file = dir.path().join("keys/latchkey.secret");
    assert!(secret_file.exists(), "the instance secret is created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert!(
        dir.path().join("data/latchkey.db").exists(),
        "the SQLite database is created"
    );
    let keys = cli(&[], dir.path(), &["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 3, "one key per algorithm");

    let (id, secret) = new_client(&[], dir.path());
    let (id, secret) = (id.as_str(), secret.as_str());

    // A request in flight when SIGTERM arrives: headers and half the body sent first.
    let host = node.base.strip_prefix("http://").unwrap().to_string();
    let body = "grant_type=client_credentials";
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{id}:{secret}"),
    );
    let mut s = TcpStream::connect(&host).unwrap();
    write!(
        s,
        "POST /oauth2/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    node.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(&body.as_bytes()[10..]).unwrap();
    let (status, json) = read_response(&mut s);
    assert_eq!(status, 200, "the in-flight request finishes: {json}");
    assert!(json["access_token"].is_string());
    let exit = node.wait_exit(Duration::from_secs(35));
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
}

#[test]
fn ctrl_c_also_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(&[("LATCHKEY_SECRET".into(), SECRET_B64.into())], dir.path());
    node.signal(libc::SIGINT);
    let exit = node.wait_exit(Duration::from_secs(35));
    assert!(exit.success(), "{exit:?}");
    assert!(
        !dir.path().join("keys/latchkey.secret").exists(),
        "LATCHKEY_SECRET set: no secret file"
    );
}

#[test]
fn two_nodes_on_one_database_behave_as_one_server() {
    // On PostgreSQL when TEST_DATABASE_URL names one; otherwise two processes on one SQLite file.
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("LATCHKEY_SECRET".to_string(), SECRET_B64.to_string()),
    ];
    let a = Node::spawn(&env, dir.path());
    let b = Node::spawn(&env, dir.path());
    let jwks = |n: &Node| -> Value {
        let host = n.base.strip_prefix("http://").unwrap();
        let mut s = TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /jwks.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s).1
    };
    assert_eq!(jwks(&a), jwks(&b), "both nodes publish the same keys");

    let (id, secret) = new_client(&env, dir.path());
    let creds = (id.as_str(), secret.as_str());

    let (status, tok) = post_form(
        &a.base,
        "/oauth2/token",
        creds,
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200);
    let token = tok["access_token"].as_str().unwrap();
    let form = format!("token={token}");
    let (_, intro) = post_form(&b.base, "/oauth2/introspect", creds, &form);
    assert_eq!(intro["active"], true, "a token from A introspects on B");
    assert_eq!(intro["iss"], "http://latchkey.test");

    let (status, _) = post_form(&b.base, "/oauth2/revoke", creds, &form);
    assert_eq!(status, 200);
    let (_, intro) = post_form(&a.base, "/oauth2/introspect", creds, &form);
    assert_eq!(
        intro,
        json!({"active": false}),
        "a revocation on B is seen by A on the next request"
    );

    // A client created after both started is known to both at once.
    let c2 = service_client(&env, dir.path(), "acme", "late");
    let creds2 = (c2.0.as_str(), c2.1.as_str());
    assert_eq!(
        post_form(
            &b.base,
            "/oauth2/token",
            creds2,
            "grant_type=client_credentials"
        )
        .0,
        200
    );
}

#[test]
fn nodes_started_together_on_an_empty_database_take_turns_setting_it_up() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    // No LATCHKEY_SECRET: they also race to create keys/latchkey.secret, and must agree on it.
    let env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    let nodes: Vec<Node> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| Node::spawn(&env, dir.path())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("every node starts"))
            .collect()
    });
    assert_eq!(nodes.len(), 6);
    let keys = cli(&env, dir.path(), &["keys", "list"]);
    assert_eq!(
        keys.as_array().unwrap().len(),
        3,
        "one key per algorithm, not one per node: {keys}"
    );
}

/// A raw request returning status, headers (lower-cased) and body.
fn raw(base: &str, request: &str) -> (u16, String, String) {
    let host = base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    s.write_all(request.replace("{host}", host).as_bytes())
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    // Header names lower-cased, values as sent.
    let headers = head
        .lines()
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}:{v}", k.to_lowercase()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        headers,
        body.to_string(),
    )
}

#[test]
fn json_logs_carry_request_ids_and_never_a_secret_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("LATCHKEY_SECRET".to_string(), SECRET_B64.to_string()),
        ("LATCHKEY_LOG_FORMAT".to_string(), "json".to_string()),
        ("LATCHKEY_LOG".to_string(), "debug".to_string()),
    ];
    let mut node = Node::spawn(&env, dir.path());
    let (id, secret) = new_client(&env, dir.path());
    let (id, secret) = (id.as_str(), secret.as_str());
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{id}:{secret}"),
    );
    let body = "grant_type=client_credentials";
    let (status, head, body) = raw(
        &node.base,
        &format!("POST /oauth2/token HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    );
    assert_eq!(status, 200);
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("X-Request-Id")
        .trim()
        .to_string();
    assert!(request_id.starts_with("req_"));
    let token = serde_json::from_str::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let form = format!("token={token}");
    post_form(&node.base, "/oauth2/revoke", (id, secret), &form);
    post_form(
        &node.base,
        "/oauth2/token",
        (id, "wrong-secret"),
        "grant_type=client_credentials",
    );

    node.signal(libc::SIGTERM);
    assert!(node.wait_exit(Duration::from_secs(35)).success());
    let logs = node.logs();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    assert!(
        logs.lines()
            .any(|l| l.contains(&request_id) && l.contains("/oauth2/token")),
        "the request's log line carries its id"
    );
    assert!(
        !logs.contains(secret),
        "the client secret never reaches the log"
    );
    assert!(
        !logs.contains(&token),
        "the access token never reaches the log"
    );
    assert!(
        !logs.contains(&auth),
        "the Authorization header never reaches the log"
    );
}

#[actix_web::test]
async fn health_and_readiness_and_a_lost_database_answers_503_never_500() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    let health: Value = get_json(&server.url("/healthz")).await;
    assert_eq!(health["status"], "ok");
    let res = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"status": "ready", "database": "ok", "keys": "ok"})
    );

    if !server.db.is_postgres() {
        eprintln!("the database-outage half of this test runs on PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    server.db.drop_now();
    let res = server.token(&id, &secret, &[]).await;
    assert_eq!(res.status(), 503, "a lost database is 503, not 500");
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    let res = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap()["database"],
        "unreachable"
    );
    let res = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the process is still up");
}

/// A `/v1` request with a bearer credential: (status, JSON body).
fn v1_get(base: &str, path: &str, bearer: &str) -> (u16, Value) {
    let (status, _, body) = raw(
        base,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
        ),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn an_api_key_revoked_on_one_node_is_refused_by_the_other_at_once() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("LATCHKEY_SECRET".to_string(), SECRET_B64.to_string()),
    ];
    let a = Node::spawn(&env, dir.path());
    let b = Node::spawn(&env, dir.path());
    cli(&env, dir.path(), &["org", "create", "acme"]);
    let root = cli(
        &env,
        dir.path(),
        &[
            "api-key",
            "create",
            "--org",
            "acme",
            "--env",
            "live",
            "--scopes",
            "read,keys:manage",
        ],
    );
    let root = root["api_key"].as_str().unwrap();
    let victim = cli(
        &env,
        dir.path(),
        &[
            "api-key", "create", "--org", "acme", "--env", "live", "--scopes", "read",
        ],
    );
    let (victim_id, victim) = (
        victim["id"].as_str().unwrap(),
        victim["api_key"].as_str().unwrap(),
    );
    for node in [&a, &b] {
        assert_eq!(v1_get(&node.base, "/v1/utils/authtest", victim).0, 200);
    }
    // Revoked through A's API; B refuses it on the very next request.
    let (status, _, _) = raw(
        &a.base,
        &format!(
            "DELETE /v1/api-keys/{victim_id} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);
    let (status, body) = v1_get(&b.base, "/v1/utils/authtest", victim);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    // A key minted on one node works on the other.
    let (status, listed) = v1_get(&b.base, "/v1/api-keys", root);
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn logs_of_a_whole_api_key_run_hold_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("LATCHKEY_SECRET".to_string(), SECRET_B64.to_string()),
        ("LATCHKEY_LOG".to_string(), "debug".to_string()),
    ];
    let mut node = Node::spawn(&env, dir.path());
    let (cid, csecret) = new_client(&env, dir.path());
    let minted = cli_with_env(
        &env,
        dir.path().to_path_buf(),
        &[
            "api-key",
            "create",
            "--org",
            "acme",
            "--env",
            "live",
            "--scopes",
            "read,keys:manage",
        ],
    );
    assert!(minted.status.success());
    let cli_stderr = String::from_utf8_lossy(&minted.stderr).to_string();
    let root: Value = serde_json::from_slice(&minted.stdout).unwrap();
    let root = root["api_key"].as_str().unwrap().to_string();

    let mut keys = vec![root.clone()];
    // Create, use, rotate, revoke, introspect, and present bad keys.
    let body = r#"{"name":"ci","scopes":["read"]}"#;
    let (status, _, created) = raw(
        &node.base,
        &format!("POST /v1/api-keys HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {root}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    );
    assert_eq!(status, 201);
    let created: Value = serde_json::from_str(&created).unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["api_key"].as_str().unwrap(),
    );
    keys.push(key.to_string());
    assert_eq!(v1_get(&node.base, "/v1/utils/authtest", key).0, 200);
    let (status, _, rotated) = raw(
        &node.base,
        &format!("POST /v1/api-keys/{id}/rotate HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {root}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 201);
    let rotated: Value = serde_json::from_str(&rotated).unwrap();
    keys.push(rotated["api_key"].as_str().unwrap().to_string());
    let (_, intro) = post_form(
        &node.base,
        "/oauth2/introspect",
        (&cid, &csecret),
        &format!("token={key}"),
    );
    assert_eq!(intro["active"], true);
    let mistyped = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(v1_get(&node.base, "/v1/utils/authtest", &mistyped).0, 401);
    let (status, _, _) = raw(
        &node.base,
        &format!("DELETE /v1/api-keys/{id} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    assert_eq!(v1_get(&node.base, "/v1/utils/authtest", key).0, 401);

    node.signal(libc::SIGTERM);
    assert!(node.wait_exit(Duration::from_secs(35)).success());
    let logs = node.logs();
    assert!(
        logs.contains("API key created"),
        "the run was logged: {logs}"
    );
    for k in &keys {
        let secret_part = &k[k.len() - 49..k.len() - 6];
        assert!(!logs.contains(secret_part), "a key reached the server log");
        assert!(
            !cli_stderr.contains(secret_part),
            "a key reached the CLI's stderr"
        );
    }
    assert!(
        !logs.contains(&mistyped[mistyped.len() - 49..]),
        "a presented key reached the log"
    );
}

/// A `/v1` request with a JSON body and extra header lines: (status, headers, JSON body).
fn v1_send(
    base: &str,
    method: &str,
    path: &str,
    bearer: &str,
    body: &str,
    headers: &str,
) -> (u16, String, Value) {
    let (status, head, body) = raw(
        base,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[test]
fn an_idempotency_key_holds_across_nodes() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("LATCHKEY_SECRET".to_string(), SECRET_B64.to_string()),
    ];
    let a = Node::spawn(&env, dir.path());
    let b = Node::spawn(&env, dir.path());
    cli(&env, dir.path(), &["org", "create", "acme"]);
    let root = cli(
        &env,
        dir.path(),
        &[
            "api-key",
            "create",
            "--org",
            "acme",
            "--env",
            "live",
            "--scopes",
            "clients:manage",
        ],
    );
    let root = root["api_key"].as_str().unwrap();
    let body = r#"{"client_name":"billing","grant_types":["client_credentials"]}"#;
    let idem = "Idempotency-Key: 7f9c2ba4-e88f-11ed-a05b-0242ac120003\r\n";
    let first = v1_send(&a.base, "POST", "/v1/clients", root, body, idem);
    assert_eq!(first.0, 201, "{}", first.2);
    let again = v1_send(&b.base, "POST", "/v1/clients", root, body, idem);
    assert_eq!(again.0, 201);
    assert!(again.1.contains("idempotent-replayed: true"), "{}", again.1);
    assert_eq!(
        again.2, first.2,
        "node B replays node A's response, secret included"
    );
    let other = v1_send(
        &b.base,
        "POST",
        "/v1/clients",
        root,
        r#"{"client_name":"x","grant_types":["client_credentials"]}"#,
        idem,
    );
    assert_eq!(other.0, 409);
    let (_, listed) = v1_get(&a.base, "/v1/clients", root);
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "one client made"
    );
}

#[test]
fn logs_and_the_audit_log_of_a_whole_management_run_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("LATCHKEY_SECRET".to_string(), SECRET_B64.to_string()),
        ("LATCHKEY_LOG".to_string(), "debug".to_string()),
    ];
    let mut node = Node::spawn(&env, dir.path());
    cli(&env, dir.path(), &["org", "create", "acme"]);
    let root = cli(
        &env,
        dir.path(),
        &[
            "api-key",
            "create",
            "--org",
            "acme",
            "--env",
            "live",
            "--scopes",
            "read,write,delete,admin,keys:manage,clients:manage,users:manage,audit:read",
        ],
    );
    let root = root["api_key"].as_str().unwrap().to_string();
    let mut secrets = vec![root.clone()];
    let idem = "Idempotency-Key: run-1\r\n";
    let body = r#"{"client_name":"billing","grant_types":["client_credentials"],"scope":"read"}"#;
    let (status, _, client) = v1_send(&node.base, "POST", "/v1/clients", &root, body, idem);
    assert_eq!(status, 201);
    let replay = v1_send(&node.base, "POST", "/v1/clients", &root, body, idem);
    assert_eq!(replay.2, client);
    let cid = client["client_id"].as_str().unwrap().to_string();
    secrets.push(client["client_secret"].as_str().unwrap().to_string());
    let (status, _, rotated) = v1_send(
        &node.base,
        "POST",
        &format!("/v1/clients/{cid}/secret"),
        &root,
        r#"{"grace_period_seconds":60}"#,
        "",
    );
    assert_eq!(status, 200);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    secrets.push(new_secret.clone());
    let (status, _) = post_form(
        &node.base,
        "/oauth2/token",
        (&cid, &new_secret),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200);
    let (status, _) = post_form(
        &node.base,
        "/oauth2/token",
        (&cid, "guessed-secret-xyz"),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 401);
    let password = "correct horse battery staple";
    secrets.push(password.to_string());
    let (status, _, person) = v1_send(
        &node.base,
        "POST",
        "/v1/users",
        &root,
        &format!(r#"{{"username":"zoe","password":"{password}"}}"#),
        "Idempotency-Key: run-2\r\n",
    );
    assert_eq!(status, 201, "{person}");
    let (status, _, key) = v1_send(
        &node.base,
        "POST",
        "/v1/api-keys",
        &root,
        r#"{"name":"k","scopes":["read"]}"#,
        "",
    );
    assert_eq!(status, 201);
    secrets.push(key["api_key"].as_str().unwrap().to_string());

    // The audit log, as the API shows it (the refusal is written off the request path).
    std::thread::sleep(Duration::from_millis(300));
    let (status, audit) = v1_get(&node.base, "/v1/audit-events?limit=100", &root);
    assert_eq!(status, 200);
    let audit = audit.to_string();
    for action in [
        "client.created",
        "client.secret_rotated",
        "user.created",
        "api_key.created",
        "credential.refused",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }

    node.signal(libc::SIGTERM);
    assert!(node.wait_exit(Duration::from_secs(35)).success());
    let logs = node.logs();
    assert!(
        logs.contains("client created"),
        "the run was logged: {logs}"
    );
    for s in secrets
        .iter()
        .map(String::as_str)
        .chain(["guessed-secret-xyz"])
    {
        assert!(!logs.contains(s), "a secret reached the server log");
        assert!(!audit.contains(s), "a secret reached the audit log");
    }
    // The replayable responses are sealed: the database file holds none of the secrets.
    let mut db = std::fs::read(dir.path().join("data/latchkey.db")).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("data/latchkey.db-wal")) {
        db.extend_from_slice(&wal);
    }
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("zoe"), "the database file holds the run");
    for s in &secrets {
        assert!(!db.contains(s.as_str()), "a secret is stored in the clear");
    }
}
