//! The machine-to-machine flow as services and resource servers use it: discovery, a token
//! from a real OAuth client library, offline verification against `jwks_uri`, introspection,
//! revocation — with every client authentication method.

mod common;

use common::*;
use jsonwebtoken::{jwk::JwkSet, DecodingKey, EncodingKey, Header, Validation};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, IntrospectionUrl, RevocationUrl, Scope,
    StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use serde_json::{json, Value};

#[actix_web::test]
async fn a_service_gets_a_token_a_resource_server_verifies_it_and_revocation_deactivates_it() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &["--audience", "https://api.acme.test"]);

    // Everything is found through RFC 8414 discovery.
    let meta: Value = get_json(&server.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(meta["issuer"], server.issuer);
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret.clone()))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(meta["introspection_endpoint"].as_str().unwrap().into()).unwrap(),
        )
        .set_revocation_url(
            RevocationUrl::new(meta["revocation_endpoint"].as_str().unwrap().into()).unwrap(),
        );
    let http_client = http();

    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("read".into()))
        .request_async(&http_client)
        .await
        .expect("client_credentials token");
    assert_eq!(token.scopes().unwrap()[0].as_str(), "read");
    assert_eq!(token.expires_in().unwrap().as_secs(), 900);
    let jwt = token.access_token().secret().clone();

    // A resource server verifies it offline against the published JWKS.
    let jwks: JwkSet = get_json(meta["jwks_uri"].as_str().unwrap()).await;
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 §2.1");
    assert_eq!(
        header.alg,
        jsonwebtoken::Algorithm::ES256,
        "ES256 by default"
    );
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the signing key is published");
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[&server.issuer]);
    v.set_audience(&["https://api.acme.test"]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["org_id"], org.as_str());
    assert_eq!(claims["scope"], "read");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);

    // Introspection with the same library.
    let intro = client
        .introspect(token.access_token())
        .request_async(&http_client)
        .await
        .unwrap();
    assert!(intro.active());
    assert_eq!(intro.client_id().unwrap().as_str(), id);

    // Revocation, then introspection says inactive. (The oauth2 crate sends revocations only
    // over https, as RFC 7009 §2 asks; the loopback test server speaks http.)
    assert!(client
        .revoke_token(StandardRevocableToken::AccessToken(
            token.access_token().clone()
        ))
        .is_err());
    let res = http()
        .post(meta["revocation_endpoint"].as_str().unwrap())
        .basic_auth(&id, Some(&secret))
        .form(&[("token", jwt.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let intro = client
        .introspect(token.access_token())
        .request_async(&http_client)
        .await
        .unwrap();
    assert!(!intro.active(), "a revoked token is inactive");
    let raw = server.introspect(&id, &secret, &jwt).await;
    assert_eq!(
        raw,
        json!({"active": false}),
        "nothing but active:false for a revoked token"
    );

    // The issuance is counted.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("latchkey_tokens_issued_total{grant=\"client_credentials\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/oauth2/token\""), "{metrics}");
}

#[actix_web::test]
async fn client_secret_post_and_the_default_audience() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &["--auth-method", "client_secret_post"]);
    let res = http()
        .post(server.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let claims = jwt_payload(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["aud"],
        server.issuer.as_str(),
        "no registered audience: the issuer"
    );
    assert_eq!(
        claims["scope"], "read write",
        "no scope asked: the client's scopes"
    );
}

#[actix_web::test]
async fn resource_indicators_and_algorithms_shape_the_token() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    for alg in ["RS256", "EdDSA"] {
        let (id, secret) = server.cc_client(
            &org,
            &[
                "--audience",
                "https://a.test",
                "--audience",
                "urn:b",
                "--access-token-alg",
                alg,
            ],
        );
        let jwt = server
            .access_token(&id, &secret, &[("resource", "urn:b")])
            .await;
        assert_eq!(
            format!("{:?}", jsonwebtoken::decode_header(&jwt).unwrap().alg),
            alg
        );
        assert_eq!(jwt_payload(&jwt)["aud"], "urn:b");
        let jwt = server
            .access_token(
                &id,
                &secret,
                &[("resource", "https://a.test"), ("resource", "urn:b")],
            )
            .await;
        assert_eq!(jwt_payload(&jwt)["aud"], json!(["https://a.test", "urn:b"]));
        let jwt = server.access_token(&id, &secret, &[]).await;
        assert_eq!(
            jwt_payload(&jwt)["aud"],
            "https://a.test",
            "the first registered audience"
        );
        assert_eq!(server.introspect(&id, &secret, &jwt).await["active"], true);
    }
}

fn assertion(
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    client_id: &str,
    aud: &str,
    exp: i64,
    jti: &str,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": exp, "iat": now(), "jti": jti});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

async fn token_with_assertion(
    server: &TestServer,
    client_id: Option<&str>,
    jwt: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", jwt),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    http()
        .post(server.url("/oauth2/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn client_secret_jwt_assertions_are_single_use_and_short_lived() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &["--auth-method", "client_secret_jwt"]);
    let key = EncodingKey::from_secret(secret.as_bytes());
    let token_endpoint = server.url("/oauth2/token");
    let alg = jsonwebtoken::Algorithm::HS256;

    let jwt = assertion(&key, alg, None, &id, &token_endpoint, now() + 60, "jti-1");
    assert_eq!(
        token_with_assertion(&server, Some(&id), &jwt)
            .await
            .status(),
        200
    );
    // The issuer is an accepted audience too.
    let jwt2 = assertion(&key, alg, None, &id, &server.issuer, now() + 60, "jti-2");
    assert_eq!(
        token_with_assertion(&server, None, &jwt2).await.status(),
        200
    );

    // Replay of the first assertion.
    let res = token_with_assertion(&server, Some(&id), &jwt).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // Far in the future, expired, for another audience, signed with another secret.
    for (jwt, why) in [
        (
            assertion(&key, alg, None, &id, &token_endpoint, now() + 3600, "jti-3"),
            "exp an hour ahead",
        ),
        (
            assertion(&key, alg, None, &id, &token_endpoint, now() - 120, "jti-4"),
            "expired",
        ),
        (
            assertion(
                &key,
                alg,
                None,
                &id,
                "https://elsewhere.test/token",
                now() + 60,
                "jti-5",
            ),
            "another audience",
        ),
        (
            assertion(
                &EncodingKey::from_secret(b"not-the-secret-not-the-secret-00"),
                alg,
                None,
                &id,
                &token_endpoint,
                now() + 60,
                "jti-6",
            ),
            "wrong key",
        ),
    ] {
        let res = token_with_assertion(&server, Some(&id), &jwt).await;
        assert_eq!(res.status(), 401, "{why}");
    }
}

#[actix_web::test]
async fn private_key_jwt_with_a_registered_jwks_and_with_a_jwks_uri() {
    use latchkey::keys::{generate, Alg};
    let server = TestServer::start().await;
    let org = server.org("acme");
    let key = generate(Alg::ES256).unwrap();
    let encoding = EncodingKey::from_ec_der(&key.pkcs8);
    let jwks = json!({"keys": [key.public_jwk]});
    let path = server.dir.path().join("client-jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let (id, _) = server.cc_client(
        &org,
        &[
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            path.to_str().unwrap(),
        ],
    );
    let aud = server.url("/oauth2/token");
    let es = jsonwebtoken::Algorithm::ES256;

    let jwt = assertion(&encoding, es, Some(&key.kid), &id, &aud, now() + 60, "a");
    assert_eq!(
        token_with_assertion(&server, Some(&id), &jwt)
            .await
            .status(),
        200
    );
    assert_eq!(
        token_with_assertion(&server, Some(&id), &jwt)
            .await
            .status(),
        401,
        "replay"
    );

    // A key the client never registered.
    let other = generate(Alg::ES256).unwrap();
    let jwt = assertion(
        &EncodingKey::from_ec_der(&other.pkcs8),
        es,
        Some(&key.kid),
        &id,
        &aud,
        now() + 60,
        "b",
    );
    assert_eq!(
        token_with_assertion(&server, Some(&id), &jwt)
            .await
            .status(),
        401,
        "unregistered key"
    );

    // The same client through a jwks_uri served over HTTP.
    let jwks_server = actix_web::HttpServer::new(move || {
        let body = jwks.to_string();
        actix_web::App::new().route(
            "/jwks",
            actix_web::web::get().to(move || {
                let body = body.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let jwks_uri = format!("http://{}/jwks", jwks_server.addrs()[0]);
    actix_rt::spawn(jwks_server.run());
    let (id2, _) = server.cc_client(
        &org,
        &["--auth-method", "private_key_jwt", "--jwks-uri", &jwks_uri],
    );
    let jwt = assertion(&encoding, es, Some(&key.kid), &id2, &aud, now() + 60, "c");
    let res = token_with_assertion(&server, Some(&id2), &jwt).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
}

#[actix_web::test]
async fn after_a_rotation_of_the_instance_secret_what_was_resealed_or_used_needs_only_the_new_one()
{
    use diesel::prelude::*;
    use latchkey::store::schema::api_keys::dsl as k;
    const NEW_B64: &str = "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQtbmV3LXNlY3JldA==";
    let old = TestServer::start().await;
    let org = old.org("acme");
    let (jwt_id, jwt_secret) = old.cc_client(&org, &["--auth-method", "client_secret_jwt"]);
    let (_, used) = cli_key(&old, "acme", "live", "read", &[]);
    let (_, unused) = cli_key(&old, "acme", "live", "read", &[]);
    old.stop().await;

    // NEW,OLD: the start encrypts the signing keys and the client's secret again under NEW;
    // the key that is used gets its hash under NEW.
    let rotated = TestServer::start_on(
        old.db.clone(),
        &[("LATCHKEY_SECRET", &format!("{NEW_B64},{SECRET_B64}"))],
    )
    .await;
    let ok = v1(&rotated, "GET", "/v1/utils/authtest", Some(&used), None).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    let newest =
        latchkey::crypto::Secrets::new(&latchkey::crypto::parse_secret_list(NEW_B64).unwrap())
            .hash(
                latchkey::crypto::Purpose::StoredSecret,
                &latchkey::apikey::hash_input(&used),
            );
    let mut moved = false;
    for _ in 0..100 {
        let mut conn = rotated.state.store.conn().unwrap();
        let hashes: Vec<String> = k::api_keys.select(k::key_hash).load(&mut *conn).unwrap();
        if hashes.contains(&newest) {
            moved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(moved, "the used key's hash is stored under NEW");
    rotated.stop().await;

    // NEW alone: the node starts (no signing key needs OLD any more), signs, takes the
    // client_secret_jwt client's assertion and the used key. The key never used since the
    // rotation still needs OLD, as the README says.
    let new_only = TestServer::start_on(old.db.clone(), &[("LATCHKEY_SECRET", NEW_B64)]).await;
    let key = EncodingKey::from_secret(jwt_secret.as_bytes());
    let jwt = assertion(
        &key,
        jsonwebtoken::Algorithm::HS256,
        None,
        &jwt_id,
        &new_only.url("/oauth2/token"),
        now() + 60,
        "jti-after-rotation",
    );
    let res = token_with_assertion(&new_only, Some(&jwt_id), &jwt).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let ok = v1(&new_only, "GET", "/v1/utils/authtest", Some(&used), None).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    assert_error(
        &v1(&new_only, "GET", "/v1/utils/authtest", Some(&unused), None).await,
        401,
        "unauthorized",
        "a key made under OLD and not used since",
    );
}
