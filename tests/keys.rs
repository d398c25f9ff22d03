//! Signing-key rotation as resource servers live through it: a new key is in the JWKS before
//! it signs, tokens signed before a rotation keep verifying, and a retired key leaves the JWKS
//! only once its last token has expired.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn jwks_kids(server: &TestServer) -> Vec<String> {
    let jwks: Value = get_json(&server.url("/jwks.json")).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

/// Verifies like a resource server: against the JWKS as published now.
async fn verifies_against_jwks(server: &TestServer, jwt: &str) -> bool {
    let jwks: jsonwebtoken::jwk::JwkSet = get_json(&server.url("/jwks.json")).await;
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let Some(jwk) = jwks.find(header.kid.as_deref().unwrap()) else {
        return false;
    };
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
        .is_ok()
}

#[actix_web::test]
async fn the_jwks_publishes_one_key_per_algorithm_with_rfc7638_kids() {
    let server = TestServer::start().await;
    let res = http().get(server.url("/jwks.json")).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age="));
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let mut algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(
            k.get("d").is_none() && k.get("p").is_none(),
            "no private parts"
        );
        assert_eq!(latchkey::keys::thumbprint(k).as_deref(), k["kid"].as_str());
    }
}

#[actix_web::test]
async fn a_rotated_in_key_is_published_before_it_signs_and_old_tokens_keep_verifying() {
    // Pre-publication 2 s: nodes re-read keys every 0.5 s; the new key signs 3 s after rotation.
    let server = TestServer::start_with(&[("LATCHKEY_KEY_PREPUBLISH", "2s")]).await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    let before = server.access_token(&id, &secret, &[]).await;
    let old_kid = kid_of(&before);

    let out = server.cli_json(&["keys", "rotate", "--alg", "ES256"]);
    let new_kid = out[0]["key"]["kid"].as_str().unwrap().to_string();
    assert_eq!(out[0]["key"]["status"], "pending");
    assert_eq!(out[0]["retiring"][0], old_kid.as_str());

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let kids = jwks_kids(&server).await;
    assert!(
        kids.contains(&new_kid),
        "the new key is published before it signs"
    );
    assert!(kids.contains(&old_kid));
    let during = server.access_token(&id, &secret, &[]).await;
    assert_eq!(
        kid_of(&during),
        old_kid,
        "the old key signs until the new one activates"
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = server.access_token(&id, &secret, &[]).await;
    assert_eq!(
        kid_of(&after),
        new_kid,
        "the new key signs after the window"
    );

    // Tokens from before the rotation still verify, offline and at introspection.
    assert!(verifies_against_jwks(&server, &before).await);
    assert_eq!(
        server.introspect(&id, &secret, &before).await["active"],
        true
    );
    assert!(verifies_against_jwks(&server, &after).await);

    let list = server.cli_json(&["keys", "list"]);
    let status = |kid: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&new_kid), "signing");
    assert_eq!(status(&old_kid), "retired");
}

#[actix_web::test]
async fn a_retired_key_leaves_the_jwks_only_after_its_last_token_expired() {
    let server = TestServer::start_with(&[
        ("LATCHKEY_KEY_PREPUBLISH", "1s"),
        ("LATCHKEY_ACCESS_TOKEN_TTL", "3"),
        ("LATCHKEY_ID_TOKEN_TTL", "3"),
    ])
    .await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &["--access-token-alg", "RS256"]);
    let old = server.access_token(&id, &secret, &[]).await;
    let old_kid = kid_of(&old);

    // The only RS256 key cannot be retired: nothing would sign.
    let out = server.cli(&["keys", "retire", &old_kid]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("keys rotate"), "{err}");

    let generated = server.cli_json(&["keys", "generate", "--alg", "RS256"]);
    let new_kid = generated["kid"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let newer = server.access_token(&id, &secret, &[]).await;
    assert_eq!(kid_of(&newer), new_kid, "the newest activated key signs");

    let retired = server.cli_json(&["keys", "retire", &old_kid]);
    assert_eq!(retired["status"], "retired");
    let last = server.access_token(&id, &secret, &[]).await;
    assert_eq!(kid_of(&last), new_kid);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        jwks_kids(&server).await.contains(&old_kid),
        "still published while its tokens live"
    );
    assert!(
        verifies_against_jwks(&server, &old).await,
        "its tokens still verify offline"
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        !jwks_kids(&server).await.contains(&old_kid),
        "gone once its last token expired"
    );
    assert!(jwks_kids(&server).await.contains(&new_kid));
    let again = server.cli(&["keys", "retire", &old_kid]);
    assert!(!again.status.success(), "retiring twice is refused");
    let unknown = server.cli(&["keys", "retire", "no-such-kid"]);
    assert!(!unknown.status.success());
}
