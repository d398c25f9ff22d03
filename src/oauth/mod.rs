//! The OAuth 2.0 surface: discovery, JWKS, token, introspection and revocation endpoints.
//!
//! One file per flow (after fosite): each handler parses its form once at the edge
//! (`form`), authenticates the client (`client_auth`), then runs the flow's rules. Errors are
//! `OAuthError`, rendered in one place as RFC 6749 §5.2 JSON with `Cache-Control: no-store`.
//!
//! oxide-auth is not used here: its client_credentials flow wants a redirect URI, fixes token
//! lifetime, and knows nothing of `resource` (RFC 8707), JWT access tokens (RFC 9068) or JWT
//! client assertions (RFC 7523), which is everything this surface does. It comes in with the
//! authorization-code flow, where its primitives fit.

pub mod access_token;
pub mod authorize;
pub mod client;
pub mod client_auth;
pub mod cors;
pub mod discovery;
pub mod flow_authorization_code;
pub mod flow_client_credentials;
pub mod form;
pub mod introspect;
pub mod pkce;
pub mod redirect;
pub mod revoke;
pub mod scope;
pub mod userinfo;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::json;

use crate::store::StoreError;

/// An error of the token, introspection or revocation endpoints (RFC 6749 §5.2, RFC 8707 §2).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }
    pub fn payload_too_large(d: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", d)
    }
    pub fn request_timeout(d: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request", d)
    }
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server cannot reach its database; retry shortly",
        )
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        OAuthError::unavailable()
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        no_store(&mut res);
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 names the scheme the client may use.
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"latchkey\""),
            ));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        res.json(json!({ "error": self.error, "error_description": self.description }))
    }
}

/// RFC 6749 §5.1: token responses, and anything else holding a credential, are not cached.
/// The request's one `Authorization` header, if any; `Err` when it has several. One credential
/// per request (RFC 6749 §5.2, RFC 6750 §3.1): with two, which one a proxy or a server reads is
/// anyone's guess, so the token endpoints, userinfo and `/v1` refuse them all.
pub fn one_authorization(
    req: &actix_web::HttpRequest,
) -> Result<Option<&HeaderValue>, SeveralAuthorizations> {
    let mut sent = req.headers().get_all(header::AUTHORIZATION);
    let first = sent.next();
    match sent.next() {
        Some(_) => Err(SeveralAuthorizations),
        None => Ok(first),
    }
}

/// A request with more than one `Authorization` header (`one_authorization`).
#[derive(Debug)]
pub struct SeveralAuthorizations;

pub fn no_store(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    res.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use actix_web::middleware::from_fn;
    cfg.service(resource!(
        "/.well-known/oauth-authorization-server",
        GET => discovery::metadata,
    ))
    .service(resource!(
        "/.well-known/openid-configuration",
        GET => discovery::openid_configuration,
    ))
    .service(resource!("/jwks.json", GET => discovery::jwks))
    .service(resource!(
        "/oauth2/authorize",
        GET => authorize::authorize_get,
        POST => authorize::authorize_post,
    ))
    .service(resource!("/oauth2/introspect", POST => introspect::introspect))
    // What a single-page app calls from the browser: CORS for registered origins.
    .service(
        resource!(
            "/oauth2/token",
            POST => flow_client_credentials::token,
            OPTIONS => cors::preflight,
        )
        .wrap(from_fn(cors::cors)),
    )
    .service(
        resource!(
            "/oauth2/revoke",
            POST => revoke::revoke,
            OPTIONS => cors::preflight,
        )
        .wrap(from_fn(cors::cors)),
    )
    .service(
        resource!(
            "/userinfo",
            GET => userinfo::userinfo_get,
            POST => userinfo::userinfo_post,
            OPTIONS => cors::preflight,
        )
        .wrap(from_fn(cors::cors)),
    );
}
