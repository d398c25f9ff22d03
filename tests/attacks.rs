//! The token, introspection and revocation endpoints from the attacker's side: stolen or
//! mixed-up credentials, forged tokens, escalation, forged headers and malformed bodies.
//! Nothing here may answer 500, and nothing forged may be active.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("errors are JSON");
    (status, body)
}

#[actix_web::test]
async fn stolen_mixed_up_and_misplaced_client_credentials_are_refused() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (a, a_secret) = server.cc_client(&org, &[]);
    let (b, _) = server.cc_client(&org, &[]);
    let (post, post_secret) = server.cc_client(&org, &["--auth-method", "client_secret_post"]);

    let (status, wrong) = error_of(server.token(&a, "not-the-secret", &[]).await).await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Another client's id with A's secret, and an unknown id, look exactly like a wrong secret.
    let (status, other) = error_of(server.token(&b, &a_secret, &[]).await).await;
    assert_eq!(status, 401);
    assert_eq!(other, wrong);
    let (_, unknown) = error_of(server.token("no-such-client", &a_secret, &[]).await).await;
    assert_eq!(unknown, wrong);

    let res = server.token(&a, "nope", &[]).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        "Basic realm=\"latchkey\""
    );
    assert_eq!(res.headers()["cache-control"], "no-store");

    // A method other than the registered one.
    let (status, body) = error_of(server.token(&post, &post_secret, &[]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "post client over Basic"
    );
    let res = http()
        .post(server.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", a.as_str()),
            ("client_secret", a_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "basic client in the body");

    // Credentials in two places at once.
    let res = http()
        .post(server.url("/oauth2/token"))
        .basic_auth(&a, Some(&a_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", a.as_str()),
            ("client_secret", a_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // No authentication, another scheme, garbage Basic.
    let res = http()
        .post(server.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    for auth in ["Bearer abc", "Basic !!!", "Basic Zm9v"] {
        let res = http()
            .post(server.url("/oauth2/token"))
            .header("authorization", auth)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{auth}");
    }
}

#[actix_web::test]
async fn clients_get_only_the_grants_scopes_and_audiences_they_registered() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &["--audience", "https://api.acme.test"]);

    let (status, body) =
        error_of(server.token(&id, &secret, &[("scope", "read admin")]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("admin"));
    let (_, body) = error_of(server.token(&id, &secret, &[("scope", "read \"x")]).await).await;
    assert_eq!(body["error"], "invalid_scope");

    for resource in [
        "https://evil.test",
        "https://api.acme.test/other",
        "relative/path",
        "https://api.acme.test#frag",
    ] {
        let (status, body) =
            error_of(server.token(&id, &secret, &[("resource", resource)]).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{resource}"
        );
    }

    // A confidential client registered for the code flow only.
    let c = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "web",
        "--grant-types",
        "authorization_code",
        "--redirect-uri",
        "https://app.acme.test/cb",
    ]);
    let (status, body) = error_of(
        server
            .token(
                c["client_id"].as_str().unwrap(),
                c["client_secret"].as_str().unwrap(),
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // A public client has no credentials to trade.
    let p = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "spa",
        "--grant-types",
        "authorization_code",
        "--redirect-uri",
        "https://app.acme.test/cb",
        "--public",
    ]);
    let pid = p["client_id"].as_str().unwrap();
    assert!(p.get("client_secret").is_none());
    let res = http()
        .post(server.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", pid)])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // Grants this client did not register.
    for grant in ["authorization_code", "refresh_token"] {
        let res = http()
            .post(server.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", grant)])
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(res).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unauthorized_client")),
            "{grant}"
        );
    }

    // Grants that do not exist here.
    for grant in ["password", "urn:ietf:params:oauth:grant-type:device_code"] {
        let res = http()
            .post(server.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", grant)])
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(res).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type")),
            "{grant}"
        );
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[actix_web::test]
async fn forged_tampered_and_foreign_tokens_are_inactive() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    let jwt = server
        .access_token(&id, &secret, &[("scope", "read")])
        .await;
    assert_eq!(server.introspect(&id, &secret, &jwt).await["active"], true);
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();

    // alg: none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        parts[1]
    );
    // HS256 keyed with the public key (the classic algorithm confusion).
    let jwks: Value = get_json(&server.url("/jwks.json")).await;
    let public = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .to_string();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.to_string());
    hs_header.typ = Some("at+jwt".into());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &jwt_payload(&jwt),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    // A tampered payload under the original signature.
    let mut claims = jwt_payload(&jwt);
    claims["scope"] = json!("read write admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    // A key id we never issued.
    let unknown_kid = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"})),
        parts[1],
        parts[2]
    );
    // A JWT signed by our own key but not an access token (typ JWT, like an ID token).
    let plain_jwt = {
        let keys = server.state.keys.snapshot();
        let key = keys.signer(latchkey::keys::Alg::ES256, now()).unwrap();
        key.sign_jwt(&jwt_payload(&jwt)).unwrap()
    };

    for (token, what) in [
        (none.as_str(), "alg none"),
        (hs256.as_str(), "HS256 keyed with the public key"),
        (tampered.as_str(), "tampered payload"),
        (unknown_kid.as_str(), "unknown kid"),
        (plain_jwt.as_str(), "typ JWT"),
        ("not-a-jwt", "garbage"),
        ("a.b.c", "three garbage segments"),
    ] {
        assert_eq!(
            server.introspect(&id, &secret, token).await,
            json!({"active": false}),
            "{what}"
        );
    }

    // Another issuer sharing this very database and its keys.
    let other = TestServer::start_on(
        server.db.clone(),
        &[("LATCHKEY_ISSUER", "https://other-issuer.test")],
    )
    .await;
    let foreign = other.access_token(&id, &secret, &[]).await;
    assert_eq!(jwt_payload(&foreign)["iss"], "https://other-issuer.test");
    assert_eq!(
        server.introspect(&id, &secret, &foreign).await,
        json!({"active": false}),
        "another issuer"
    );

    // Another organization's client asking about this token.
    let org2 = server.org("globex");
    let (id2, secret2) = server.cc_client(&org2, &[]);
    assert_eq!(
        server.introspect(&id2, &secret2, &jwt).await,
        json!({"active": false}),
        "another organization"
    );

    // …and trying to revoke it: 200, and the token stays active.
    let res = http()
        .post(server.url("/oauth2/revoke"))
        .basic_auth(&id2, Some(&secret2))
        .form(&[("token", jwt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        server.introspect(&id, &secret, &jwt).await["active"],
        true,
        "another client cannot revoke it"
    );
    // Unknown tokens revoke with 200 too (RFC 7009 §2.2).
    let res = http()
        .post(server.url("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A public client may not introspect.
    let p = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "spa",
        "--grant-types",
        "authorization_code",
        "--redirect-uri",
        "https://a.test/cb",
        "--public",
    ]);
    let res = http()
        .post(server.url("/oauth2/introspect"))
        .form(&[
            ("token", jwt.as_str()),
            ("client_id", p["client_id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Introspection without a token parameter.
    let res = http()
        .post(server.url("/oauth2/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.1["error"], "invalid_request");
}

#[actix_web::test]
async fn expired_tokens_are_inactive() {
    let server = TestServer::start_with(&[("LATCHKEY_ACCESS_TOKEN_TTL", "1")]).await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    let jwt = server.access_token(&id, &secret, &[]).await;
    assert_eq!(server.introspect(&id, &secret, &jwt).await["active"], true);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        server.introspect(&id, &secret, &jwt).await,
        json!({"active": false})
    );
}

#[actix_web::test]
async fn a_forged_host_header_changes_no_url() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    let forged = [
        ("host", "evil.example"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "host=evil.example;proto=https"),
    ];
    let mut req = http().get(server.url("/.well-known/oauth-authorization-server"));
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("evil"), "{text}");
    let meta: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(meta["issuer"], server.issuer);
    for key in [
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
    ] {
        assert!(
            meta[key].as_str().unwrap().starts_with(&server.issuer),
            "{key}"
        );
    }
    let mut req = http()
        .post(server.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret));
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let body: Value = req
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwt_payload(body["access_token"].as_str().unwrap())["iss"],
        server.issuer
    );
}

#[actix_web::test]
async fn malformed_oversized_and_wrongly_typed_bodies_get_the_rfc_error_never_a_500() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    let token_url = server.url("/oauth2/token");
    let send = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut req = http()
            .post(&token_url)
            .basic_auth(&id, Some(&secret))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let form = Some("application/x-www-form-urlencoded");
    let cases: Vec<(Option<&'static str>, Vec<u8>, u16, &str)> = vec![
        (
            Some("application/json"),
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
            400,
            "JSON body",
        ),
        (
            Some("text/plain"),
            b"grant_type=client_credentials".to_vec(),
            400,
            "text/plain",
        ),
        (
            Some("multipart/form-data; boundary=x"),
            b"--x\r\n".to_vec(),
            400,
            "multipart",
        ),
        (
            None,
            b"grant_type=client_credentials".to_vec(),
            400,
            "no content type",
        ),
        (form, b"".to_vec(), 400, "empty body"),
        (
            form,
            b"grant_type=client_credentials&grant_type=client_credentials".to_vec(),
            400,
            "repeated parameter",
        ),
        (
            form,
            b"grant_type=client_credentials&scope=%FF%FE".to_vec(),
            400,
            "invalid UTF-8",
        ),
        (
            form,
            b"grant_type=%%%%".to_vec(),
            400,
            "broken percent-encoding",
        ),
        (
            form,
            format!("grant_type=client_credentials&scope={}", "a".repeat(5000)).into_bytes(),
            400,
            "parameter over 4 KiB",
        ),
        (
            form,
            format!(
                "grant_type=client_credentials&pad={}",
                "a".repeat(70 * 1024)
            )
            .into_bytes(),
            413,
            "body over 64 KiB",
        ),
        (form, vec![0xff, 0x00, 0x13, 0x37], 400, "binary garbage"),
    ];
    for (ct, body, status, what) in cases {
        let res = send(ct, body).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{what}");
        let body: Value = res
            .json()
            .await
            .unwrap_or_else(|_| panic!("{what}: JSON error body"));
        assert_eq!(body["error"], "invalid_request", "{what}");
        assert!(body["error_description"].is_string(), "{what}");
    }
    // The same limits on introspection and revocation.
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        let res = http()
            .post(server.url(path))
            .basic_auth(&id, Some(&secret))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path}");
    }
    // Wrong methods are 405 with `Allow` (RFC 9110 §15.5.6), unknown paths 404, never 500.
    for (method, path, allow) in [
        ("GET", "/oauth2/token", "POST, OPTIONS"),
        ("GET", "/oauth2/introspect", "POST"),
        ("DELETE", "/oauth2/authorize", "GET, POST, HEAD"),
        ("PUT", "/login", "GET, POST, HEAD"),
        ("POST", "/jwks.json", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PATCH", "/userinfo", "GET, POST, OPTIONS, HEAD"),
    ] {
        let res = http()
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }
    let res = http().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // HEAD is GET without the body: same status and length, nothing after the headers.
    for path in [
        "/healthz",
        "/jwks.json",
        "/.well-known/openid-configuration",
        "/assets/latchkey.css",
    ] {
        let get = http().get(server.url(path)).send().await.unwrap();
        let head = http().head(server.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            head.headers().get("content-length"),
            get.headers().get("content-length"),
            "HEAD {path}"
        );
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
}

#[actix_web::test]
async fn refusals_do_not_reveal_whether_a_client_exists_or_how_it_authenticates() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (basic, _) = server.cc_client(&org, &[]);
    let (post, post_secret) = server.cc_client(&org, &["--auth-method", "client_secret_post"]);
    let token_url = server.url("/oauth2/token");
    let id_only = |id: String| {
        let url = token_url.clone();
        async move {
            let res = http()
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id.as_str()),
                ])
                .send()
                .await
                .unwrap();
            error_of(res).await
        }
    };
    let unknown = id_only("no-such-client".into()).await;
    assert_eq!(unknown.0, 401);
    assert_eq!(
        id_only(basic.clone()).await,
        unknown,
        "an existing client named without credentials"
    );
    assert_eq!(
        error_of(server.token(&post, &post_secret, &[]).await).await,
        unknown,
        "the right secret over the wrong method"
    );
    let assertion = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
        URL_SAFE_NO_PAD.encode(json!({"sub": basic}).to_string())
    );
    let res = http()
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        unknown,
        "an assertion for a secret-based client"
    );
}

#[actix_web::test]
async fn a_token_without_scope_introspects_without_a_scope_member() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let c = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "bare",
        "--grant-types",
        "client_credentials",
    ]);
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let jwt = server.access_token(id, secret, &[]).await;
    let body = server.introspect(id, secret, &jwt).await;
    assert_eq!(body["active"], true);
    assert!(
        body.get("scope").is_none(),
        "RFC 7662: scope is a string or absent, never null: {body}"
    );
}

#[actix_web::test]
async fn invented_http_methods_do_not_grow_the_metrics() {
    let server = TestServer::start().await;
    for m in ["FROB", "XYZZY"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let res = http()
            .request(method, server.url("/oauth2/token"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error());
    }
    let metrics: String = server.metrics().await;
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    assert!(!metrics.contains("FROB") && !metrics.contains("XYZZY"));
}

#[actix_web::test]
async fn invented_paths_do_not_grow_the_metrics() {
    // Every path an attacker makes up would be a new series if the raw path were a label:
    // requests are counted by the route they matched, and all unmatched ones as one.
    let server = TestServer::start().await;
    for path in [
        "/no-such-page-Zq81",
        "/v1/no-such-route-Kx42",
        "/v1/api-keys/key_Invented0001",
        "/v1/api-keys/key_Invented0002/rotate",
    ] {
        let res = http().get(server.url(path)).send().await.unwrap();
        assert!(res.status().is_client_error(), "{path}: {}", res.status());
    }
    let metrics: String = server.metrics().await;
    for made_up in ["Zq81", "Kx42", "Invented0001", "Invented0002"] {
        assert!(
            !metrics.contains(made_up),
            "{made_up} became a label: {metrics}"
        );
    }
    // The two requests to real routes (a 401 without a credential, a 405 for GET on rotate)
    // are counted under their patterns; the others under one label.
    let count = |needle: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("latchkey_http_requests_total{") && l.contains(needle))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(count("route=\"/v1/api-keys/{id}\""), 1, "{metrics}");
    assert_eq!(count("route=\"/v1/api-keys/{id}/rotate\""), 1, "{metrics}");
    assert_eq!(count("route=\"unmatched\""), 2, "{metrics}");
}

/// Sends a request head promising a 100-byte body, then 10 bytes of it and nothing more;
/// returns the status line the server answers with and how long it took.
async fn trickle(base: &str, path: &str, auth: &str, content_type: &str) -> (String, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
         Content-Type: {content_type}\r\nContent-Length: 100\r\n\r\n0123456789"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let start = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    let status = text.lines().next().unwrap_or("").to_string();
    (status, start.elapsed().as_secs())
}

#[actix_web::test]
async fn a_body_that_stops_arriving_is_408_not_a_held_connection() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (_, key) = cli_key(&server, "acme", "live", ALL, &[]);
    let (id, secret) = server.cc_client(&org, &[]);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let bearer = format!("Bearer {key}");
    let form = "application/x-www-form-urlencoded";
    let ((token, t1), (api, t2)) = tokio::join!(
        trickle(&server.base, "/oauth2/token", &basic, form),
        trickle(&server.base, "/v1/api-keys", &bearer, "application/json"),
    );
    for (status, secs, what) in [(token, t1, "token endpoint"), (api, t2, "/v1")] {
        assert!(status.contains(" 408 "), "{what}: {status}");
        assert!((9..=15).contains(&secs), "{what}: answered after {secs} s");
    }
    // The server is not the worse for it.
    assert_eq!(
        v1(&server, "GET", "/v1/utils/authtest", Some(&key), None)
            .await
            .0,
        200
    );
}
