//! `GET /v1/openapi.json` and the routes are held together: every route the server registers
//! is in the document with its scope and error answers, the document names no route the
//! server lacks, and the objects the API really returns have the properties it describes.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

async fn document(server: &TestServer) -> Value {
    let res = http()
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "served without a credential");
    res.json().await.unwrap()
}

#[actix_rt::test]
async fn the_document_describes_every_route_and_only_those() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_string(), path.to_string()));
            if path == "/v1/openapi.json" {
                continue;
            }
            let context = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{context}: a success answer"
            );
            for code in ["401", "403", "429"] {
                let schema = &responses[code]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{context} {code}");
            }
            let scopes = op["security"][0]["bearer"].as_array().unwrap();
            for s in scopes {
                assert!(
                    latchkey::apikey::SCOPES.contains(&s.as_str().unwrap()),
                    "{context}: {s} is a scope"
                );
            }
            if path != "/v1/utils/authtest" {
                assert_eq!(scopes.len(), 1, "{context} names its scope");
            }
            if method == "post" {
                let params = op["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
                    "{context}: Idempotency-Key"
                );
            }
            if method == "post" || method == "patch" {
                let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
                let name = body.as_str().unwrap_or("").rsplit('/').next().unwrap();
                let has_body = !name.is_empty();
                let bodyless = path.ends_with("/secret") || path.ends_with("/rotate");
                assert!(has_body || bodyless, "{context}: request body");
                if has_body {
                    assert!(
                        doc["components"]["schemas"][name].is_object(),
                        "{context}: {name} is defined"
                    );
                }
            }
        }
    }
    let registered: BTreeSet<(String, String)> = latchkey::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), format!("/v1{p}")))
        .collect();
    assert_eq!(
        documented, registered,
        "the document and the routes name the same operations"
    );

    // And the registered routes are real: each answers (401 without a credential), a method
    // not listed answers 405, a path not listed 404.
    for (method, path) in &registered {
        let url = server.url(&path.replace("{id}", "x"));
        let res = http()
            .request(method.to_uppercase().parse().unwrap(), &url)
            .send()
            .await
            .unwrap();
        let expected = if path == "/v1/openapi.json" { 200 } else { 401 };
        assert_eq!(res.status(), expected, "{method} {path}");
    }
    let res = http().get(server.url("/v1/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // RFC 9110: a 405 says in `Allow` what the route takes (HEAD wherever GET), and HEAD is
    // answered wherever GET is — the same status and headers, no body.
    let mut methods: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
    for (method, path) in &registered {
        methods
            .entry(path.as_str())
            .or_default()
            .insert(method.to_uppercase());
    }
    for (path, takes) in &methods {
        let url = server.url(&path.replace("{id}", "x"));
        let res = http().put(&url).send().await.unwrap();
        assert_eq!(res.status(), 405, "PUT {path}");
        let allow: BTreeSet<String> = res.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_string)
            .collect();
        let mut expected = takes.clone();
        if takes.contains("GET") {
            expected.insert("HEAD".into());
        }
        assert_eq!(allow, expected, "Allow of {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}: {body}");
        assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
        if takes.contains("GET") {
            let get = http().get(&url).send().await.unwrap();
            let head = http().head(&url).send().await.unwrap();
            assert_eq!(head.status(), get.status(), "HEAD {path}");
            assert_eq!(
                head.headers().get("content-length"),
                get.headers().get("content-length"),
                "HEAD {path}"
            );
            assert!(head.headers().contains_key("x-request-id"), "HEAD {path}");
            assert!(
                head.bytes().await.unwrap().is_empty(),
                "HEAD {path} has no body"
            );
        }
    }
}

/// The property names of a schema in the document.
fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[actix_rt::test]
async fn what_the_api_returns_is_what_the_document_describes() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    let org = server.org("acme");
    let (_, admin) = cli_key(&server, &org, "live", ALL, &[]);

    let key = v1(
        &server,
        "POST",
        "/v1/api-keys",
        Some(&admin),
        Some(json!({"name": "k", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(key.0, 201);
    assert_eq!(keys(&key.2), properties(&doc, "ApiKey"));
    let client = v1(
        &server,
        "POST",
        "/v1/clients",
        Some(&admin),
        Some(json!({"client_name": "c", "grant_types": ["client_credentials"]})),
    )
    .await;
    assert_eq!(client.0, 201);
    let mut described = properties(&doc, "ClientView");
    described.remove("jwks");
    described.remove("jwks_uri");
    assert_eq!(keys(&client.2), described);
    let user = v1(
        &server,
        "POST",
        "/v1/users",
        Some(&admin),
        Some(json!({"username": "u1", "password": "a long enough passphrase"})),
    )
    .await;
    assert_eq!(user.0, 201);
    assert_eq!(keys(&user.2), properties(&doc, "UserView"));
    let org_view = v1(&server, "GET", "/v1/organization", Some(&admin), None).await;
    assert_eq!(keys(&org_view.2), properties(&doc, "OrgView"));
    let log = v1(&server, "GET", "/v1/audit-events", Some(&admin), None).await;
    assert_eq!(keys(&log.2["data"][0]), properties(&doc, "AuditView"));
    let err = v1(&server, "GET", "/v1/clients/nope", Some(&admin), None).await;
    let mut described = properties(&doc, "ErrorBody");
    described.remove("field");
    assert_eq!(keys(&err.2), described);
}

#[actix_rt::test]
async fn the_document_states_what_schemathesis_found_it_lacked() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id} twice"
            );
            let optional =
                method == "patch" || path.ends_with("/rotate") || path.ends_with("/secret");
            if op["requestBody"].is_object() {
                assert_eq!(
                    op["requestBody"]["required"].as_bool().unwrap_or(false),
                    !optional,
                    "{method} {path}: an absent body reads as {{}}"
                );
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "Idempotency-Key" {
                    assert_eq!(p["schema"]["pattern"], "^[!-~]{1,255}$");
                }
                if p["name"] == "limit" {
                    assert_eq!(
                        (
                            p["schema"]["minimum"].as_i64(),
                            p["schema"]["maximum"].as_i64()
                        ),
                        (Some(1), Some(100))
                    );
                }
            }
        }
    }
    for schema in ["Rotate", "RotateSecret"] {
        let grace = &doc["components"]["schemas"][schema]["properties"]["grace_period_seconds"];
        assert_eq!(
            (grace["minimum"].as_i64(), grace["maximum"].as_i64()),
            (Some(0), Some(2_592_000)),
            "{schema}"
        );
    }
    let name = &doc["components"]["schemas"]["CreateKey"]["properties"]["name"];
    assert_eq!(
        (name["minLength"].as_i64(), name["maxLength"].as_i64()),
        (Some(1), Some(200))
    );
}
