//! RFC 8414 metadata and the RFC 7517 key set. Both name only what this server does, and both
//! are built from `LATCHKEY_ISSUER` alone: no request header changes a URL they contain.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::client_auth::{PRIVATE_KEY_JWT_ALGS, SECRET_JWT_ALGS};
use crate::app::AppState;
use crate::config::Config;
use crate::store;

/// The authorization-server metadata, built once at start-up.
pub fn metadata_document(config: &Config) -> Value {
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
    ];
    let signing_algs: Vec<&str> = SECRET_JWT_ALGS
        .iter()
        .chain(PRIVATE_KEY_JWT_ALGS)
        .copied()
        .collect();
    let with_none: Vec<&str> = auth_methods.iter().copied().chain(["none"]).collect();
    json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.endpoint("/oauth2/authorize"),
        "token_endpoint": config.endpoint("/oauth2/token"),
        "jwks_uri": config.endpoint("/jwks.json"),
        "introspection_endpoint": config.endpoint("/oauth2/introspect"),
        "revocation_endpoint": config.endpoint("/oauth2/revoke"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent"],
        // Public clients (none) use the code flow and may revoke their own tokens.
        "token_endpoint_auth_methods_supported": with_none,
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        "revocation_endpoint_auth_methods_supported": with_none,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        "access_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
    })
}

/// The OpenID Provider metadata (OIDC Discovery §3): the RFC 8414 document plus what
/// OpenID Connect adds.
pub fn openid_document(config: &Config) -> Value {
    let mut doc = metadata_document(config);
    if let Value::Object(map) = &mut doc {
        map.insert(
            "userinfo_endpoint".into(),
            json!(config.endpoint("/userinfo")),
        );
        map.insert(
            "end_session_endpoint".into(),
            json!(config.endpoint("/logout")),
        );
        map.insert(
            "scopes_supported".into(),
            json!(["openid", "profile", "email", "offline_access"]),
        );
        map.insert("subject_types_supported".into(), json!(["public"]));
        // Discovery §3 defaults request_uri_parameter_supported to true: say false outright.
        map.insert("request_parameter_supported".into(), json!(false));
        map.insert("request_uri_parameter_supported".into(), json!(false));
        map.insert(
            "id_token_signing_alg_values_supported".into(),
            json!(["RS256", "ES256", "EdDSA"]),
        );
        map.insert(
            "claims_supported".into(),
            json!([
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "azp",
                "name",
                "preferred_username",
                "email",
                "email_verified"
            ]),
        );
    }
    doc
}

pub async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .content_type("application/json")
        .body(state.openid_metadata.clone())
}

pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .content_type("application/json")
        .body(state.metadata.clone())
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let body = state.keys.snapshot().jwks(store::now());
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, state.jwks_cache_control.clone()))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .content_type("application/jwk-set+json")
        .body(body.to_string())
}
