//! The API-key dashboard (`/dashboard/api-keys`, SPEC §3) over real HTTP with a cookie jar:
//! sign-in and the admin gate, a key shown once and working at `/v1`, rotation with and
//! without grace, revocation, and from the attacker's side: CSRF, another organization's key,
//! bad input.

mod common;

use common::*;
use latchkey::store::api_keys::ApiKeyRow;

const PAGE: &str = "/dashboard/api-keys";

/// An organization `acme` with an admin (`root`) and a person who is not one (`ada`).
/// Returns the server, the organization's id and the admin's id.
async fn server() -> (TestServer, String, String) {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let root = server.person("acme", "root", "correct horse battery", &["--admin"]);
    server.person("acme", "ada", "analytical engine", &[]);
    let root_id = root["id"].as_str().unwrap().to_string();
    (server, org, root_id)
}

async fn signed_in(server: &TestServer, username: &str, password: &str) -> Browser {
    let browser = Browser::new();
    let (status, _, _) = browser.login(server, username, password).await;
    assert_eq!(status, 303, "{username} signs in");
    browser
}

/// The organization's unrevoked keys, read from the store.
async fn keys_of(server: &TestServer, org: &str) -> Vec<ApiKeyRow> {
    let org = org.to_string();
    server
        .state
        .store
        .run(move |c| latchkey::store::api_keys::list(c, &org, false, None, 1000))
        .await
        .unwrap()
        .unwrap()
}

async fn authtest(server: &TestServer, key: &str) -> u16 {
    http()
        .get(server.url("/v1/utils/authtest"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Posts the create form with the page's CSRF token.
async fn create(
    server: &TestServer,
    browser: &Browser,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let (_, _, html) = browser.get(&server.url(PAGE)).await;
    let token = field(&html, "csrf_token");
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    browser.post(&server.url(PAGE), &form).await
}

async fn post_action(
    server: &TestServer,
    browser: &Browser,
    id: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let (_, _, html) = browser.get(&server.url(PAGE)).await;
    let token = field(&html, "csrf_token");
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    browser
        .post(&server.url(&format!("{PAGE}/{id}/{action}")), &form)
        .await
}

fn shown_key(html: &str) -> String {
    field(html, "api_key")
}

/// The key format of SPEC §4, checked by the server's own parser (shape and checksum).
fn assert_key_format(key: &str, kind: &str, env: &str) {
    assert!(
        key.starts_with(&format!("{kind}_{env}_")),
        "{key} is an {kind}_{env}_ key"
    );
    assert_eq!(key.len(), kind.len() + env.len() + 2 + 43 + 6, "{key}");
    assert!(latchkey::apikey::parse(key).is_some(), "{key} checks out");
}

#[actix_web::test]
async fn signed_out_goes_to_the_login_page_and_back_and_a_non_admin_is_refused() {
    let (server, org, _) = server().await;
    let stranger = Browser::new();
    let (status, headers, _) = stranger.get(&server.url(PAGE)).await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"],
        server.url("/login?return_to=/dashboard/api-keys").as_str()
    );
    // A POST without a session changes nothing either.
    let (status, _, _) = stranger
        .post(&server.url(PAGE), &[("name", "x"), ("scope_read", "on")])
        .await;
    assert_eq!(status, 303);

    // The login page takes the admin back to the dashboard.
    let (_, _, login) = stranger
        .get(&server.url("/login?return_to=/dashboard/api-keys"))
        .await;
    let (status, headers, _) = stranger
        .post(
            &server.url("/login"),
            &[
                ("csrf_token", &field(&login, "csrf_token")),
                ("return_to", &field(&login, "return_to")),
                ("username", "root"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], server.url(PAGE).as_str());
    let (status, _, html) = stranger.get(&server.url(PAGE)).await;
    assert_eq!(status, 200);
    assert!(html.contains("API keys"));

    // A person who is not an admin: 403 on every route, with a plain page; nothing created.
    let ada = signed_in(&server, "ada", "analytical engine").await;
    let (status, headers, html) = ada.get(&server.url(PAGE)).await;
    assert_eq!(status, 403);
    assert!(html.contains("not an administrator"), "{html}");
    assert_eq!(headers["x-frame-options"], "DENY");
    let (_, _, home) = ada.get(&server.url("/")).await;
    let token = field(&home, "csrf_token");
    let (status, _, _) = ada
        .post(
            &server.url(PAGE),
            &[("csrf_token", &token), ("name", "x"), ("scope_read", "on")],
        )
        .await;
    assert_eq!(status, 403);
    assert!(keys_of(&server, &org).await.is_empty());

    // The organization's allowlist holds on the dashboard as on /v1: an admin from an address
    // outside it is refused.
    server.cli_json(&["org", "update", "acme", "--allowed-ips", "10.0.0.0/8"]);
    let (status, _, html) = stranger.get(&server.url(PAGE)).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("Not from this address"));
    server.cli_json(&["org", "update", "acme", "--allowed-ips", ""]);
    let (status, _, _) = stranger.get(&server.url(PAGE)).await;
    assert_eq!(status, 200, "an empty list allows every address again");
}

#[actix_web::test]
async fn an_admin_creates_a_key_shown_once_rotates_it_and_revokes_it() {
    let (server, org, root_id) = server().await;
    let root = signed_in(&server, "root", "correct horse battery").await;

    let (status, headers, html) = root.get(&server.url(PAGE)).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // Its forms post only to itself, whatever markup might one day slip in.
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(headers["cache-control"], "no-store");
    for label in [
        r#"<label for="key-name">"#,
        r#"<label for="env-live""#,
        r#"<label for="env-sandbox""#,
        r#"<label for="scope-keys-manage""#,
        r#"<label for="allowed-ips">"#,
        r#"<label for="expires-at">"#,
    ] {
        assert!(html.contains(label), "{label} labels its input");
    }
    for scope in latchkey::apikey::SCOPES {
        assert!(
            html.contains(&format!(r#"name="scope_{scope}""#)),
            "{scope}"
        );
    }
    // The one script is a file of our own; nothing inline.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src=""#));
    let js = http()
        .get(server.url("/assets/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("navigator.clipboard"));

    // Create: the key is shown once, in the response to the POST, not cached.
    let (status, headers, html) = create(
        &server,
        &root,
        &[
            ("name", "billing <worker>"),
            ("environment", "live"),
            ("scope_read", "on"),
            ("scope_write", "on"),
            ("allowed_ips", "127.0.0.1/32\n10.0.0.0/8, 192.168.1.7"),
            ("expires_at", "2099-01-31"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("location").is_none());
    assert!(set_cookie(&headers, "lk_").is_none(), "no key in a cookie");
    let key = shown_key(&html);
    assert_key_format(&key, "rk", "live");
    assert!(html.contains(r#"readonly"#) && html.contains(r#"id="copy-key""#));
    assert!(html.contains("billing &#60;worker&#62;") || html.contains("billing &lt;worker&gt;"));
    assert_eq!(authtest(&server, &key).await, 200);

    let keys = keys_of(&server, &org).await;
    assert_eq!(keys.len(), 1);
    let row = &keys[0];
    assert_eq!(row.name, "billing <worker>");
    assert_eq!(row.scopes, "read write");
    assert_eq!(row.allowed_ips, "127.0.0.1/32,10.0.0.0/8,192.168.1.7/32");
    assert_eq!(row.expires_at, Some(4_073_500_800));
    assert_eq!(
        row.created_by,
        format!("user:{root_id}"),
        "the admin is the actor"
    );

    // The list shows it (prefix, name, environment, scopes, expiry), never the key again.
    let (status, _, html) = root.get(&server.url(PAGE)).await;
    assert_eq!(status, 200);
    assert!(!html.contains(&key), "shown once");
    assert!(!html.contains(r#"name="api_key""#));
    assert!(html.contains(&row.key_prefix));
    assert!(html.contains("read, write"));
    assert!(html.contains("2099-01-31 00:00 UTC"));
    assert!(html.contains(r#"<th scope="col">Key</th>"#) && html.contains(r#"<th scope="row">"#));

    // A sandbox key with every scope is an sk_test_ key.
    let mut all: Vec<(&str, &str)> = vec![("name", "sandbox root"), ("environment", "sandbox")];
    let names: Vec<String> = latchkey::apikey::SCOPES
        .iter()
        .map(|s| format!("scope_{s}"))
        .collect();
    all.extend(names.iter().map(|n| (n.as_str(), "on")));
    let (status, _, html) = create(&server, &root, &all).await;
    assert_eq!(status, 200);
    let sandbox = shown_key(&html);
    assert_key_format(&sandbox, "sk", "test");
    assert_eq!(authtest(&server, &sandbox).await, 200);

    // Rotate with an hour of grace: the new key works, and so does the old one meanwhile.
    let (status, headers, html) = post_action(
        &server,
        &root,
        &row.id,
        "rotate",
        &[("grace_period_seconds", "3600")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(headers["cache-control"], "no-store");
    let second = shown_key(&html);
    assert_key_format(&second, "rk", "live");
    assert_ne!(second, key);
    assert!(html.contains("was rotated"));
    assert_eq!(authtest(&server, &second).await, 200);
    assert_eq!(
        authtest(&server, &key).await,
        200,
        "the old key works during its grace"
    );
    let (_, _, html) = root.get(&server.url(PAGE)).await;
    assert!(
        html.contains("Rotated to"),
        "the list says the old key was rotated"
    );
    assert!(!html.contains(&second));
    // A rotated key cannot be rotated again: a 409 on the page, nothing changed.
    let (status, _, html) = post_action(&server, &root, &row.id, "rotate", &[]).await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("already rotated"));

    // Rotate without grace: the previous key stops at once.
    let second_id = keys_of(&server, &org)
        .await
        .into_iter()
        .find(|k| k.rotated_to.is_none() && k.environment == "live")
        .unwrap()
        .id;
    let (status, _, html) = post_action(
        &server,
        &root,
        &second_id,
        "rotate",
        &[("grace_period_seconds", "0")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let third = shown_key(&html);
    assert_eq!(authtest(&server, &third).await, 200);
    assert_eq!(authtest(&server, &second).await, 401, "no grace");

    // Revoke: POST-redirect-GET, and the key is refused by /v1 at once; the list hides it.
    let third_row = keys_of(&server, &org)
        .await
        .into_iter()
        .find(|k| k.rotated_to.is_none() && k.environment == "live")
        .unwrap();
    let (status, headers, _) = post_action(&server, &root, &third_row.id, "revoke", &[]).await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"],
        server.url("/dashboard/api-keys?revoked=1").as_str()
    );
    assert_eq!(authtest(&server, &third).await, 401);
    let (_, _, html) = root.get(&server.url("/dashboard/api-keys?revoked=1")).await;
    assert!(html.contains("was revoked"));
    assert!(!html.contains(&third_row.id), "revoked keys are hidden");
    // Revoking it again: 404.
    let (status, _, _) = post_action(&server, &root, &third_row.id, "revoke", &[]).await;
    assert_eq!(status, 404);
    // Every change is in the audit log, by the signed-in admin, from the browser's address.
    let org_id = org.clone();
    let log = server
        .state
        .store
        .run(move |c| latchkey::store::audit::list(c, &org_id, None, 100))
        .await
        .unwrap()
        .unwrap();
    let by_root: Vec<&str> = log
        .iter()
        .filter(|e| e.actor == format!("user:{root_id}"))
        .map(|e| e.action.as_str())
        .collect();
    for action in ["api_key.created", "api_key.rotated", "api_key.revoked"] {
        assert!(by_root.contains(&action), "{action} in {by_root:?}");
    }
    assert!(log
        .iter()
        .all(|e| e.actor != format!("user:{root_id}") || e.ip.as_deref() == Some("127.0.0.1")));
}

#[actix_web::test]
async fn a_forged_or_missing_csrf_token_changes_nothing() {
    let (server, org, _) = server().await;
    let root = signed_in(&server, "root", "correct horse battery").await;
    let (_, _, html) = create(&server, &root, &[("name", "one"), ("scope_read", "on")]).await;
    let key = shown_key(&html);
    let id = keys_of(&server, &org).await[0].id.clone();

    // Another browser of the same admin holds a valid token for its own session only.
    let other = signed_in(&server, "root", "correct horse battery").await;
    let (_, _, other_html) = other.get(&server.url(PAGE)).await;
    let foreign = field(&other_html, "csrf_token");
    let forged = latchkey::crypto::random_base62(43);
    for token in [None, Some(forged.as_str()), Some(foreign.as_str())] {
        let with = |mut f: Vec<(&'static str, String)>| {
            if let Some(t) = token {
                f.push(("csrf_token", t.to_string()));
            }
            f
        };
        let attempts = [
            (
                PAGE.to_string(),
                with(vec![("name", "evil".into()), ("scope_read", "on".into())]),
            ),
            (
                format!("{PAGE}/{id}/rotate"),
                with(vec![("grace_period_seconds", "0".into())]),
            ),
            (format!("{PAGE}/{id}/revoke"), with(vec![])),
        ];
        for (path, form) in attempts {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, html) = root.post(&server.url(&path), &form).await;
            assert_eq!(status, 403, "{path} with {token:?}");
            assert!(html.contains("expired"), "{html}");
        }
    }
    let keys = keys_of(&server, &org).await;
    assert_eq!(keys.len(), 1, "nothing created");
    assert!(keys[0].rotated_to.is_none(), "nothing rotated");
    assert_eq!(authtest(&server, &key).await, 200, "nothing revoked");
}

#[actix_web::test]
async fn another_organizations_key_is_not_found_and_bad_input_is_a_400_page() {
    let (server, org, _) = server().await;
    server.org("globex");
    let theirs = server.cli_json(&[
        "api-key", "create", "--org", "globex", "--env", "live", "--scopes", "read",
    ]);
    let (their_id, their_key) = (
        theirs["id"].as_str().unwrap().to_string(),
        theirs["api_key"].as_str().unwrap().to_string(),
    );
    let root = signed_in(&server, "root", "correct horse battery").await;
    for action in ["rotate", "revoke"] {
        let (status, _, html) = post_action(&server, &root, &their_id, action, &[]).await;
        assert_eq!(status, 404, "{action}: {html}");
        assert!(html.contains("No such key"));
    }
    let (status, _, _) = post_action(&server, &root, "key_doesnotexist", "revoke", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        authtest(&server, &their_key).await,
        200,
        "their key still works"
    );
    let listed = server.cli_json(&["api-key", "list", "--org", "globex"]);
    assert!(listed[0]["rotated_to"].is_null());

    // Bad input: a 400 page with the error beside the form, what was typed kept; no key.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("name", ""), ("scope_read", "on")],
            "name must be 1 to 200 characters",
        ),
        (
            &[("name", "   "), ("scope_read", "on")],
            "name must not be only whitespace",
        ),
        (&[("name", "no scopes")], "scopes must name at least one"),
        (
            &[
                ("name", "bad ip"),
                ("scope_read", "on"),
                ("allowed_ips", "10.0.0.300/8"),
            ],
            "is not an IP address or CIDR",
        ),
        (
            &[
                ("name", "past"),
                ("scope_read", "on"),
                ("expires_at", "2001-01-01"),
            ],
            "expires_at must be in the future",
        ),
        (
            &[
                ("name", "not a date"),
                ("scope_read", "on"),
                ("expires_at", "tomorrow"),
            ],
            "must be a date such as",
        ),
        (
            &[
                ("name", "odd env"),
                ("scope_read", "on"),
                ("environment", "staging"),
            ],
            "environment must be live or sandbox",
        ),
    ];
    for (fields, error) in cases {
        let (status, headers, html) = create(&server, &root, fields).await;
        assert_eq!(status, 400, "{fields:?}: {html}");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(html.contains(error), "{fields:?} shows {error:?}: {html}");
        assert!(html.contains(r#"role="alert""#));
        assert!(!html.contains(r#"name="api_key""#));
    }
    let long = "x".repeat(201);
    let (status, _, html) = create(&server, &root, &[("name", &long), ("scope_read", "on")]).await;
    assert_eq!(status, 400);
    assert!(html.contains(&long), "the name typed is kept");
    assert!(keys_of(&server, &org).await.is_empty(), "nothing created");

    // A bad grace period: 400, the key not rotated.
    let (_, _, html) = create(&server, &root, &[("name", "ok"), ("scope_read", "on")]).await;
    let key = shown_key(&html);
    let id = keys_of(&server, &org).await[0].id.clone();
    for grace in ["soon", "-1", "99999999"] {
        let (status, _, html) = post_action(
            &server,
            &root,
            &id,
            "rotate",
            &[("grace_period_seconds", grace)],
        )
        .await;
        assert_eq!(status, 400, "{grace}: {html}");
        assert!(html.contains("grace period") || html.contains("grace_period_seconds"));
    }
    // A form that is not a form (a repeated field): 400, never a 500.
    let (_, _, page) = root.get(&server.url(PAGE)).await;
    let token = field(&page, "csrf_token");
    let (status, _, _) = root
        .post(
            &server.url(PAGE),
            &[("csrf_token", &token), ("name", "a"), ("name", "b")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(keys_of(&server, &org).await[0].rotated_to.is_none());
    assert_eq!(authtest(&server, &key).await, 200);
}
