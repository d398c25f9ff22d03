//! Running an organization over `/v1` (SPEC §4): clients, people, the organization, the audit
//! log and Idempotency-Key, on real HTTP, tried from the attacker's side.

mod common;

use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

/// Whether client_credentials with (id, secret) gets a token.
async fn authenticates(server: &TestServer, id: &str, secret: &str) -> bool {
    server.token(id, secret, &[]).await.status() == 200
}

async fn events(server: &TestServer, key: &str) -> Vec<Value> {
    let (s, _, body) = v1(server, "GET", "/v1/audit-events?limit=100", Some(key), None).await;
    assert_eq!(s, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[actix_rt::test]
async fn clients_are_registered_updated_rotated_and_deleted_over_v1() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (_, admin) = cli_key(&server, &org, "live", ALL, &[]);

    // Create: the secret is shown once.
    let created = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&admin),
        Some(json!({
            "client_name": "billing",
            "grant_types": ["client_credentials"],
            "scope": "read write",
        })),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let id = created.2["client_id"].as_str().unwrap().to_string();
    let secret = created.2["client_secret"].as_str().unwrap().to_string();
    assert_eq!(created.2["object"], "client");
    assert_eq!(created.2["org_id"], org);
    assert!(authenticates(&server, &id, &secret).await);

    // Read and list never show it again.
    let got = v1(
        &server,
        "GET",
        &format!("/v1/clients/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(got.0, 200);
    assert!(got.2.get("client_secret").is_none(), "{}", got.2);
    assert_eq!(got.2["client_name"], "billing");
    for n in 0..3 {
        let c = v1(
            &server,
            "POST",
            "/v1/clients",
            Some(&admin),
            Some(json!({"client_name": format!("app {n}"), "grant_types": ["client_credentials"]})),
        )
        .await;
        assert_eq!(c.0, 201);
    }
    let page = v1(&server, "GET", "/v1/clients?limit=2", Some(&admin), None).await;
    assert_eq!(page.0, 200);
    assert_eq!(page.2["has_more"], true);
    let names: Vec<&str> = page.2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing", "app 0"], "creation order");
    assert!(!page.2.to_string().contains(&secret));
    let last = page.2["data"][1]["client_id"].as_str().unwrap();
    let rest = v1(
        &server,
        "GET",
        &format!("/v1/clients?starting_after={last}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(rest.2["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest.2["has_more"], false);

    // Update: only what is named changes; the rules of registration hold.
    let patched = v1(
        &server,
        "PATCH",
        &format!("/v1/clients/{id}"),
        Some(&admin),
        Some(json!({"client_name": "billing v2", "scope": "read"})),
    )
    .await;
    assert_eq!(patched.0, 200, "{}", patched.2);
    assert_eq!(patched.2["client_name"], "billing v2");
    assert_eq!(patched.2["scope"], "read");
    assert_eq!(patched.2["grant_types"], json!(["client_credentials"]));
    assert!(
        authenticates(&server, &id, &secret).await,
        "the secret is unchanged"
    );
    // A PATCH that changes nothing (empty, or naming the current values) writes nothing: the
    // client is answered as it is, and the audit log does not say it was updated.
    let updates = |log: &[Value]| {
        log.iter()
            .filter(|e| e["action"] == "client.updated")
            .count()
    };
    let before = updates(&events(&server, &admin).await);
    for body in [
        json!({}),
        json!({"client_name": "billing v2", "scope": "read"}),
    ] {
        let same = v1(
            &server,
            "PATCH",
            &format!("/v1/clients/{id}"),
            Some(&admin),
            Some(body),
        )
        .await;
        assert_eq!(same.0, 200, "{}", same.2);
        assert_eq!(same.2["updated_at"], patched.2["updated_at"]);
        assert_eq!(same.2["client_name"], "billing v2");
    }
    assert_eq!(updates(&events(&server, &admin).await), before);
    let bad = v1(
        &server,
        "PATCH",
        &format!("/v1/clients/{id}"),
        Some(&admin),
        Some(json!({"grant_types": ["authorization_code"]})),
    )
    .await;
    assert_error(
        &bad,
        400,
        "invalid_request",
        "a code client without redirect URI",
    );
    assert_eq!(bad.2["field"], "redirect_uris");
    let bad = v1(
        &server,
        "PATCH",
        &format!("/v1/clients/{id}"),
        Some(&admin),
        Some(json!({"redirect_uris": ["http://evil.example/cb"]})),
    )
    .await;
    assert_error(&bad, 400, "invalid_request", "http redirect off loopback");
    let bad = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&admin),
        Some(json!({"client_name": "x", "grant_types": ["client_credentials"], "secret": "mine"})),
    )
    .await;
    assert_error(&bad, 400, "invalid_request", "unknown field");
    assert_eq!(bad.2["field"], "secret");
    let bad = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&admin),
        Some(json!({"client_name": "x"})),
    )
    .await;
    assert_eq!(bad.2["field"], "grant_types");

    // Rotation with a grace period: both secrets work, then only the new one.
    let rotated = v1(
        &server,
        "POST",
        &format!("/v1/clients/{id}/secret"),
        Some(&admin),
        Some(json!({"grace_period_seconds": 3600})),
    )
    .await;
    assert_eq!(rotated.0, 200, "{}", rotated.2);
    let second = rotated.2["client_secret"].as_str().unwrap().to_string();
    assert_ne!(second, secret);
    assert!(rotated.2["previous_secret_expires_at"].is_string());
    assert!(authenticates(&server, &id, &second).await);
    assert!(
        authenticates(&server, &id, &secret).await,
        "old secret in its grace period"
    );
    let rotated = v1(
        &server,
        "POST",
        &format!("/v1/clients/{id}/secret"),
        Some(&admin),
        Some(json!({"grace_period_seconds": 0})),
    )
    .await;
    let third = rotated.2["client_secret"].as_str().unwrap().to_string();
    assert!(rotated.2["previous_secret_expires_at"].is_null());
    assert!(authenticates(&server, &id, &third).await);
    assert!(
        !authenticates(&server, &id, &second).await,
        "no grace: refused at once"
    );
    assert!(!authenticates(&server, &id, &secret).await);
    let bad = v1(
        &server,
        "POST",
        &format!("/v1/clients/{id}/secret"),
        Some(&admin),
        Some(json!({"grace_period_seconds": -1})),
    )
    .await;
    assert_eq!(bad.2["field"], "grace_period_seconds");

    // A public client has no secret to rotate.
    let public = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&admin),
        Some(json!({
            "client_name": "spa", "grant_types": ["authorization_code"], "public": true,
            "redirect_uris": ["http://127.0.0.1:5000/cb"],
        })),
    )
    .await;
    assert_eq!(public.0, 201, "{}", public.2);
    assert!(public.2.get("client_secret").is_none());
    let pid = public.2["client_id"].as_str().unwrap();
    let none = v1(
        &server,
        "POST",
        &format!("/v1/clients/{pid}/secret"),
        Some(&admin),
        None,
    )
    .await;
    assert_error(&none, 409, "conflict", "public client secret rotation");

    // Delete: gone for the API and for the token endpoint.
    let deleted = v1(
        &server,
        "DELETE",
        &format!("/v1/clients/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(deleted.0, 200);
    assert_eq!(deleted.2["deleted"], true);
    assert!(!authenticates(&server, &id, &third).await);
    let again = v1(
        &server,
        "GET",
        &format!("/v1/clients/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_error(&again, 404, "not_found", "deleted client");

    // Each change is in the audit log, without a secret.
    let log = events(&server, &admin).await;
    let acts = actions(&log);
    for a in [
        "client.created",
        "client.updated",
        "client.secret_rotated",
        "client.deleted",
    ] {
        assert!(acts.iter().any(|x| x == a), "{a} in {acts:?}");
    }
    let text = serde_json::to_string(&log).unwrap();
    for s in [&secret, &second, &third, &admin] {
        assert!(!text.contains(s.as_str()), "no secret in the audit log");
    }
    let created_event = log
        .iter()
        .find(|e| e["action"] == "client.created")
        .unwrap();
    assert_eq!(created_event["target"], id);
    assert_eq!(created_event["outcome"], "success");
    assert_eq!(created_event["ip"], "127.0.0.1");
    assert_eq!(
        created_event["org_id"], org,
        "the event names its organization"
    );
    assert!(created_event["actor"].as_str().unwrap().starts_with("key_"));
    assert!(created_event["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
}

#[actix_rt::test]
async fn another_organization_escalation_and_sandbox_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let org_a = server.org("a");
    let org_b = server.org("b");
    let (client_a, secret_a) = server.cc_client(&org_a, &[]);
    let (_, admin_a) = cli_key(&server, &org_a, "live", ALL, &[]);
    let (_, admin_b) = cli_key(&server, &org_b, "live", ALL, &[]);
    let alice = server.person(&org_a, "alice", "correct horse battery", &[]);
    let alice_id = alice["id"].as_str().unwrap();

    // B names A's objects: 404 everywhere, and nothing changes.
    for (method, path, body) in [
        ("GET", format!("/v1/clients/{client_a}"), None),
        (
            "PATCH",
            format!("/v1/clients/{client_a}"),
            Some(json!({"client_name": "pwned"})),
        ),
        ("POST", format!("/v1/clients/{client_a}/secret"), None),
        ("DELETE", format!("/v1/clients/{client_a}"), None),
        ("GET", format!("/v1/users/{alice_id}"), None),
        ("DELETE", format!("/v1/users/{alice_id}"), None),
    ] {
        let got = v1(&server, method, &path, Some(&admin_b), body).await;
        assert_error(&got, 404, "not_found", &format!("{method} {path}"));
    }
    assert!(authenticates(&server, &client_a, &secret_a).await);
    let a_view = v1(
        &server,
        "GET",
        &format!("/v1/clients/{client_a}"),
        Some(&admin_a),
        None,
    )
    .await;
    assert_eq!(a_view.2["client_name"], "svc");
    let people = v1(&server, "GET", "/v1/users", Some(&admin_a), None).await;
    assert_eq!(people.2["data"].as_array().unwrap().len(), 1, "alice");
    let b_people = v1(&server, "GET", "/v1/users", Some(&admin_b), None).await;
    assert_eq!(
        b_people.2["data"],
        json!([]),
        "lists stay in their organization"
    );
    let b_clients = v1(&server, "GET", "/v1/clients", Some(&admin_b), None).await;
    assert_eq!(b_clients.2["data"], json!([]));
    let b_after = v1(
        &server,
        "GET",
        &format!("/v1/clients?starting_after={client_a}"),
        Some(&admin_b),
        None,
    )
    .await;
    assert_error(&b_after, 400, "invalid_request", "another org's cursor");

    // Escalation: a key that manages clients but holds no keys:manage cannot make a client
    // carrying it, change one that does, or reveal its secret.
    let (_, clients_only) = cli_key(&server, &org_a, "live", "clients:manage,read", &[]);
    let made = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&clients_only),
        Some(json!({"client_name": "x", "grant_types": ["client_credentials"], "scope": "read keys:manage"})),
    )
    .await;
    assert_error(
        &made,
        403,
        "scope_grant_forbidden",
        "client carrying keys:manage",
    );
    let powerful = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&admin_a),
        Some(json!({"client_name": "ops", "grant_types": ["client_credentials"], "scope": "keys:manage"})),
    )
    .await;
    let pid = powerful.2["client_id"].as_str().unwrap();
    let psecret = powerful.2["client_secret"].as_str().unwrap();
    for (method, path, body) in [
        (
            "PATCH",
            format!("/v1/clients/{pid}"),
            Some(json!({"client_name": "mine now"})),
        ),
        (
            "POST",
            format!("/v1/clients/{pid}/secret"),
            Some(json!({"grace_period_seconds": 0})),
        ),
    ] {
        let got = v1(&server, method, &path, Some(&clients_only), body).await;
        assert_error(
            &got,
            403,
            "scope_grant_forbidden",
            &format!("{method} {path}"),
        );
    }
    let up = v1(
        &server,
        "PATCH",
        &format!("/v1/clients/{client_a}"),
        Some(&clients_only),
        Some(json!({"scope": "read users:manage"})),
    )
    .await;
    assert_error(
        &up,
        403,
        "scope_grant_forbidden",
        "raising a client's scopes",
    );
    assert!(
        authenticates(&server, pid, psecret).await,
        "the secret did not rotate"
    );

    // People: only a credential holding every scope makes an admin.
    let (_, users_only) = cli_key(&server, &org_a, "live", "users:manage", &[]);
    let admin_person = v1(
        &server,
        "POST",
        "/v1/users",
        Some(&users_only),
        Some(json!({"username": "mallory", "password": "correct horse battery", "admin": true})),
    )
    .await;
    assert_error(&admin_person, 403, "scope_grant_forbidden", "admin person");
    // Whoever sets a password can act as that person: users:manage alone cannot make one who
    // may hold read, write and delete.
    let plain = v1(
        &server,
        "POST",
        "/v1/users",
        Some(&users_only),
        Some(json!({"username": "bob", "password": "correct horse battery"})),
    )
    .await;
    assert_error(
        &plain,
        403,
        "scope_grant_forbidden",
        "person beyond the caller",
    );
    let (_, people_admin) = cli_key(
        &server,
        &org_a,
        "live",
        "read,write,delete,users:manage",
        &[],
    );
    let plain = v1(
        &server,
        "POST",
        "/v1/users",
        Some(&people_admin),
        Some(json!({"username": "bob", "password": "correct horse battery"})),
    )
    .await;
    assert_eq!(plain.0, 201, "{}", plain.2);
    // Nor can it remove the organization's admins.
    let boss = server.person(&org_a, "boss", "correct horse battery", &["--admin"]);
    let boss_id = boss["id"].as_str().unwrap();
    let removed = v1(
        &server,
        "DELETE",
        &format!("/v1/users/{boss_id}"),
        Some(&people_admin),
        None,
    )
    .await;
    assert_error(&removed, 403, "scope_grant_forbidden", "deleting an admin");
    let still = v1(
        &server,
        "GET",
        &format!("/v1/users/{boss_id}"),
        Some(&admin_a),
        None,
    )
    .await;
    assert_eq!(still.0, 200);

    // Missing scope, sandbox credentials.
    let (_, reader) = cli_key(&server, &org_a, "live", "read", &[]);
    for (method, path, scope) in [
        ("GET", "/v1/clients", "clients:manage"),
        ("GET", "/v1/users", "users:manage"),
        ("GET", "/v1/audit-events", "audit:read"),
    ] {
        let got = v1(&server, method, path, Some(&reader), None).await;
        assert_error(&got, 403, "insufficient_scope", path);
        assert!(got.2["message"].as_str().unwrap().contains(scope));
    }
    let (_, sandbox) = cli_key(&server, &org_a, "sandbox", ALL, &[]);
    for (method, path) in [
        ("GET", "/v1/clients"),
        ("POST", "/v1/clients"),
        ("GET", "/v1/users"),
        ("POST", "/v1/users"),
        ("GET", "/v1/organization"),
        ("PATCH", "/v1/organization"),
        ("GET", "/v1/audit-events"),
    ] {
        let got = v1(&server, method, path, Some(&sandbox), Some(json!({}))).await;
        assert_error(
            &got,
            403,
            "environment_forbidden",
            &format!("sandbox {method} {path}"),
        );
    }
}

#[actix_rt::test]
async fn people_are_created_listed_and_deleted_over_v1() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (_, admin) = cli_key(&server, &org, "live", ALL, &[]);
    let created = v1(
        &server,
        "POST",
        "/v1/users",
        Some(&admin),
        Some(json!({
            "username": "Carol", "password": "a long enough passphrase",
            "email": "carol@example.com", "name": "Carol C", "admin": true,
        })),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let id = created.2["id"].as_str().unwrap().to_string();
    assert_eq!(created.2["object"], "user");
    assert_eq!(created.2["admin"], true);
    let text = created.2.to_string();
    assert!(
        !text.contains("passphrase") && !text.contains("argon2"),
        "{text}"
    );

    // The person can sign in with that password.
    let browser = Browser::new();
    let (status, _, _) = browser
        .login(&server, "carol", "a long enough passphrase")
        .await;
    assert_eq!(status, 303, "signed in");

    for (body, field, status) in [
        (
            json!({"username": "carol", "password": "another passphrase"}),
            None,
            409,
        ),
        (
            json!({"username": "dave", "password": "short"}),
            Some("password"),
            400,
        ),
        (
            json!({"username": "", "password": "a long enough passphrase"}),
            Some("username"),
            400,
        ),
        (
            json!({"username": "dave", "password": "a long enough passphrase", "email": "nope"}),
            Some("email"),
            400,
        ),
        (json!({"username": "dave"}), Some("password"), 400),
        (
            json!({"username": "dave", "password": "a long enough passphrase", "role": "root"}),
            Some("role"),
            400,
        ),
    ] {
        let got = v1(
            &server,
            "POST",
            "/v1/users",
            Some(&admin),
            Some(body.clone()),
        )
        .await;
        assert_eq!(got.0, status, "{body}: {}", got.2);
        if let Some(f) = field {
            assert_eq!(got.2["field"], f, "{body}: {}", got.2);
        }
        assert!(
            !got.2.to_string().contains("passphrase"),
            "the password is never echoed"
        );
    }

    let list = v1(&server, "GET", "/v1/users", Some(&admin), None).await;
    assert_eq!(list.2["data"].as_array().unwrap().len(), 1);
    let got = v1(
        &server,
        "GET",
        &format!("/v1/users/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(got.2["username"], "Carol");

    let deleted = v1(
        &server,
        "DELETE",
        &format!("/v1/users/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(deleted.0, 200);
    // The browser session ended with the person.
    let (status, headers, _) = browser.get(&server.url("/")).await;
    assert!(
        status == 303 || headers.get("location").is_some() || status == 200,
        "home answers"
    );
    let (status, _, _) = browser
        .login(&server, "carol", "a long enough passphrase")
        .await;
    assert_ne!(status, 303, "a deleted person cannot sign in");
    let again = v1(
        &server,
        "DELETE",
        &format!("/v1/users/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_error(&again, 404, "not_found", "deleted twice");

    let acts = actions(&events(&server, &admin).await);
    for a in ["user.created", "login.succeeded", "user.deleted"] {
        assert!(acts.iter().any(|x| x == a), "{a} in {acts:?}");
    }
}

#[actix_rt::test]
async fn the_audit_log_records_logins_and_refused_credentials_but_no_secret_or_stranger() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (_, admin) = cli_key(&server, &org, "live", ALL, &[]);
    server.person(&org, "erin", "correct horse battery", &[]);
    let browser = Browser::new();
    let (s, _, _) = browser.login(&server, "erin", "wrong password typed").await;
    assert_eq!(s, 401);
    // A username that matches no one is never written down (people type passwords there).
    let (s, _, _) = browser
        .login(&server, "hunter2-my-password", "whatever it is")
        .await;
    assert_eq!(s, 401);
    let (s, _, _) = browser
        .login(&server, "erin", "correct horse battery")
        .await;
    assert_eq!(s, 303);

    // An organization change.
    let org_change = v1(
        &server,
        "PATCH",
        "/v1/organization",
        Some(&admin),
        Some(json!({"allowed_ips": ["127.0.0.0/8"]})),
    )
    .await;
    assert_eq!(org_change.0, 200, "{}", org_change.2);

    // A revoked key, used again and again: one record a minute.
    let (victim_id, victim) = cli_key(&server, &org, "live", "read", &[]);
    let del = v1(
        &server,
        "DELETE",
        &format!("/v1/api-keys/{victim_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(del.0, 200);
    for _ in 0..5 {
        let got = v1(&server, "GET", "/v1/utils/authtest", Some(&victim), None).await;
        assert_eq!(got.0, 401);
    }
    // A wrong secret for a real client, twice; garbage for no client.
    let (client, secret) = server.cc_client(&org, &[]);
    for _ in 0..2 {
        assert!(!authenticates(&server, &client, "not-the-secret").await);
    }
    assert!(!authenticates(&server, "no-such-client", "x").await);
    assert!(authenticates(&server, &client, &secret).await);

    // The refusals are written off the request path: give them a moment.
    let mut log = Vec::new();
    for _ in 0..50 {
        log = events(&server, &admin).await;
        let refusals = log
            .iter()
            .filter(|e| e["action"] == "credential.refused")
            .count();
        if refusals >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refused: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "credential.refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    let key_refusal = refused.iter().find(|e| e["target"] == victim_id).unwrap();
    assert_eq!(key_refusal["reason"], "revoked");
    assert_eq!(key_refusal["outcome"], "failure");
    let client_refusal = refused
        .iter()
        .find(|e| e["target"] == format!("client:{client}"))
        .unwrap();
    assert_eq!(client_refusal["reason"], "invalid_client");

    let failed: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "login.failed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "only the real person's failure: {failed:?}"
    );
    assert_eq!(failed[0]["reason"], "wrong_password");
    assert!(log.iter().any(|e| e["action"] == "login.succeeded"));
    assert!(log.iter().any(|e| e["action"] == "api_key.revoked"));
    let org_event = log
        .iter()
        .find(|e| e["action"] == "organization.updated")
        .unwrap();
    assert_eq!(org_event["detail"]["allowed_ips"], json!(["127.0.0.0/8"]));

    let text = serde_json::to_string(&log).unwrap();
    for s in [
        "hunter2",
        "wrong password typed",
        "correct horse",
        "not-the-secret",
        &secret,
        &victim,
        &admin,
    ] {
        assert!(!text.contains(s), "{s:?} must not be in the audit log");
    }

    // Pagination in order, bounded.
    let first = v1(
        &server,
        "GET",
        "/v1/audit-events?limit=2",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(first.2["has_more"], true);
    let after = first.2["data"][1]["id"].as_str().unwrap();
    let next = v1(
        &server,
        "GET",
        &format!("/v1/audit-events?limit=1&starting_after={after}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(next.2["data"][0]["id"], log[2]["id"]);
}

#[actix_rt::test]
async fn idempotency_keys_replay_conflict_and_let_one_of_many_duplicates_run() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (_, admin) = cli_key(&server, &org, "live", ALL, &[]);
    let (_, other) = cli_key(&server, &org, "live", ALL, &[]);

    let post = |key: String, idem: &'static str, path: &'static str, body: Value| {
        let url = server.url(path);
        async move {
            let res = http()
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", idem)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let replayed = res.headers().get("idempotent-replayed").is_some();
            let body: Value = res.json().await.unwrap();
            (status, replayed, body)
        }
    };
    let body = json!({"name": "ci", "scopes": ["read"]});
    let first = post(admin.clone(), "k-1", "/v1/api-keys", body.clone()).await;
    assert_eq!(first.0, 201);
    assert!(!first.1);
    let again = post(admin.clone(), "k-1", "/v1/api-keys", body.clone()).await;
    assert_eq!(again.0, 201);
    assert!(again.1, "marked as a replay");
    assert_eq!(
        again.2, first.2,
        "the first response again, shown-once key included"
    );
    // The request ran in a task of its own, and still names itself in the audit log.
    let events = v1(
        &server,
        "GET",
        "/v1/audit-events?limit=100",
        Some(&admin),
        None,
    )
    .await;
    let created = events.2["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "api_key.created" && e["target"] == first.2["id"])
        .cloned()
        .unwrap_or_else(|| panic!("{}", events.2));
    assert!(
        created["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{created}"
    );

    // The stored response is sealed: the database does not hold the key.
    let mut conn = server.state.store.conn().unwrap();
    use latchkey::store::schema::idempotency_keys::dsl as i;
    let stored: Vec<Option<String>> = i::idempotency_keys
        .select(i::response)
        .load(&mut conn)
        .unwrap();
    assert_eq!(stored.len(), 1);
    let secret = first.2["api_key"].as_str().unwrap();
    assert!(!stored[0].as_deref().unwrap().contains(secret));
    assert!(!stored[0].as_deref().unwrap().contains("\"ci\""));

    // Same key, another body or path: conflict. Another credential: its own key space.
    let other_body = post(
        admin.clone(),
        "k-1",
        "/v1/api-keys",
        json!({"name": "cd", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(
        (other_body.0, other_body.2["error"].clone()),
        (409, json!("conflict"))
    );
    let other_path = post(
        admin.clone(),
        "k-1",
        "/v1/users",
        json!({"name": "ci", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(other_path.0, 409);
    let theirs = post(other.clone(), "k-1", "/v1/api-keys", body.clone()).await;
    assert_eq!(theirs.0, 201);
    assert!(!theirs.1);
    assert_ne!(theirs.2["id"], first.2["id"]);

    // A refused request is replayed as refused (nothing ran twice).
    let bad = post(
        admin.clone(),
        "k-bad",
        "/v1/api-keys",
        json!({"name": "", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(bad.0, 400);
    let bad_again = post(
        admin.clone(),
        "k-bad",
        "/v1/api-keys",
        json!({"name": "", "scopes": ["read"]}),
    )
    .await;
    assert_eq!((bad_again.0, bad_again.1), (400, true));

    // Concurrent duplicates: one effect.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            actix_rt::spawn(post(
                admin.clone(),
                "k-race",
                "/v1/clients",
                json!({"client_name": "raced", "grant_types": ["client_credentials"]}),
            ))
        })
        .collect();
    let mut results = Vec::new();
    for r in racers {
        results.push(r.await.unwrap());
    }
    let created: Vec<&Value> = results
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.2)
        .collect();
    assert!(!created.is_empty());
    assert!(
        created
            .iter()
            .all(|c| c["client_id"] == created[0]["client_id"]),
        "one client"
    );
    assert!(
        results.iter().all(|r| r.0 == 201 || r.0 == 409),
        "{results:?}"
    );
    let clients = v1(&server, "GET", "/v1/clients?limit=100", Some(&admin), None).await;
    let raced = clients.2["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["client_name"] == "raced")
        .count();
    assert_eq!(raced, 1, "one client created by eight duplicates");

    // After 24 hours the key is free again (and the sealed response gone).
    diesel::update(i::idempotency_keys)
        .set(i::expires_at.eq(0))
        .execute(&mut conn)
        .unwrap();
    let later = post(admin.clone(), "k-1", "/v1/api-keys", body.clone()).await;
    assert_eq!(later.0, 201);
    assert!(!later.1);
    assert_ne!(later.2["id"], first.2["id"], "a new request after expiry");

    // Malformed keys and credentials are refused before anything is stored.
    let long: &'static str = Box::leak("x".repeat(300).into_boxed_str());
    let bad = post(admin.clone(), long, "/v1/api-keys", body.clone()).await;
    assert_eq!(bad.0, 400);
    assert_eq!(bad.2["field"], "Idempotency-Key");
    let unauth = post("sk_live_nope".into(), "k-2", "/v1/api-keys", body.clone()).await;
    assert_eq!(unauth.0, 401);
}

#[actix_rt::test]
async fn a_change_from_a_stale_read_is_refused_instead_of_undoing_another() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, _) = server.cc_client(&org, &[]);
    let store = &server.state.store;
    let (o, i) = (org.clone(), id.clone());
    let read = store
        .run(move |c| latchkey::store::clients::get_in_org(c, &o, &i))
        .await
        .unwrap()
        .unwrap();
    let ctx = latchkey::audit::Context::cli(&org);
    let event = |n: &str| ctx.event("client.updated", Some(&id), json!({ "n": n }));
    let (mut first, mut second) = (read.clone(), read);
    first.name = "first".into();
    second.name = "second".into();
    let e1 = event("1");
    store
        .run(move |c| latchkey::store::clients::update(c, &first, &e1))
        .await
        .unwrap();
    let e2 = event("2");
    let stale = store
        .run(move |c| latchkey::store::clients::update(c, &second, &e2))
        .await;
    assert!(
        matches!(stale, Err(latchkey::store::StoreError::Conflict(_))),
        "{stale:?}"
    );
    let (o, i) = (org.clone(), id.clone());
    let now = store
        .run(move |c| latchkey::store::clients::get_in_org(c, &o, &i))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.name, "first", "the stale write changed nothing");
}

#[actix_rt::test]
async fn registrations_take_one_uri_per_entry_and_names_that_read_as_they_are() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (_, admin) = cli_key(&server, &org, "live", ALL, &[]);
    let register = |body: Value| {
        let server = &server;
        let admin = admin.clone();
        async move { v1(server, "POST", "/v1/clients", Some(&admin), Some(body)).await }
    };
    let code_client = |field: &str, value: Value| {
        let mut body = json!({
            "client_name": "notes",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example/cb"],
        });
        body[field] = value;
        body
    };
    // Each list entry is one URI: a space (or any character a URI cannot hold) used to be
    // stored as is and read back as two entries, the second never checked, so authorize
    // redirected to plain http or javascript:.
    for (field, entry) in [
        (
            "redirect_uris",
            "https://app.example/x http://evil.example/cb",
        ),
        ("redirect_uris", "https://app.example/x javascript:alert(1)"),
        (
            "redirect_uris",
            "https://app.example/x\thttp://evil.example/cb",
        ),
        ("redirect_uris", "https://app.example/cb\""),
        ("redirect_uris", "https://*.example.com/cb"),
        ("redirect_uris", "https://app.example/*"),
        ("redirect_uris", "https://user:pw@app.example/cb"),
        (
            "post_logout_redirect_uris",
            "https://app.example/ http://evil.example/bye",
        ),
        ("audiences", "https://api.example https://evil.example"),
        ("jwks_uri", "https://keys.example/jwks https://evil.example"),
    ] {
        let body = if field == "jwks_uri" {
            json!({
                "client_name": "signer",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": entry,
            })
        } else {
            code_client(field, json!([entry]))
        };
        let got = register(body).await;
        assert_error(&got, 400, "invalid_request", entry);
        assert_eq!(got.2["field"], field, "{entry}: {}", got.2);
    }
    let listed = v1(&server, "GET", "/v1/clients", Some(&admin), None).await;
    assert_eq!(listed.2["data"], json!([]), "nothing was registered");
    // The CLI shares the rules.
    let out = server.cli(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "notes",
        "--grant-types",
        "authorization_code",
        "--redirect-uri",
        "https://a.example/x http://evil.example/cb",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("redirect-uri"));
    // A percent-encoded space is a URI character like any other.
    let ok = register(code_client(
        "redirect_uris",
        json!(["https://app.example/cb?next=a%20b"]),
    ))
    .await;
    assert_eq!(ok.0, 201, "{}", ok.2);

    // Names shown to people (the consent page, the dashboard) hold no control characters and
    // no bidirectional overrides that would make them read as another name.
    // Nor invisible characters: "de\u{200B}ploy" would read as "deploy".
    for name in [
        "a\u{0}b",
        "x\u{1b}[31mred",
        "evil\u{202E}gpj.exe",
        "de\u{200B}ploy",
        "\u{FEFF}billing",
    ] {
        let got =
            register(json!({"client_name": name, "grant_types": ["client_credentials"]})).await;
        assert_error(&got, 400, "invalid_request", name);
        assert_eq!(got.2["field"], "client_name", "{}", got.2);
        let got = v1(
            &server,
            "POST",
            "/v1/users",
            Some(&admin),
            Some(json!({"username": "nm", "password": "a long passphrase", "name": name})),
        )
        .await;
        assert_error(&got, 400, "invalid_request", name);
        assert_eq!(got.2["field"], "name", "{}", got.2);
        let got = v1(
            &server,
            "POST",
            "/v1/api-keys",
            Some(&admin),
            Some(json!({"name": name, "scopes": ["read"]})),
        )
        .await;
        assert_error(&got, 400, "invalid_request", name);
    }
    // The joiners that emoji sequences and Persian words are made of stay allowed.
    let got = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&admin),
        Some(json!({"name": "\u{1F469}\u{200D}\u{1F4BB} ops", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.2);
    let got = v1(
        &server,
        "POST",
        "/v1/users",
        Some(&admin),
        Some(
            json!({"username": "em", "password": "a long passphrase", "email": "a\u{0}@x.example"}),
        ),
    )
    .await;
    assert_eq!(got.2["field"], "email", "{}", got.2);

    // A body is an object: serde would fill the struct from an array by position.
    let got = register(json!(["arr", ["client_credentials"], [], [], "read"])).await;
    assert_error(&got, 400, "invalid_request", "an array body");
    let got = register(json!([])).await;
    assert_error(&got, 400, "invalid_request", "an empty array body");
    assert!(
        !got.2["message"].as_str().unwrap().contains("struct"),
        "{}",
        got.2
    );
    // Nor do nested type errors name the program's types.
    let got =
        register(json!({"client_name": "n", "grant_types": ["client_credentials"], "jwks": 5}))
            .await;
    assert_eq!(got.0, 400, "{}", got.2);
    assert!(
        !got.2["message"].as_str().unwrap().contains("Body"),
        "{}",
        got.2
    );

    // A JWKS holds public keys: a shared (oct) key is refused.
    let got = register(json!({
        "client_name": "signer",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
    }))
    .await;
    assert_error(&got, 400, "invalid_request", "an oct key");
    assert_eq!(got.2["field"], "jwks", "{}", got.2);

    // Messages speak the API's language, not the CLI's flags.
    let got = register(json!({
        "client_name": "signer",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
    }))
    .await;
    assert_eq!(got.0, 400);
    assert!(
        !got.2["message"].as_str().unwrap().contains("--"),
        "{}",
        got.2
    );

    // Two Idempotency-Key headers leave it to chance which one keys the request: refused.
    let res = http()
        .post(server.url("/v1/clients"))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two")
        .json(&json!({"client_name": "twice", "grant_types": ["client_credentials"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    let listed = v1(&server, "GET", "/v1/clients", Some(&admin), None).await;
    assert_eq!(
        listed.2["data"].as_array().unwrap().len(),
        1,
        "only the %20 client"
    );
}

#[actix_rt::test]
async fn what_schemathesis_found_stays_fixed() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, admin) = cli_key(&server, &org, "live", ALL, &[]);

    // No credential is a 401 even with a malformed Idempotency-Key (it was the key's 400).
    let res = http()
        .post(server.url("/v1/api-keys"))
        .header("Idempotency-Key", "two words")
        .json(&json!({"name": "k", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // grace_period_seconds is a JSON Schema integer: 3600.0 is one, 1.5 is not.
    cli_key(&server, &org, "live", "read", &[]);
    let other_id = v1(&server, "GET", "/v1/api-keys", Some(&admin), None)
        .await
        .2["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] != id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/api-keys/{other_id}/rotate");
    let half = v1(
        &server,
        "POST",
        &path,
        Some(&admin),
        Some(json!({"grace_period_seconds": 1.5})),
    )
    .await;
    assert_error(&half, 400, "invalid_request", "a fraction of a second");
    assert_eq!(half.2["field"], "grace_period_seconds");
    let whole = v1(
        &server,
        "POST",
        &path,
        Some(&admin),
        Some(json!({"grace_period_seconds": 3600.0})),
    )
    .await;
    assert_eq!(whole.0, 201, "{}", whole.2);

    // A NUL names nothing (PostgreSQL answered 503: it cannot compare a text holding one).
    let nul = v1(
        &server,
        "GET",
        "/v1/users?starting_after=%00",
        Some(&admin),
        None,
    )
    .await;
    assert_error(&nul, 400, "invalid_request", "NUL cursor");
    assert_eq!(nul.2["field"], "starting_after");
    let nul = v1(&server, "GET", "/v1/clients/a%00b", Some(&admin), None).await;
    assert_error(&nul, 404, "not_found", "NUL id");
    let form = http()
        .post(server.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "a\0b")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400);
}
