//! API keys over real HTTP: the key format, the `/v1/api-keys` routes, the rules of SPEC §4
//! tried from the attacker's side, and verification at `/oauth2/introspect`.

mod common;

use common::*;
use serde_json::{json, Value};

/// A counter of the server's `/metrics`.
fn counter(server: &TestServer, name: &str) -> u64 {
    let prefix = format!("{name} ");
    server
        .state
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn lookups(server: &TestServer) -> u64 {
    counter(server, "latchkey_api_key_lookups_total")
}

fn lookup_batches(server: &TestServer) -> u64 {
    counter(server, "latchkey_api_key_lookup_batches_total")
}

/// Runs `wave` (which checks its own answers) until the server has answered some of its
/// `per_wave` key lookups together — it answers them as they come, and a wave may arrive one
/// request at a time on a slow machine — at most ten times.
async fn until_some_shared_a_batch<F: std::future::Future<Output = ()>>(
    server: &TestServer,
    per_wave: u64,
    mut wave: impl FnMut() -> F,
) {
    for _ in 0..10 {
        let (lookups_before, batches_before) = (lookups(server), lookup_batches(server));
        wave().await;
        let looked = lookups(server) - lookups_before;
        let batches = lookup_batches(server) - batches_before;
        assert_eq!(looked, per_wave, "every well-formed key was looked up");
        assert!(batches >= 1 && batches <= looked);
        if batches < looked {
            return;
        }
    }
    panic!("{per_wave} key lookups at once never shared a read of the store");
}

#[actix_web::test]
async fn an_organization_mints_uses_lists_rotates_and_revokes_keys() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (root_id, root) = cli_key(&server, "acme", "live", ALL, &["--name", "root"]);
    assert!(
        root.starts_with("sk_live_"),
        "every scope makes an sk_ key: {root}"
    );
    assert_eq!(root.len(), "sk_live_".len() + 43 + 6);

    let ok = v1(&server, "GET", "/v1/utils/authtest", Some(&root), None).await;
    assert_eq!(ok.0, 200);
    assert_eq!(ok.2, json!({"msg": "Auth successful"}));
    assert!(ok.1["x-request-id"].to_str().unwrap().starts_with("req_"));

    // Create a restricted key over the API: shown once, with every documented field.
    let created = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&root),
        Some(json!({
            "name": "reporting",
            "environment": "live",
            "scopes": ["read"],
            "allowed_ips": ["127.0.0.1", "10.0.0.0/8"],
            "expires_at": "2099-01-01T00:00:00Z",
            "metadata": {"team": "data"},
        })),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let key = created.2["api_key"].as_str().unwrap().to_string();
    let id = created.2["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("rk_live_"), "{key}");
    assert!(key.starts_with(created.2["key_prefix"].as_str().unwrap()));
    assert_eq!(created.2["scopes"], json!(["read"]));
    assert_eq!(
        created.2["allowed_ips"],
        json!(["127.0.0.1/32", "10.0.0.0/8"])
    );
    assert_eq!(created.2["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(created.2["metadata"], json!({"team": "data"}));
    assert_eq!(created.2["environment"], "live");
    assert_eq!(created.1["cache-control"], "no-store");
    // A resource server introspecting it sees its metadata and expiry as created.
    let (rs_client, rs_secret) = server.cc_client("acme", &[]);
    let seen = server.introspect(&rs_client, &rs_secret, &key).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["metadata"], json!({"team": "data"}));
    assert_eq!(seen["exp"], 4_070_908_800i64, "2099-01-01T00:00:00Z");
    assert_eq!(seen["scope"], "read");
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&key), None)
            .await
            .0,
        200
    );

    // Lists never show a key again; pages follow creation order.
    let list = v1(&server, "GET", "/v1/api-keys?limit=1", Some(&root), None).await;
    assert_eq!(list.0, 200);
    assert_eq!(list.2["has_more"], true);
    assert_eq!(list.2["data"][0]["id"], root_id.as_str());
    let next = v1(
        &server,
        "GET",
        &format!("/v1/api-keys?limit=1&starting_after={root_id}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(next.2["data"][0]["id"], id.as_str());
    assert_eq!(next.2["has_more"], false);
    for body in [&list.2, &next.2] {
        let text = body.to_string();
        assert!(!text.contains("\"api_key\":"), "no key in a list: {text}");
        assert!(!text.contains(&root) && !text.contains(&key), "{text}");
    }
    let got = v1(
        &server,
        "GET",
        &format!("/v1/api-keys/{id}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(got.0, 200);
    assert_eq!(got.2["name"], "reporting");
    assert!(got.2.get("api_key").is_none());

    // last_used_at is recorded (coarsely, in the background).
    let mut used = Value::Null;
    for _ in 0..50 {
        used = v1(
            &server,
            "GET",
            &format!("/v1/api-keys/{id}"),
            Some(&root),
            None,
        )
        .await
        .2;
        if used["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(used["last_used_at"].is_string(), "{used}");

    // Rotation without grace: the new key works, the old one is refused at once.
    let rotated = v1(
        &server,
        "POST",
        &format!("/v1/api-keys/{id}/rotate"),
        Some(&root),
        Some(json!({"grace_period_seconds": 0})),
    )
    .await;
    assert_eq!(rotated.0, 201, "{}", rotated.2);
    let successor = rotated.2["api_key"].as_str().unwrap().to_string();
    assert_ne!(successor, key);
    assert_eq!(rotated.2["scopes"], json!(["read"]));
    assert_eq!(rotated.2["metadata"], json!({"team": "data"}));
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&successor), None)
            .await
            .0,
        200
    );
    assert_error(
        &v1(&server, "GET", "/v1/utils/authtest", Some(&key), None).await,
        401,
        "unauthorized",
        "a key rotated without grace",
    );
    assert_error(
        &v1(
            &server,
            "POST",
            &format!("/v1/api-keys/{id}/rotate"),
            Some(&root),
            None,
        )
        .await,
        409,
        "conflict",
        "a rotated key is not rotated twice",
    );

    // Revocation is immediate.
    let successor_id = rotated.2["id"].as_str().unwrap();
    let deleted = v1(
        &server,
        "DELETE",
        &format!("/v1/api-keys/{successor_id}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(deleted.0, 200);
    assert_eq!(deleted.2["deleted"], true);
    assert_error(
        &v1(&server, "GET", "/v1/utils/authtest", Some(&successor), None).await,
        401,
        "unauthorized",
        "a revoked key",
    );
    assert_error(
        &v1(
            &server,
            "GET",
            &format!("/v1/api-keys/{successor_id}"),
            Some(&root),
            None,
        )
        .await,
        404,
        "not_found",
        "a revoked key is gone from the API",
    );

    // The CLI lists and revokes too.
    let listed = server.cli_json(&["api-key", "list", "--org", &org]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == root_id.as_str()));
    assert!(
        !listed.to_string().contains(&root),
        "the CLI list never shows a key"
    );
    server.cli_json(&["api-key", "revoke", &root_id]);
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&root), None)
            .await
            .0,
        401
    );
}

#[actix_web::test]
async fn a_rotated_key_works_through_its_grace_period_and_not_after() {
    let server = TestServer::start().await;
    server.org("acme");
    let (id, key) = cli_key(&server, "acme", "live", ALL, &[]);
    let rotated = v1(
        &server,
        "POST",
        &format!("/v1/api-keys/{id}/rotate"),
        Some(&key),
        Some(json!({"grace_period_seconds": 2})),
    )
    .await;
    assert_eq!(rotated.0, 201);
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&key), None)
            .await
            .0,
        200,
        "within grace"
    );
    let old = v1(
        &server,
        "GET",
        &format!("/v1/api-keys/{id}"),
        Some(&key),
        None,
    )
    .await
    .2;
    assert_eq!(old["rotated_to"], rotated.2["id"]);
    assert!(
        old["expires_at"].is_string(),
        "the grace period is the old key's expiry"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_error(
        &v1(&server, "GET", "/v1/utils/authtest", Some(&key), None).await,
        401,
        "unauthorized",
        "rotated past its grace period",
    );
    let new = rotated.2["api_key"].as_str().unwrap();
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(new), None)
            .await
            .0,
        200
    );

    // An expiring key stops at its expiry. (Expiry has whole seconds: a 1 s key could expire
    // before its first use when the CLI's run crossed a second boundary — seen once on
    // PostgreSQL.)
    let (_, short) = cli_key(&server, "acme", "live", "read", &["--expires-in", "3s"]);
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&short), None)
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    let expired = v1(&server, "GET", "/v1/utils/authtest", Some(&short), None).await;
    assert_error(&expired, 401, "unauthorized", "an expired key");
    assert!(expired.2["message"].as_str().unwrap().contains("expired"));
}

#[actix_web::test]
async fn malformed_keys_are_refused_without_a_lookup() {
    let server = TestServer::start().await;
    server.org("acme");
    let (_, key) = cli_key(&server, "acme", "live", "read", &[]);
    let before = lookups(&server);

    // One character off, a truncated key, a key with its environment swapped, garbage.
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 10;
    typo[last] = if typo[last] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    for bad in [
        typo.as_str(),
        &key[..key.len() - 1],
        &key.replacen("rk_live_", "rk_test_", 1),
        "sk_live_not-a-key",
        "hunter2",
    ] {
        assert_error(
            &v1(&server, "GET", "/v1/utils/authtest", Some(bad), None).await,
            401,
            "unauthorized",
            bad,
        );
    }
    let intro_client = server.cc_client("acme", &[]);
    let intro = server
        .introspect(&intro_client.0, &intro_client.1, &typo)
        .await;
    assert_eq!(intro, json!({"active": false}));
    assert_eq!(
        lookups(&server),
        before,
        "no malformed key reached the store"
    );

    // A well-formed key that was never issued costs exactly one lookup.
    let forged = latchkey::apikey::generate(
        None,
        latchkey::apikey::KeyType::Secret,
        latchkey::apikey::Environment::Live,
    )
    .secret;
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&forged), None)
            .await
            .0,
        401
    );
    assert_eq!(lookups(&server), before + 1);

    // No credential, another scheme, a key in the query string.
    assert_error(
        &v1(&server, "GET", "/v1/utils/authtest", None, None).await,
        401,
        "unauthorized",
        "none",
    );
    let basic = http()
        .get(server.url("/v1/utils/authtest"))
        .basic_auth("x", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(
        basic.headers()["www-authenticate"],
        "Bearer realm=\"latchkey\""
    );
    let query = http()
        .get(server.url(&format!("/v1/utils/authtest?api_key={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 401, "a key in the query string is not read");
}

#[actix_web::test]
async fn no_credential_grants_more_than_it_holds() {
    let server = TestServer::start().await;
    server.org("acme");
    let (root_id, root) = cli_key(&server, "acme", "live", ALL, &[]);
    let (_, manager) = cli_key(&server, "acme", "live", "read,keys:manage", &[]);
    let (_, reader) = cli_key(&server, "acme", "live", "read", &[]);
    let new_key =
        |scopes: Value, env: &str| json!({"name": "k", "environment": env, "scopes": scopes});

    // A key without keys:manage manages nothing.
    assert_error(
        &v1(&server, "GET", "/v1/api-keys", Some(&reader), None).await,
        403,
        "insufficient_scope",
        "list without keys:manage",
    );
    // A manager grants only what it holds.
    assert_error(
        &v1(
            &server,
            "POST",
            "/v1/api-keys",
            Some(&manager),
            Some(new_key(json!(["read", "write"]), "live")),
        )
        .await,
        403,
        "scope_grant_forbidden",
        "granting write it does not hold",
    );
    assert_error(
        &v1(
            &server,
            "POST",
            "/v1/api-keys",
            Some(&manager),
            Some(new_key(json!(["admin"]), "live")),
        )
        .await,
        403,
        "scope_grant_forbidden",
        "granting admin",
    );
    let ok = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&manager),
        Some(new_key(json!(["read"]), "live")),
    )
    .await;
    assert_eq!(ok.0, 201);
    // ... and cannot reveal a stronger key by rotating it.
    assert_error(
        &v1(
            &server,
            "POST",
            &format!("/v1/api-keys/{root_id}/rotate"),
            Some(&manager),
            None,
        )
        .await,
        403,
        "scope_grant_forbidden",
        "rotating an sk_ key with an rk_ key",
    );
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&root), None)
            .await
            .0,
        200,
        "the root key is untouched"
    );

    // Sandbox keys see and make only sandbox keys.
    let (_, sandbox) = cli_key(&server, "acme", "sandbox", ALL, &[]);
    assert!(sandbox.starts_with("sk_test_"), "{sandbox}");
    assert_error(
        &v1(
            &server,
            "POST",
            "/v1/api-keys",
            Some(&sandbox),
            Some(new_key(json!(["read"]), "live")),
        )
        .await,
        403,
        "environment_forbidden",
        "a sandbox key creating a live key",
    );
    let made = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&sandbox),
        Some(json!({"name": "t", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(made.0, 201);
    assert_eq!(
        made.2["environment"], "sandbox",
        "a sandbox key's default environment is sandbox"
    );
    assert!(made.2["api_key"].as_str().unwrap().starts_with("rk_test_"));
    let listed = v1(
        &server,
        "GET",
        "/v1/api-keys?limit=100",
        Some(&sandbox),
        None,
    )
    .await
    .2;
    let envs: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["environment"].as_str().unwrap())
        .collect();
    assert!(
        !envs.is_empty() && envs.iter().all(|e| *e == "sandbox"),
        "{envs:?}"
    );
    // A live key's id is no cursor for a sandbox key: answered like an id that does not
    // exist, so that paging cannot tell which live ids do.
    let as_cursor = |id: String| {
        let (server, sandbox) = (&server, sandbox.clone());
        async move {
            v1(
                server,
                "GET",
                &format!("/v1/api-keys?starting_after={id}"),
                Some(&sandbox),
                None,
            )
            .await
        }
    };
    let live_cursor = as_cursor(root_id.clone()).await;
    let no_cursor = as_cursor("key_doesnotexist".into()).await;
    assert_error(&live_cursor, 400, "invalid_request", "a live cursor");
    assert_eq!(live_cursor.2["field"], "starting_after");
    assert_eq!(live_cursor.2["message"], no_cursor.2["message"]);
    let sandbox_cursor = as_cursor(made.2["id"].as_str().unwrap().to_string()).await;
    assert_eq!(sandbox_cursor.0, 200, "{}", sandbox_cursor.2);
    for (method, path) in [
        ("GET", format!("/v1/api-keys/{root_id}")),
        ("DELETE", format!("/v1/api-keys/{root_id}")),
        ("POST", format!("/v1/api-keys/{root_id}/rotate")),
        ("GET", "/v1/organization".to_string()),
        ("PATCH", "/v1/organization".to_string()),
    ] {
        assert_error(
            &v1(&server, method, &path, Some(&sandbox), Some(json!({}))).await,
            403,
            "environment_forbidden",
            &format!("sandbox {method} {path}"),
        );
    }
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&root), None)
            .await
            .0,
        200,
        "nothing was revoked"
    );
}

#[actix_web::test]
async fn organizations_are_walls() {
    let server = TestServer::start().await;
    server.org("acme");
    server.org("evil");
    let (acme_id, acme) = cli_key(&server, "acme", "live", ALL, &[]);
    let (evil_id, evil) = cli_key(&server, "evil", "live", ALL, &[]);
    for (method, path) in [
        ("GET", format!("/v1/api-keys/{acme_id}")),
        ("DELETE", format!("/v1/api-keys/{acme_id}")),
        ("POST", format!("/v1/api-keys/{acme_id}/rotate")),
    ] {
        assert_error(
            &v1(&server, method, &path, Some(&evil), None).await,
            404,
            "not_found",
            &format!("another organization's {method} {path}"),
        );
    }
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&acme), None)
            .await
            .0,
        200,
        "nothing changed"
    );
    let mine = v1(&server, "GET", "/v1/api-keys", Some(&evil), None)
        .await
        .2;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    assert_eq!(mine["data"][0]["id"], evil_id.as_str());
    assert_error(
        &v1(
            &server,
            "GET",
            &format!("/v1/api-keys?starting_after={acme_id}"),
            Some(&evil),
            None,
        )
        .await,
        400,
        "invalid_request",
        "paging from another organization's key",
    );

    // Introspection: only a client of the key's own organization sees it active.
    let (acme_client, acme_secret) = server.cc_client("acme", &[]);
    let (evil_client, evil_secret) = server.cc_client("evil", &[]);
    let mine = server.introspect(&acme_client, &acme_secret, &acme).await;
    assert_eq!(mine["active"], true);
    assert_eq!(mine["token_type"], "api_key");
    assert_eq!(mine["key_id"], acme_id.as_str());
    assert_eq!(mine["environment"], "live");
    assert_eq!(mine["scope"], ALL.replace(',', " "));
    assert!(mine["org_id"].as_str().unwrap().starts_with("org_"));
    assert_eq!(mine["metadata"], json!({}));
    assert_eq!(
        server.introspect(&evil_client, &evil_secret, &acme).await,
        json!({"active": false})
    );
}

#[actix_web::test]
async fn allowlists_hold_keys_and_organizations_to_their_addresses() {
    let server = TestServer::start().await;
    server.org("acme");
    server.org("other");
    let (_, root) = cli_key(&server, "acme", "live", ALL, &[]);
    let (_, fenced) = cli_key(
        &server,
        "acme",
        "live",
        "read",
        &["--allowed-ips", "10.0.0.0/8"],
    );
    let (_, other) = cli_key(&server, "other", "live", "read", &[]);
    assert_error(
        &v1(&server, "GET", "/v1/utils/authtest", Some(&fenced), None).await,
        403,
        "ip_not_allowed",
        "a key used from outside its allowlist",
    );
    // X-Forwarded-For is not believed from an untrusted peer.
    let spoofed = http()
        .get(server.url("/v1/utils/authtest"))
        .bearer_auth(&fenced)
        .header("X-Forwarded-For", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);

    // Introspection applies the allowlist to the client_ip a resource server passes.
    let (cid, csecret) = server.cc_client("acme", &[]);
    let intro = |ip: &'static str| {
        let (cid, csecret, fenced) = (cid.clone(), csecret.clone(), fenced.clone());
        let url = server.url("/oauth2/introspect");
        async move {
            http()
                .post(url)
                .basic_auth(cid, Some(csecret))
                .form(&[("token", fenced.as_str()), ("client_ip", ip)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(intro("10.9.9.9").await["active"], true);
    assert_eq!(intro("192.0.2.1").await, json!({"active": false}));

    // The organization's allowlist: a blank entry is refused, never read as "everyone"...
    let blank = v1(
        &server,
        "PATCH",
        "/v1/organization",
        Some(&root),
        Some(json!({"allowed_ips": [""]})),
    )
    .await;
    assert_error(&blank, 400, "invalid_request", "a blank organization entry");
    assert_eq!(blank.2["field"], "allowed_ips");
    // ... the API refuses to lock its caller out...
    assert_error(
        &v1(
            &server,
            "PATCH",
            "/v1/organization",
            Some(&root),
            Some(json!({"allowed_ips": ["10.0.0.0/8"]})),
        )
        .await,
        400,
        "invalid_request",
        "an allowlist without the caller's address",
    );
    let set = v1(
        &server,
        "PATCH",
        "/v1/organization",
        Some(&root),
        Some(json!({"allowed_ips": ["127.0.0.1"]})),
    )
    .await;
    assert_eq!(set.0, 200, "{}", set.2);
    assert_eq!(set.2["allowed_ips"], json!(["127.0.0.1/32"]));
    assert_eq!(
        v1(&server, "GET", "/v1/organization", Some(&root), None)
            .await
            .2["allowed_ips"],
        json!(["127.0.0.1/32"])
    );
    // ... and the CLI can fence the whole organization: every key of it is refused.
    server.cli_json(&["org", "update", "acme", "--allowed-ips", "10.0.0.0/8"]);
    assert_error(
        &v1(&server, "GET", "/v1/utils/authtest", Some(&root), None).await,
        403,
        "ip_not_allowed",
        "an organization fenced off",
    );
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&other), None)
            .await
            .0,
        200,
        "another organization is not"
    );
    server.cli_json(&["org", "update", "acme", "--allowed-ips", ""]);
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&root), None)
            .await
            .0,
        200
    );
}

#[actix_web::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let server = TestServer::start_with(&[("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    server.org("acme");
    let (_, fenced) = cli_key(
        &server,
        "acme",
        "live",
        "read",
        &["--allowed-ips", "10.0.0.0/8"],
    );
    let via = |xff: &'static str| {
        let (url, fenced) = (server.url("/v1/utils/authtest"), fenced.clone());
        async move {
            http()
                .get(url)
                .bearer_auth(fenced)
                .header("X-Forwarded-For", xff)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        via("10.1.2.3").await,
        200,
        "the proxy's word for the client"
    );
    assert_eq!(via("192.0.2.7").await, 403);
    // The client cannot prepend its own claim: the nearest untrusted hop counts.
    assert_eq!(via("10.1.2.3, 192.0.2.7").await, 403);
}

#[actix_web::test]
async fn bad_input_gets_the_envelope_never_a_500() {
    let server = TestServer::start().await;
    server.org("acme");
    let (_, root) = cli_key(&server, "acme", "live", ALL, &[]);
    let post_raw = |body: String, ct: &'static str| {
        let (url, root) = (server.url("/v1/api-keys"), root.clone());
        async move {
            let res = http()
                .post(url)
                .bearer_auth(root)
                .header("Content-Type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            (status, headers, res.json::<Value>().await.unwrap())
        }
    };
    let json_ct = "application/json";
    assert_error(
        &post_raw("{\"name\":".into(), json_ct).await,
        400,
        "invalid_request",
        "truncated JSON",
    );
    assert_error(
        &post_raw("[1,2]".into(), json_ct).await,
        400,
        "invalid_request",
        "an array",
    );
    assert_error(
        &post_raw("name=x".into(), "application/x-www-form-urlencoded").await,
        400,
        "invalid_request",
        "a form",
    );
    // One JSON text and nothing after it: a second object (here one asking for admin) or
    // trailing garbage makes the body invalid, and no key is made from its first part.
    let before = v1(&server, "GET", "/v1/api-keys?limit=100", Some(&root), None)
        .await
        .2["data"]
        .as_array()
        .unwrap()
        .len();
    for (body, what) in [
        (
            r#"{"name":"a","scopes":["read"]}{"name":"b","scopes":["admin"]}"#,
            "two JSON objects",
        ),
        (r#"{"name":"a","scopes":["read"]} xyz"#, "trailing text"),
        (r#"{"name":"a","scopes":["read"]}]]"#, "trailing brackets"),
    ] {
        let got = post_raw(body.into(), json_ct).await;
        assert_error(&got, 400, "invalid_request", what);
        assert!(
            got.2["message"].as_str().unwrap().contains("trailing"),
            "{what}: {}",
            got.2
        );
    }
    let after = v1(&server, "GET", "/v1/api-keys?limit=100", Some(&root), None)
        .await
        .2["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        after, before,
        "no key was made from a body with trailing data"
    );
    // A field given twice is refused, naming it (which of the two would win is the
    // parser's choice, and a proxy's may differ).
    let twice = post_raw(
        r#"{"name":"a","scopes":["read"],"scopes":["read","admin"]}"#.into(),
        json_ct,
    )
    .await;
    assert_error(&twice, 400, "invalid_request", "a field twice");
    assert_eq!(twice.2["field"], "scopes", "{}", twice.2);
    // Trailing whitespace is still one JSON text.
    let spaced = post_raw(
        "{\"name\":\"spaced\",\"scopes\":[\"read\"]}\n  ".into(),
        json_ct,
    )
    .await;
    assert_eq!(spaced.0, 201, "{}", spaced.2);

    // `curl -d '{…}'` labels JSON as a form: the syntax decides, not the label.
    let curl_style = post_raw(
        r#"{"name":"from curl","scopes":["read"]}"#.into(),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(curl_style.0, 201, "{}", curl_style.2);
    let huge = format!(
        "{{\"name\":\"{}\",\"scopes\":[\"read\"]}}",
        "x".repeat(70 * 1024)
    );
    assert_error(
        &post_raw(huge, json_ct).await,
        413,
        "invalid_request",
        "a body over 64 KiB",
    );

    let cases = [
        (
            json!({"name": "k", "scopes": ["read"], "admin": true}),
            "admin",
            "an unknown field",
        ),
        (
            json!({"name": 7, "scopes": ["read"]}),
            "name",
            "a number for a name",
        ),
        (
            json!({"name": "k", "scopes": "read"}),
            "scopes",
            "a string for a list",
        ),
        (
            json!({"name": "", "scopes": ["read"]}),
            "name",
            "an empty name",
        ),
        (
            json!({"name": "x".repeat(201), "scopes": ["read"]}),
            "name",
            "a 201-character name",
        ),
        (
            json!({"name": "k", "scopes": ["read", "root"]}),
            "scopes",
            "an unknown scope",
        ),
        (json!({"name": "k", "scopes": []}), "scopes", "no scope"),
        (
            json!({"name": "k", "scopes": ["read"], "environment": "prod"}),
            "environment",
            "an unknown environment",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "expires_at": "tomorrow"}),
            "expires_at",
            "an unparsable expiry",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
            "a past expiry",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "allowed_ips": ["10.0.0.0/33"]}),
            "allowed_ips",
            "a bad CIDR",
        ),
        // A blank entry is not "no restriction" (an empty list says that): it is refused.
        (
            json!({"name": "k", "scopes": ["read"], "allowed_ips": [""]}),
            "allowed_ips",
            "an empty allowlist entry",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "allowed_ips": ["10.0.0.0/8", "  "]}),
            "allowed_ips",
            "a blank allowlist entry beside a good one",
        ),
        (
            json!({"name": "   ", "scopes": ["read"]}),
            "name",
            "a name of spaces",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "metadata": {"a": {"nested": 1}}}),
            "metadata",
            "nested metadata",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "rate_limit_per_minute": 0}),
            "rate_limit_per_minute",
            "a zero rate limit",
        ),
    ];
    for (body, field, what) in cases {
        let got = v1(&server, "POST", "/v1/api-keys", Some(&root), Some(body)).await;
        assert_error(&got, 400, "invalid_request", what);
        assert_eq!(got.2["field"], field, "{what}: {}", got.2);
    }
    let spaces = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&root),
        Some(json!({"name": "   ", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(spaces.2["message"], "name must not be only whitespace");
    // The query string of a list: an unknown or repeated parameter is named.
    for (query, field) in [
        ("sort=name", "sort"),
        ("limit=5&limit=6", "limit"),
        ("starting_after=a&starting_after=b", "starting_after"),
    ] {
        let got = v1(
            &server,
            "GET",
            &format!("/v1/api-keys?{query}"),
            Some(&root),
            None,
        )
        .await;
        assert_error(&got, 400, "invalid_request", query);
        assert_eq!(got.2["field"], field, "{query}: {}", got.2);
    }
    let name200 = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&root),
        Some(json!({"name": "é".repeat(200), "scopes": ["read"]})),
    )
    .await;
    assert_eq!(name200.0, 201, "200 characters is a valid name");

    for (method, path, status, code, what) in [
        (
            "GET",
            "/v1/api-keys?limit=0",
            400,
            "invalid_request",
            "limit 0",
        ),
        (
            "GET",
            "/v1/api-keys?limit=abc",
            400,
            "invalid_request",
            "limit abc",
        ),
        (
            "GET",
            "/v1/api-keys?sort=name",
            400,
            "invalid_request",
            "an unknown parameter",
        ),
        (
            "GET",
            "/v1/api-keys/key_nope",
            404,
            "not_found",
            "an unknown id",
        ),
        (
            "GET",
            "/v1/nothing-here",
            404,
            "not_found",
            "an unknown route",
        ),
        (
            "PUT",
            "/v1/api-keys",
            405,
            "invalid_request",
            "a wrong method",
        ),
    ] {
        assert_error(
            &v1(&server, method, path, Some(&root), None).await,
            status,
            code,
            what,
        );
    }
    let grace = v1(
        &server,
        "POST",
        "/v1/api-keys/key_nope/rotate",
        Some(&root),
        Some(json!({"grace_period_seconds": -1})),
    )
    .await;
    assert_eq!(grace.2["field"], "grace_period_seconds");
}

#[actix_web::test]
async fn access_tokens_for_the_v1_audience_work_and_others_do_not() {
    let server = TestServer::start().await;
    server.org("acme");
    let v1_aud = format!("{}/v1", server.issuer);
    let c = server.cli_json(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "ops",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "read keys:manage",
        "--audience",
        &v1_aud,
        "--audience",
        "https://api.acme.test",
    ]);
    let id = c["client_id"].as_str().unwrap().to_string();
    let secret = c["client_secret"].as_str().unwrap().to_string();
    let token = server
        .access_token(&id, &secret, &[("resource", &v1_aud)])
        .await;
    let listed = v1(&server, "GET", "/v1/api-keys", Some(&token), None).await;
    assert_eq!(listed.0, 200, "{}", listed.2);
    // It grants what it holds and no more.
    let made = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&token),
        Some(json!({"name": "k", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(made.0, 201);
    assert_error(
        &v1(
            &server,
            "POST",
            "/v1/api-keys",
            Some(&token),
            Some(json!({"name": "k", "scopes": ["write"]})),
        )
        .await,
        403,
        "scope_grant_forbidden",
        "a token granting what it does not hold",
    );

    // A token of a client deleted since is refused at once.
    let fresh = server
        .access_token(&id, &secret, &[("resource", &v1_aud)])
        .await;
    let (_, admin) = cli_key(&server, "acme", "live", ALL, &[]);
    let doomed = server.cli_json(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "doomed",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "read keys:manage",
        "--audience",
        &v1_aud,
    ]);
    let (did, dsecret) = (
        doomed["client_id"].as_str().unwrap(),
        doomed["client_secret"].as_str().unwrap(),
    );
    let doomed_token = server
        .access_token(did, dsecret, &[("resource", &v1_aud)])
        .await;
    assert_eq!(
        v1(&server, "GET", "/v1/api-keys", Some(&doomed_token), None)
            .await
            .0,
        200
    );
    let gone = v1(
        &server,
        "DELETE",
        &format!("/v1/clients/{did}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(gone.0, 200);
    assert_error(
        &v1(&server, "GET", "/v1/api-keys", Some(&doomed_token), None).await,
        401,
        "unauthorized",
        "a deleted client's token",
    );
    // Introspection agrees.
    let intro = server.introspect(&id, &secret, &doomed_token).await;
    assert_eq!(intro["active"], false, "{intro}");
    assert_eq!(
        v1(&server, "GET", "/v1/api-keys", Some(&fresh), None)
            .await
            .0,
        200
    );

    // A token minted for another audience is refused.
    let other = server
        .access_token(&id, &secret, &[("resource", "https://api.acme.test")])
        .await;
    assert_error(
        &v1(&server, "GET", "/v1/api-keys", Some(&other), None).await,
        401,
        "unauthorized",
        "another audience",
    );
    // A revoked token is refused at once.
    http()
        .post(server.url("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_error(
        &v1(&server, "GET", "/v1/api-keys", Some(&token), None).await,
        401,
        "unauthorized",
        "a revoked token",
    );
    // A tampered one too.
    let mut parts: Vec<String> = other.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_error(
        &v1(&server, "GET", "/v1/api-keys", Some(&parts.join(".")), None).await,
        401,
        "unauthorized",
        "a tampered token",
    );
}

#[actix_web::test]
async fn the_cli_refuses_bad_input_with_one_line() {
    let server = TestServer::start().await;
    server.org("acme");
    for (args, needle) in [
        (
            vec![
                "api-key", "create", "--org", "acme", "--env", "prod", "--scopes", "read",
            ],
            "environment",
        ),
        (
            vec![
                "api-key",
                "create",
                "--org",
                "acme",
                "--env",
                "live",
                "--scopes",
                "read,root",
            ],
            "root",
        ),
        (
            vec![
                "api-key", "create", "--org", "nope", "--env", "live", "--scopes", "read",
            ],
            "nope",
        ),
        (
            vec![
                "api-key",
                "create",
                "--org",
                "acme",
                "--env",
                "live",
                "--scopes",
                "read",
                "--expires-in",
                "soon",
            ],
            "expires-in",
        ),
        (
            vec![
                "api-key",
                "create",
                "--org",
                "acme",
                "--env",
                "live",
                "--scopes",
                "read",
                "--allowed-ips",
                "10.0.0.0/99",
            ],
            "allowed-ips",
        ),
        (
            vec![
                "api-key",
                "create",
                "--org",
                "acme",
                "--env",
                "live",
                "--scopes",
                "read",
                "--expires-in",
                "0",
            ],
            "at least 1 second",
        ),
        (vec!["api-key", "revoke", "key_nope"], "key_nope"),
        (vec!["org", "create", "two\nlines"], "control characters"),
        (
            vec!["org", "update", "acme", "--allowed-ips", "not-an-ip"],
            "allowed-ips",
        ),
        (
            vec!["org", "update", "acme", "--allowed-ips", "10.0.0.0/8,"],
            "entry is empty",
        ),
    ] {
        let out = server.cli(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[actix_web::test]
async fn a_key_over_its_rate_limit_waits_and_recovers() {
    let server = TestServer::start().await;
    server.org("acme");
    let (_, root) = cli_key(&server, "acme", "live", ALL, &[]);
    let limited = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&root),
        Some(json!({"name": "batch", "scopes": ["read"], "rate_limit_per_minute": 20})),
    )
    .await;
    assert_eq!(limited.0, 201);
    assert_eq!(limited.2["rate_limit_per_minute"], 20);
    let key = limited.2["api_key"].as_str().unwrap().to_string();
    // A resource server's client, made before the clock matters (the CLI takes a while).
    let (cid, csecret) = server.cc_client("acme", &[]);
    // A minute's worth may come at once...
    for i in 0..20 {
        let got = v1(&server, "GET", "/v1/utils/authtest", Some(&key), None).await;
        assert_eq!(got.0, 200, "request {i}");
    }
    // ... the next waits, told how long.
    let over = v1(&server, "GET", "/v1/utils/authtest", Some(&key), None).await;
    assert_error(&over, 429, "rate_limited", "over the limit");
    let wait: u64 = over.1["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&wait), "{wait}");
    // Another key is not held back by this one.
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&root), None)
            .await
            .0,
        200
    );
    // Introspection with the caller's client_ip applies the same count; without it, not.
    let intro = |with_ip: bool| {
        let (cid, csecret, key) = (cid.clone(), csecret.clone(), key.clone());
        let url = server.url("/oauth2/introspect");
        async move {
            let mut form = vec![("token", key)];
            if with_ip {
                form.push(("client_ip", "127.0.0.1".to_string()));
            }
            http()
                .post(url)
                .basic_auth(cid, Some(csecret))
                .form(&form)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        intro(true).await,
        json!({"active": false}),
        "over the limit"
    );
    assert_eq!(intro(false).await["active"], true, "no client_ip, no count");
    // The limit recovers: one request every 3 s.
    tokio::time::sleep(std::time::Duration::from_millis(1100 * wait)).await;
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&key), None)
            .await
            .0,
        200
    );
}

/// Lookups that arrive together share one read of the store (a batch: one SQLite read
/// transaction, one PostgreSQL query). Many requests at once, with keys of two organizations,
/// both environments, too few scopes, revoked and never minted, are each answered for their
/// own key — never with another request's row — and a key revoked between two waves is
/// refused in the second.
#[actix_web::test]
async fn keys_checked_together_are_each_answered_for_themselves() {
    let server = TestServer::start().await;
    server.org("acme");
    server.org("globex");
    server.org("initech");
    let (acme_id, acme) = cli_key(&server, "acme", "live", "keys:manage", &[]);
    let (globex_id, globex) = cli_key(&server, "globex", "live", "keys:manage", &[]);
    let (sandbox_id, sandbox) = cli_key(&server, "acme", "sandbox", "keys:manage", &[]);
    let (_, reader) = cli_key(&server, "acme", "live", "read", &[]);
    let (revoked_id, revoked) = cli_key(&server, "acme", "live", "keys:manage", &[]);
    let (late_id, late) = cli_key(&server, "initech", "live", "keys:manage", &[]);
    server.cli_json(&["api-key", "revoke", &revoked_id]);
    let never = latchkey::apikey::generate(
        None,
        latchkey::apikey::KeyType::Restricted,
        latchkey::apikey::Environment::Live,
    )
    .secret;

    // What each key's list of keys must hold and must not.
    let listed = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_string())
            .collect()
    };
    let check = |who: &str, got: &(u16, reqwest::header::HeaderMap, Value), late_revoked: bool| {
        let ids = || listed(&got.2);
        match who {
            "acme" => {
                assert_eq!(got.0, 200, "acme: {}", got.2);
                assert!(ids().contains(&acme_id) && !ids().contains(&globex_id));
            }
            "globex" => {
                assert_eq!(got.0, 200, "globex: {}", got.2);
                assert_eq!(
                    ids(),
                    vec![globex_id.clone()],
                    "globex sees its own key only"
                );
            }
            "sandbox" => {
                assert_eq!(got.0, 200, "sandbox: {}", got.2);
                assert_eq!(
                    ids(),
                    vec![sandbox_id.clone()],
                    "sandbox sees sandbox keys only"
                );
            }
            "reader" => assert_error(got, 403, "insufficient_scope", "reader"),
            "revoked" => {
                assert_error(got, 401, "unauthorized", "revoked");
                assert!(got.2["message"].as_str().unwrap().contains("revoked"));
            }
            "never" => {
                assert_error(got, 401, "unauthorized", "never minted");
                assert_eq!(got.2["message"], "Invalid API key provided");
            }
            "late" if late_revoked => assert_error(got, 401, "unauthorized", "late, revoked"),
            "late" => {
                assert_eq!(got.0, 200, "late: {}", got.2);
                assert_eq!(
                    ids(),
                    vec![late_id.clone()],
                    "initech sees its own key only"
                );
            }
            _ => unreachable!(),
        }
    };
    let keys = [
        ("acme", &acme),
        ("globex", &globex),
        ("sandbox", &sandbox),
        ("reader", &reader),
        ("revoked", &revoked),
        ("never", &never),
        ("late", &late),
    ];
    let server = &server;
    let wave = || {
        futures_util::future::join_all((0..12).flat_map(|_| keys.iter()).map(
            |(who, key)| async move {
                (
                    *who,
                    v1(server, "GET", "/v1/api-keys", Some(key.as_str()), None).await,
                )
            },
        ))
    };

    until_some_shared_a_batch(server, 84, || async {
        for (who, got) in wave().await {
            check(who, &got, false);
        }
    })
    .await;

    // Revoked between two waves: the next wave refuses it on every request.
    server.cli_json(&["api-key", "revoke", &late_id]);
    for (who, got) in wave().await {
        check(who, &got, true);
    }
}

/// Introspections at the same moment share a batch too — the keys and the resource servers'
/// clients read together. Two organizations' resource servers asking at once each learn only
/// of their own organization's keys; a wrong client secret is refused in the middle of a
/// batch without touching the others' answers.
#[actix_web::test]
async fn introspections_checked_together_are_each_answered_for_their_client() {
    let server = TestServer::start().await;
    let acme_org = server.org("acme");
    let globex_org = server.org("globex");
    let (acme_rs, acme_secret) = server.cc_client("acme", &[]);
    let (globex_rs, globex_secret) = server.cc_client("globex", &[]);
    let (acme_id, acme) = cli_key(&server, "acme", "live", "read", &[]);
    let (globex_id, globex) = cli_key(&server, "globex", "live", "write", &[]);
    let (revoked_id, revoked) = cli_key(&server, "acme", "live", "read", &[]);
    server.cli_json(&["api-key", "revoke", &revoked_id]);
    let nul_id = format!("{acme_rs}\0");

    // (client, secret, key, expected: None = 401 invalid_client, Some((key id, org id)) =
    // active, Some(("", "")) = inactive)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (&acme_rs, &acme_secret, &acme, Some((&acme_id, &acme_org))),
        (&acme_rs, &acme_secret, &globex, Some(("", ""))),
        (&acme_rs, &acme_secret, &revoked, Some(("", ""))),
        (
            &globex_rs,
            &globex_secret,
            &globex,
            Some((&globex_id, &globex_org)),
        ),
        (&globex_rs, &globex_secret, &acme, Some(("", ""))),
        (&acme_rs, &globex_secret, &acme, None),
        // A NUL in the client id (PostgreSQL refuses one in a query) fails only itself.
        (&nul_id, &acme_secret, &acme, None),
    ];
    let server = &server;
    let wave = || {
        futures_util::future::join_all((0..12).flat_map(|_| cases.iter()).map(|case| async move {
            let (client, secret, key, _) = case;
            let res = http()
                .post(server.url("/oauth2/introspect"))
                .basic_auth(client, Some(secret))
                .form(&[("token", key)])
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (case, status, res.json::<Value>().await.unwrap())
        }))
    };
    // 72 lookups a wave: the NUL client id is refused before its lookup.
    until_some_shared_a_batch(server, 72, || async {
        for ((_, _, _, expected), status, body) in wave().await {
            match expected {
                None => {
                    assert_eq!(status, 401, "{body}");
                    assert_eq!(body["error"], "invalid_client");
                }
                Some(("", _)) => {
                    assert_eq!(status, 200);
                    assert_eq!(body, json!({"active": false}));
                }
                Some((id, org)) => {
                    assert_eq!(status, 200);
                    assert_eq!(body["active"], true, "{body}");
                    assert_eq!(body["key_id"], *id);
                    assert_eq!(body["org_id"], *org);
                }
            }
        }
    })
    .await;
}

#[actix_web::test]
async fn only_the_lists_take_a_query_and_a_request_carries_one_credential() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (key_id, root) = cli_key(&server, "acme", "live", ALL, &[]);
    let (_, reader) = cli_key(&server, "acme", "live", "read", &[]);
    let keys_now = |root: String| {
        let server = &server;
        async move {
            // What a refused request could have changed: which keys there are, and which
            // were rotated (last_used_at moves on its own).
            v1(server, "GET", "/v1/api-keys?limit=100", Some(&root), None)
                .await
                .2["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| (k["id"].clone(), k["rotated_to"].clone(), k["name"].clone()))
                .collect::<Vec<_>>()
        }
    };
    let before = keys_now(root.clone()).await;

    // Every /v1 route refuses a query parameter it would not read, naming it — the lists
    // their unknown ones, the others any — before it changes anything.
    for (method, path) in latchkey::api::ROUTES {
        let method = method.to_uppercase();
        let path = format!("/v1{}?unexpected=1", path.replace("{id}", &key_id));
        let body = matches!(method.as_str(), "POST" | "PATCH")
            .then(|| json!({"name": "q", "scopes": ["read"]}));
        let got = v1(&server, &method, &path, Some(&root), body).await;
        assert_error(&got, 400, "invalid_request", &format!("{method} {path}"));
        assert_eq!(got.2["field"], "unexpected", "{method} {path}: {}", got.2);
    }
    let after = keys_now(root.clone()).await;
    assert_eq!(before, after, "nothing was created, rotated or revoked");
    // Without a credential the answer is still the 401, as on the lists.
    let got = v1(&server, "GET", "/v1/utils/authtest?x=1", None, None).await;
    assert_error(&got, 401, "unauthorized", "no credential");
    // An empty query is no query.
    let got = v1(&server, "GET", "/v1/utils/authtest?", Some(&root), None).await;
    assert_eq!(got.0, 200, "{}", got.2);
    let got = v1(
        &server,
        "DELETE",
        &format!("/v1/api-keys/{key_id}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(got.0, 200, "the key was there to delete: {}", got.2);

    // Two Authorization headers: neither is used (RFC 6750 §3.1), whichever comes first.
    let (_, root2) = cli_key(&server, "acme", "live", ALL, &[]);
    for pair in [
        [reader.as_str(), root2.as_str()],
        [root2.as_str(), "garbage"],
    ] {
        let res = http()
            .get(server.url("/v1/api-keys"))
            .header("Authorization", format!("Bearer {}", pair[0]))
            .header("Authorization", format!("Bearer {}", pair[1]))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body: Value = res.json().await.unwrap();
        assert_error(
            &(status, headers, body),
            400,
            "invalid_request",
            "two headers",
        );
    }
    // Nor at the OAuth endpoints: two Basic headers at introspection, two bearer tokens at
    // userinfo.
    let (id, secret) = server.cc_client(&org, &[]);
    let (other_id, other_secret) = server.cc_client(&org, &[]);
    use base64::Engine;
    let basic = |i: &str, s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{i}:{s}"))
        )
    };
    let res = http()
        .post(server.url("/oauth2/introspect"))
        .header("Authorization", basic(&id, &secret))
        .header("Authorization", basic(&other_id, &other_secret))
        .form(&[("token", root2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let token = server.access_token(&id, &secret, &[]).await;
    let res = http()
        .get(server.url("/userinfo"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    // One header works as ever.
    assert_eq!(
        server.introspect(&id, &secret, &root2).await["active"],
        true
    );
}
