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
async fn retire_is_the_emergency_switch_and_a_retired_key_leaves_the_jwks_after_its_tokens() {
    let server = TestServer::start_with(&[
        ("LATCHKEY_KEY_PREPUBLISH", "1s"),
        ("LATCHKEY_ACCESS_TOKEN_TTL", "2"),
        ("LATCHKEY_ID_TOKEN_TTL", "2"),
    ])
    .await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &["--access-token-alg", "RS256"]);
    let old = server.access_token(&id, &secret, &[]).await;
    let old_kid = kid_of(&old);

    // With no successor, the signing key cannot be retired: nothing would sign.
    let out = server.cli(&["keys", "retire", &old_kid]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("keys rotate"), "{err}");

    // A successor, then the switch: the successor signs at once.
    let generated = server.cli_json(&["keys", "generate", "--alg", "RS256"]);
    let new_kid = generated["kid"].as_str().unwrap().to_string();
    assert_eq!(generated["status"], "pending");
    let retired = server.cli_json(&["keys", "retire", &old_kid]);
    assert_eq!(retired["status"], "retired");
    assert_eq!(retired["successor"], new_kid.as_str());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let next = server.access_token(&id, &secret, &[]).await;
    assert_eq!(
        kid_of(&next),
        new_kid,
        "the successor signs right after the switch"
    );

    // The retired key stays published while its tokens may live (2 s TTL + 1 s reload + 5 s
    // clock skew), then leaves.
    assert!(
        jwks_kids(&server).await.contains(&old_kid),
        "still published while its tokens live"
    );
    assert!(
        verifies_against_jwks(&server, &old).await,
        "its tokens still verify offline"
    );
    tokio::time::sleep(Duration::from_millis(8600)).await;
    let kids = jwks_kids(&server).await;
    assert!(!kids.contains(&old_kid), "gone once its last token expired");
    assert!(kids.contains(&new_kid));
    assert!(
        !server.cli(&["keys", "retire", &old_kid]).status.success(),
        "retiring twice is refused"
    );
    assert!(!server
        .cli(&["keys", "retire", "no-such-kid"])
        .status
        .success());

    // Retiring a pending key cancels the rotation it began: the current key keeps signing.
    let rotated = server.cli_json(&["keys", "rotate", "--alg", "EdDSA"]);
    let pending = rotated[0]["key"]["kid"].as_str().unwrap().to_string();
    let current = rotated[0]["retiring"][0].as_str().unwrap().to_string();
    server.cli_json(&["keys", "retire", &pending]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let list = server.cli_json(&["keys", "list"]);
    let status = |kid: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&current), "signing", "the rotation was called off");
    assert_eq!(status(&pending), "retired");
}
