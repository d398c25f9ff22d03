//! The authorization-code flow over real HTTP with a cookie jar: login → consent → code →
//! tokens (PKCE) → refresh rotation, and the attacker's side of every step.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::Value;

const CB: &str = "https://app.acme.test/cb";

struct Flow {
    server: TestServer,
    web: (String, String),
    user_id: String,
}

async fn flow() -> Flow {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let c = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "Acme Notes",
        "--grant-types",
        "authorization_code,refresh_token",
        "--redirect-uri",
        CB,
        "--scopes",
        "openid profile offline_access read write",
    ]);
    let user = server.person("acme", "ada", "analytical engine", &[]);
    Flow {
        web: (
            c["client_id"].as_str().unwrap().into(),
            c["client_secret"].as_str().unwrap().into(),
        ),
        user_id: user["id"].as_str().unwrap().into(),
        server,
    }
}

/// A second code-flow client of the organization, with the same redirect URI (the CLI's JSON,
/// secret included).
fn other_client(f: &Flow, extra: &[&str]) -> Value {
    let mut args = vec![
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "Other",
        "--grant-types",
        "authorization_code,refresh_token",
        "--redirect-uri",
        CB,
    ];
    args.extend_from_slice(extra);
    f.server.cli_json(&args)
}

fn pkce() -> (String, String) {
    let verifier = latchkey::crypto::random_base62(64);
    let challenge = URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

fn authorize_url(f: &Flow, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", client_id);
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    f.server.url(&format!("/oauth2/authorize?{}", q.finish()))
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Logs `browser` in as ada through the redirect that authorize answers with, and returns
/// where the login sends it back to.
async fn login_via(f: &Flow, browser: &Browser, authorize: &str) -> String {
    login_as(f, browser, authorize, "ada", "analytical engine").await
}

/// Signs `username` in at the login page that `authorize` redirects to; returns where the
/// login sends the browser back to.
async fn login_as(
    f: &Flow,
    browser: &Browser,
    authorize: &str,
    username: &str,
    password: &str,
) -> String {
    let (status, headers, _) = browser.get(authorize).await;
    assert_eq!(status, 303);
    let login = headers["location"].to_str().unwrap().to_string();
    assert!(
        login.starts_with(&f.server.url("/login?return_to=")),
        "{login}"
    );
    let (_, _, html) = browser.get(&login).await;
    let (status, headers, _) = browser
        .post(
            &f.server.url("/login"),
            &[
                ("csrf_token", &field(&html, "csrf_token")),
                ("return_to", &field(&html, "return_to")),
                ("username", username),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(status, 303);
    headers["location"].to_str().unwrap().to_string()
}

/// Submits the consent page shown at `url` with `decision`; returns the redirect.
async fn decide(f: &Flow, browser: &Browser, url: &str, decision: &str) -> String {
    let (status, _, html) = browser.get(url).await;
    assert_eq!(status, 200, "{html}");
    let form = consent_answer(&html, decision);
    let res = browser
        .http
        .post(f.server.url("/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{:?}", res.text().await);
    res.headers()["location"].to_str().unwrap().to_string()
}

async fn redeem(f: &Flow, client: (&str, &str), code: &str, verifier: &str) -> (u16, Value) {
    let res = http()
        .post(f.server.url("/oauth2/token"))
        .basic_auth(client.0, Some(client.1))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn refresh(f: &Flow, token: &str) -> (u16, Value) {
    let res = http()
        .post(f.server.url("/oauth2/token"))
        .basic_auth(&f.web.0, Some(&f.web.1))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[actix_web::test]
async fn login_consent_code_tokens_refresh_and_a_replayed_code_revokes_everything() {
    let f = flow().await;
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &f,
        &f.web.0,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "openid offline_access read"),
            ("state", "st-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("nonce", "n-1"),
        ],
    );
    let back = login_via(&f, &browser, &url).await;
    assert!(back.starts_with(&f.server.url("/oauth2/authorize?")));
    let (_, _, consent) = browser.get(&back).await;
    assert!(
        consent.contains("Acme Notes")
            && consent.contains("Read your data")
            && consent.contains("Confirm who you are")
    );
    assert!(
        consent.contains(r#"name="decision" value="allow""#)
            && consent.contains(r#"name="decision" value="deny""#)
    );
    let redirect = decide(&f, &browser, &back, "allow").await;
    assert!(redirect.starts_with(CB));
    let q = query_of(&redirect);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], f.server.issuer, "RFC 9207");
    let code = q["code"].clone();

    let (status, tokens) = redeem(&f, (&f.web.0, &f.web.1), &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("offline_access granted: a refresh token")
        .to_string();
    let claims = jwt_payload(&access);
    assert_eq!(claims["sub"], f.user_id.as_str());
    assert_eq!(claims["scope"], "offline_access openid read");
    // The ID token verifies against the JWKS (RS256 by default) and carries nonce and at_hash.
    let id_token = tokens["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwks: jsonwebtoken::jwk::JwkSet = get_json(&f.server.url("/jwks.json")).await;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[&f.web.0]);
    v.set_issuer(&[&f.server.issuer]);
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap();
    let id = jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sub"], f.user_id.as_str());
    let digest = ring::digest::digest(&ring::digest::SHA256, access.as_bytes());
    assert_eq!(
        id["at_hash"],
        URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
    );
    assert!(id["auth_time"].is_i64());
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &access).await["active"],
        true
    );

    // A second redemption: refused, and what the first one issued is revoked.
    let (status, err) = redeem(&f, (&f.web.0, &f.web.1), &code, &verifier).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &access).await["active"],
        false,
        "its access token"
    );
    assert_eq!(
        refresh(&f, &refresh_token).await.0,
        400,
        "its refresh family"
    );

    // Consent is remembered: a subset skips the page, straight back with a code.
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &f,
        &f.web.0,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "read offline_access"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let (status, headers, _) = browser.get(&url).await;
    assert_eq!(status, 303);
    let code = query_of(headers["location"].to_str().unwrap())["code"].clone();
    let (_, tokens) = redeem(&f, (&f.web.0, &f.web.1), &code, &verifier).await;
    assert!(tokens.get("id_token").is_none(), "no openid, no ID token");
    let code_access = tokens["access_token"].as_str().unwrap().to_string();

    // Refresh rotation; a narrower scope for the new access token only; reuse revokes the family.
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let res = http()
        .post(f.server.url("/oauth2/token"))
        .basic_auth(&f.web.0, Some(&f.web.1))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", first.as_str()),
            ("scope", "read"),
        ])
        .send()
        .await
        .unwrap();
    let rotated: Value = res.json().await.unwrap();
    assert_eq!(rotated["scope"], "read");
    let second = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let (status, again) = refresh(&f, &second).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["scope"], "offline_access read",
        "the family keeps its grant"
    );
    let third = again["refresh_token"].as_str().unwrap().to_string();
    let refreshed_access = again["access_token"].as_str().unwrap().to_string();
    let active = |token: String| {
        let f = &f;
        async move { f.server.introspect(&f.web.0, &f.web.1, &token).await["active"] == true }
    };
    assert!(active(code_access.clone()).await && active(refreshed_access.clone()).await);
    let (status, err) = refresh(&f, &first).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "reuse of a rotated token"
    );
    assert_eq!(
        refresh(&f, &third).await.0,
        400,
        "the whole family is revoked"
    );
    // ... and the access tokens it issued, the code's and the refreshes' (RFC 9700 §4.14).
    assert!(!active(code_access).await, "the code's access token");
    assert!(!active(refreshed_access).await, "a refresh's access token");
}

#[actix_web::test]
async fn bad_authorization_requests_never_redirect_before_the_client_and_uri_are_known() {
    let f = flow().await;
    let (_, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s"),
    ];
    for uri in [
        "https://app.acme.test/cb/",
        "https://app.acme.test:8443/cb",
        "https://app.acme.test/cb/extra",
        "https://evil@app.acme.test/cb",
        "https://APP.acme.test/cb",
        "https://app.acme.test/cb?x=1",
        "https://app.acme.test/cb#f",
        "https://evil.example/cb",
    ] {
        let mut params = base.to_vec();
        params.push(("redirect_uri", uri));
        let res = http()
            .get(authorize_url(&f, &f.web.0, &params))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{uri}");
        assert!(
            res.headers().get("location").is_none(),
            "{uri}: never redirects"
        );
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let mut params = base.to_vec();
    params.push(("redirect_uri", CB));
    let res = http()
        .get(authorize_url(&f, "no-such-client", &params))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("No application is registered with this client_id."));
    // No client_id at all: the page says that, not that an unknown one was named.
    let res = http()
        .get(f.server.url("/oauth2/authorize?response_type=code"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("The request names no client_id."));
}

#[actix_web::test]
async fn errors_after_that_go_back_to_the_client_with_state_and_iss() {
    let f = flow().await;
    let (_, challenge) = pkce();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("response_type", "token"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
            "unsupported_response_type",
        ),
        (vec![("response_type", "code")], "invalid_request"),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            vec![("response_type", "code"), ("code_challenge", &challenge)],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("scope", "admin"),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
            "login_required",
        ),
        // Request objects are refused with their own error codes, not ignored (OIDC §6).
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("request", "eyJhbGciOiJub25lIn0.e30."),
            ],
            "request_not_supported",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("request_uri", "https://evil.example/req"),
            ],
            "request_uri_not_supported",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("response_mode", "form_post"),
            ],
            "invalid_request",
        ),
        // RFC 8707: a resource the client did not register is refused at once.
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("resource", "https://evil.test"),
            ],
            "invalid_target",
        ),
    ];
    for (mut params, error) in cases {
        params.push(("redirect_uri", CB));
        params.push(("state", "keep-me"));
        let res = http()
            .get(authorize_url(&f, &f.web.0, &params))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{error}");
        let q = query_of(res.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], error);
        assert_eq!(q["state"], "keep-me");
        assert_eq!(q["iss"], f.server.issuer);
    }
}

#[actix_web::test]
async fn codes_are_bound_to_their_client_and_verifier_and_consent_needs_its_csrf_token() {
    let f = flow().await;
    let other = other_client(&f, &[]);
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &f,
        &f.web.0,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "read"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let back = login_via(&f, &browser, &url).await;

    // Consent CSRF: a forged token is refused, no code.
    let res = browser
        .http
        .post(f.server.url("/oauth2/authorize"))
        .form(&[
            ("csrf_token", "forged"),
            ("client_id", f.web.0.as_str()),
            ("redirect_uri", CB),
            ("response_type", "code"),
            ("scope", "read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Deny: access_denied.
    let denied = decide(&f, &browser, &back, "deny").await;
    assert_eq!(query_of(&denied)["error"], "access_denied");

    let code = query_of(&decide(&f, &browser, &back, "allow").await)["code"].clone();
    let other_creds = (
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
    );
    let (status, err) = redeem(&f, other_creds, &code, &verifier).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "client B with A's code"
    );
    let (_, wrong) = pkce();
    assert_eq!(
        redeem(&f, (&f.web.0, &f.web.1), &code, &wrong).await.0,
        400,
        "a wrong verifier"
    );
    let (status, tokens) = redeem(&f, (&f.web.0, &f.web.1), &code, &verifier).await;
    assert_eq!(status, 200, "neither attempt burned the code");

    // Client B with A's refresh token: refused, and A's token is left untouched.
    let stolen = tokens["refresh_token"].as_str().expect("a refresh token");
    let res = http()
        .post(f.server.url("/oauth2/token"))
        .basic_auth(other_creds.0, Some(other_creds.1))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", stolen)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(
        err["error"], "invalid_grant",
        "client B with A's refresh token"
    );
    assert_eq!(
        refresh(&f, stolen).await.0,
        200,
        "A's refresh token still works"
    );
}

#[actix_web::test]
async fn a_person_of_another_organization_gets_no_code() {
    let f = flow().await;
    f.server.org("globex");
    f.server.person("globex", "eve", "eavesdropper", &[]);
    let browser = Browser::new();
    let (status, _, _) = browser.login(&f.server, "eve", "eavesdropper").await;
    assert_eq!(status, 303);
    let (_, challenge) = pkce();
    let url = authorize_url(
        &f,
        &f.web.0,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let (status, headers, _) = browser.get(&url).await;
    assert_eq!(
        status, 303,
        "the client and URI are good: the error goes back to it"
    );
    let q = query_of(headers["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
}

#[actix_web::test]
async fn rp_initiated_logout_ends_the_session_and_returns_only_to_a_registered_uri() {
    let f = flow().await;
    f.server.cli_json(&[
        "client",
        "update",
        &f.web.0,
        "--post-logout-redirect-uri",
        "https://app.acme.test/bye",
    ]);
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &f,
        &f.web.0,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let back = login_via(&f, &browser, &url).await;
    let code = query_of(&decide(&f, &browser, &back, "allow").await)["code"].clone();
    let (_, tokens) = redeem(&f, (&f.web.0, &f.web.1), &code, &verifier).await;
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let logout = |extra: &[(&str, &str)]| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        f.server.url(&format!("/logout?{}", q.finish()))
    };

    // An unregistered post_logout_redirect_uri: refused, no redirect, still signed in.
    let (status, headers, _) = browser
        .get(&logout(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]))
        .await;
    assert_eq!(status, 400);
    assert!(headers.get("location").is_none());
    assert_eq!(browser.get(&f.server.url("/")).await.0, 200);
    // A forged hint: only the confirmation page.
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    let (status, _, html) = browser
        .get(&logout(&[
            ("id_token_hint", &forged),
            ("post_logout_redirect_uri", "https://app.acme.test/bye"),
        ]))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign out?") && html.contains("csrf_token"));
    assert_eq!(
        browser.get(&f.server.url("/")).await.0,
        200,
        "nothing ended without confirmation"
    );

    // A client_id that is not the hint's audience (another client of the organization with
    // the same logout URI, or none): refused, nothing ends, no redirect.
    let other = other_client(
        &f,
        &["--post-logout-redirect-uri", "https://app.acme.test/bye"],
    )["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    for client_id in [other.as_str(), "nonexistent"] {
        let (status, headers, _) = browser
            .get(&logout(&[
                ("id_token_hint", &id_token),
                ("client_id", client_id),
                ("post_logout_redirect_uri", "https://app.acme.test/bye"),
            ]))
            .await;
        assert_eq!(status, 400, "client_id {client_id}");
        assert!(headers.get("location").is_none());
        assert_eq!(
            browser.get(&f.server.url("/")).await.0,
            200,
            "still signed in"
        );
    }

    // The real hint (with its own client_id): signed out, back to the registered URI with
    // state.
    let (status, headers, _) = browser
        .get(&logout(&[
            ("id_token_hint", &id_token),
            ("client_id", &f.web.0),
            ("post_logout_redirect_uri", "https://app.acme.test/bye"),
            ("state", "bye-1"),
        ]))
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "https://app.acme.test/bye?state=bye-1");
    assert_eq!(
        browser.get(&f.server.url("/")).await.0,
        303,
        "the session is over"
    );
    let doc: Value = get_json(&f.server.url("/.well-known/openid-configuration")).await;
    assert_eq!(doc["end_session_endpoint"], f.server.url("/logout"));
    // Not supported, and said so (Discovery §3 would default request_uri support to true).
    assert_eq!(doc["request_parameter_supported"], false);
    assert_eq!(doc["request_uri_parameter_supported"], false);
}

#[actix_web::test]
async fn a_single_page_app_may_call_the_token_endpoint_cross_origin_and_nobody_else_may() {
    let f = flow().await;
    f.server.cli_json(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "SPA",
        "--grant-types",
        "authorization_code,refresh_token",
        "--redirect-uri",
        "https://spa.acme.test/callback",
        "--public",
    ]);
    for path in ["/oauth2/token", "/oauth2/revoke", "/userinfo"] {
        let res = http()
            .request(reqwest::Method::OPTIONS, f.server.url(path))
            .header("origin", "https://spa.acme.test")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{path}");
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://spa.acme.test"
        );
        for evil in [
            "https://evil.example",
            "https://spa.acme.test.evil.example",
            "https://spa.acme.test/callback",
            "null",
        ] {
            let res = http()
                .request(reqwest::Method::OPTIONS, f.server.url(path))
                .header("origin", evil)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap();
            assert!(
                res.headers().get("access-control-allow-origin").is_none(),
                "{path} from {evil}"
            );
        }
    }
    // The actual request carries the header for the registered origin only.
    let res = http()
        .post(f.server.url("/oauth2/token"))
        .header("origin", "https://spa.acme.test")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "nope"),
            ("client_id", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://spa.acme.test"
    );
    let res = http()
        .post(f.server.url("/oauth2/token"))
        .header("origin", "https://evil.example")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "nope"),
            ("client_id", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // Discovery and the JWKS answer any origin.
    let res = http()
        .get(f.server.url("/.well-known/openid-configuration"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

#[actix_web::test]
async fn prompt_login_consent_still_asks_for_consent_after_the_login() {
    let f = flow().await;
    let browser = Browser::new();
    let (_, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "read"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // Consent once.
    let back = login_via(&f, &browser, &authorize_url(&f, &f.web.0, &params)).await;
    decide(&f, &browser, &back, "allow").await;
    // Now prompt=login consent: a fresh login, and the consent page even though it is remembered.
    let mut with_prompt = params.to_vec();
    with_prompt.push(("prompt", "login consent"));
    with_prompt.push(("max_age", "0"));
    let back = login_via(&f, &browser, &authorize_url(&f, &f.web.0, &with_prompt)).await;
    let (status, _, html) = browser.get(&back).await;
    assert_eq!(status, 200, "no loop back to the login page with max_age=0");
    assert!(
        html.contains(r#"name="decision" value="allow""#),
        "prompt=consent survives the login"
    );
}

/// Signs ada in, consents and redeems: (browser, refresh token, the authorize URL used).
async fn signed_in_with_refresh(f: &Flow) -> (Browser, String, String) {
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        f,
        &f.web.0,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "offline_access read"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let back = login_via(f, &browser, &url).await;
    let redirect = decide(f, &browser, &back, "allow").await;
    let code = query_of(&redirect)["code"].clone();
    let (status, tokens) = redeem(f, (&f.web.0, &f.web.1), &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    (browser, rt, url)
}

fn consents_of(f: &Flow) -> i64 {
    use diesel::prelude::*;
    use latchkey::store::schema::consents::dsl as cs;
    let mut conn = f.server.state.store.conn().unwrap();
    cs::consents.count().get_result(&mut conn).unwrap()
}

#[actix_web::test]
async fn deleting_a_person_over_v1_ends_their_sessions_refresh_tokens_and_consents() {
    let f = flow().await;
    let (browser, rt, url) = signed_in_with_refresh(&f).await;
    assert_eq!(consents_of(&f), 1);
    // The login and the consent are in the audit log, by the person.
    let uid = f.user_id.clone();
    let events = f
        .server
        .state
        .store
        .run(move |c| {
            use diesel::prelude::*;
            use latchkey::store::schema::audit_events::dsl as a;
            Ok(a::audit_events
                .filter(a::actor.eq(format!("user:{uid}")))
                .select(a::action)
                .load::<String>(c)?)
        })
        .await
        .unwrap();
    assert!(
        events.contains(&"login.succeeded".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"consent.granted".to_string()),
        "{events:?}"
    );
    // A refresh now, so that the family has an access token out when the person goes.
    let (status, rotated) = refresh(&f, &rt).await;
    assert_eq!(status, 200, "{rotated}");
    let (rt, access) = (
        rotated["refresh_token"].as_str().unwrap().to_string(),
        rotated["access_token"].as_str().unwrap().to_string(),
    );
    let (_, admin) = cli_key(&f.server, "acme", "live", ALL, &[]);
    let gone = v1(
        &f.server,
        "DELETE",
        &format!("/v1/users/{}", f.user_id),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(gone.0, 200, "{}", gone.2);
    let (status, body) = refresh(&f, &rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &access).await["active"],
        false,
        "the person's access tokens went with their refresh families"
    );
    assert_eq!(consents_of(&f), 0);
    // The browser's session ended: authorize asks for a login again.
    let (status, headers, _) = browser.get(&url).await;
    assert_eq!(status, 303);
    let location = headers["location"].to_str().unwrap();
    assert!(location.starts_with(&f.server.url("/login?")), "{location}");
}

#[actix_web::test]
async fn deleting_a_client_over_v1_revokes_its_refresh_tokens_and_consents() {
    let f = flow().await;
    let (_browser, rt, _) = signed_in_with_refresh(&f).await;
    let (_, admin) = cli_key(&f.server, "acme", "live", ALL, &[]);
    let gone = v1(
        &f.server,
        "DELETE",
        &format!("/v1/clients/{}", f.web.0),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(gone.0, 200, "{}", gone.2);
    let (status, _) = refresh(&f, &rt).await;
    assert_eq!(status, 401, "the client is gone");
    assert_eq!(consents_of(&f), 0);
    use diesel::prelude::*;
    use latchkey::store::schema::refresh_families::dsl as rf;
    let mut conn = f.server.state.store.conn().unwrap();
    let live: i64 = rf::refresh_families
        .filter(rf::revoked_at.is_null())
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(live, 0, "no refresh family of the client is left live");
}

#[actix_web::test]
async fn revoking_a_refresh_token_revokes_the_access_tokens_its_family_issued() {
    let f = flow().await;
    let (_, first, _) = signed_in_with_refresh(&f).await;
    let (status, rotated) = refresh(&f, &first).await;
    assert_eq!(status, 200, "{rotated}");
    let access = rotated["access_token"].as_str().unwrap().to_string();
    let live = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &access).await["active"],
        true
    );
    // Another client revoking it changes nothing (RFC 7009 §2.1: only its own tokens).
    let other = other_client(&f, &[]);
    let revoke = |id: String, secret: String| {
        let (url, live) = (f.server.url("/oauth2/revoke"), live.clone());
        async move {
            http()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[
                    ("token", live.as_str()),
                    ("token_type_hint", "refresh_token"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let other_id = other["client_id"].as_str().unwrap().to_string();
    let other_secret = other["client_secret"].as_str().unwrap().to_string();
    assert_eq!(revoke(other_id, other_secret).await, 200);
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &access).await["active"],
        true,
        "another client's revocation is ignored"
    );
    // The owner revokes the refresh token: its family and the family's access tokens go.
    assert_eq!(revoke(f.web.0.clone(), f.web.1.clone()).await, 200);
    assert_eq!(refresh(&f, &live).await.0, 400);
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &access).await["active"],
        false,
        "RFC 7009 §2.1: the access token of the same grant"
    );
    let res = http()
        .get(f.server.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn a_live_refresh_token_introspects_to_its_own_client_only() {
    let f = flow().await;
    let (_, first, _) = signed_in_with_refresh(&f).await;
    let got = f.server.introspect(&f.web.0, &f.web.1, &first).await;
    assert_eq!(got["active"], true, "{got}");
    assert_eq!(got["client_id"], f.web.0.as_str());
    assert_eq!(got["sub"], f.user_id.as_str());
    assert_eq!(got["scope"], "offline_access read");
    assert!(got["exp"].as_i64().unwrap() > got["iat"].as_i64().unwrap());
    assert!(got.get("token_type").is_none(), "{got}");
    // Another client of the organization, even a confidential one, learns nothing.
    let other = f.server.cli_json(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "Resource server",
        "--grant-types",
        "client_credentials",
    ]);
    let (oid, osecret) = (
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
    );
    assert_eq!(
        f.server.introspect(oid, osecret, &first).await,
        serde_json::json!({"active": false})
    );
    // Rotated: the old one is no longer live, its successor is.
    let (_, rotated) = refresh(&f, &first).await;
    let second = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &first).await,
        serde_json::json!({"active": false}),
        "a rotated refresh token"
    );
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &second).await["active"],
        true
    );
    // A token of the right shape that was never issued.
    let made_up = "A".repeat(43);
    assert_eq!(
        f.server.introspect(&f.web.0, &f.web.1, &made_up).await,
        serde_json::json!({"active": false})
    );
}

#[actix_web::test]
async fn an_authorization_request_may_come_as_a_post_form() {
    let f = flow().await;
    let (browser, _, _) = signed_in_with_refresh(&f).await;
    let (verifier, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", f.web.0.as_str()),
        ("redirect_uri", CB),
        ("scope", "read"),
        ("state", "posted"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let authorize = f.server.url("/oauth2/authorize");
    // Signed in, consent already given for more: straight back with a code that redeems.
    let (status, headers, body) = browser.post(&authorize, &params).await;
    assert_eq!(status, 303, "{body}");
    let q = query_of(headers["location"].to_str().unwrap());
    assert_eq!(q["state"], "posted");
    assert_eq!(q["iss"], f.server.issuer);
    let (status, tokens) = redeem(&f, (&f.web.0, &f.web.1), &q["code"], &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    // Not signed in: to the login page, like the GET.
    let (status, headers, _) = Browser::new().post(&authorize, &params).await;
    assert_eq!(status, 303);
    let location = headers["location"].to_str().unwrap();
    assert!(location.starts_with(&f.server.url("/login?")), "{location}");
    // The same rules as the GET: an unregistered redirect URI is an error page, no redirect.
    let mut bad = params.to_vec();
    bad[2] = ("redirect_uri", "https://evil.example/cb");
    let (status, headers, _) = browser.post(&authorize, &bad).await;
    assert_eq!(status, 400);
    assert!(headers.get("location").is_none());
}

#[actix_web::test]
async fn a_person_who_is_not_an_admin_is_never_granted_admin_scopes() {
    // SPEC §4: a person who is not an admin never holds `admin`, `*:manage` or `audit:read`,
    // whatever a (first-party) client asks for; an admin does.
    let f = flow().await;
    f.server
        .person("acme", "grace", "compiler pioneer", &["--admin"]);
    let v1_aud = format!("{}/v1", f.server.issuer);
    let console = other_client(
        &f,
        &[
            "--skip-consent",
            "--scopes",
            "openid read admin keys:manage clients:manage users:manage audit:read",
            "--audience",
            &v1_aud,
        ],
    );
    let console = (
        console["client_id"].as_str().unwrap().to_string(),
        console["client_secret"].as_str().unwrap().to_string(),
    );
    let asked = "openid read admin keys:manage clients:manage users:manage audit:read";
    let mut granted = Vec::new();
    for (username, password) in [("ada", "analytical engine"), ("grace", "compiler pioneer")] {
        let browser = Browser::new();
        let (verifier, challenge) = pkce();
        let url = authorize_url(
            &f,
            &console.0,
            &[
                ("response_type", "code"),
                ("redirect_uri", CB),
                ("scope", asked),
                ("resource", &v1_aud),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        // First-party: no consent page, straight back with a code.
        let back = login_as(&f, &browser, &url, username, password).await;
        let (status, headers, _) = browser.get(&back).await;
        assert_eq!(status, 303);
        let redirect = headers["location"].to_str().unwrap().to_string();
        let code = query_of(&redirect)["code"].clone();
        let (status, tokens) = redeem(&f, (&console.0, &console.1), &code, &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let at = tokens["access_token"].as_str().unwrap().to_string();
        let claim = jwt_payload(&at)["scope"].as_str().unwrap().to_string();
        let intro = f.server.introspect(&console.0, &console.1, &at).await;
        assert_eq!(intro["active"], true, "{intro}");
        assert_eq!(tokens["scope"].as_str().unwrap(), claim, "{username}");
        assert_eq!(intro["scope"].as_str().unwrap(), claim, "{username}");
        let keys = v1(&f.server, "GET", "/v1/api-keys", Some(&at), None).await;
        granted.push((claim, keys.0));
    }
    // ada holds what a person may hold, and /v1's key routes stay closed to her.
    assert_eq!(granted[0].0, "openid read");
    assert_eq!(granted[0].1, 403);
    // grace, an admin, holds everything asked for and uses it.
    assert_eq!(
        granted[1].0,
        "admin audit:read clients:manage keys:manage openid read users:manage"
    );
    assert_eq!(granted[1].1, 200);
}
