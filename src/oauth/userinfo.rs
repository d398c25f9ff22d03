//! `GET/POST /userinfo` (OIDC Core §5.3): `sub` plus the claims the token's scopes allow —
//! `profile`: `name`, `preferred_username`; `email`: `email`, `email_verified`.
//!
//! The bearer token comes from the `Authorization` header, or for POST from a form body
//! (RFC 6750 §2.1–2.2), never from the query string (RFC 6750 §2.3 is not supported: a token
//! in a URL ends up in logs and Referer headers). A token without a person (client
//! credentials), revoked, expired or forged is `401 invalid_token`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::access_token;
use super::form::Form;
use super::scope::ScopeSet;
use crate::app::AppState;
use crate::store::{tokens, users};

fn bearer_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let challenge = format!(
        "Bearer realm=\"latchkey\", error=\"{error}\", error_description=\"{description}\""
    );
    let mut res = HttpResponse::build(status);
    super::no_store(&mut res);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.insert_header((header::WWW_AUTHENTICATE, v));
    }
    res.json(json!({"error": error, "error_description": description}))
}

fn invalid_token() -> HttpResponse {
    bearer_error(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the access token is invalid, expired, revoked or has no person",
    )
}

pub async fn userinfo_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    answer(&state, &req, None).await
}

pub async fn userinfo_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let body_token = if is_form {
        match Form::read(&req, payload).await {
            Ok(form) => form.get("access_token").map(str::to_string),
            Err(e) => return bearer_error(e.status, "invalid_request", &e.description),
        }
    } else {
        None
    };
    answer(&state, &req, body_token).await
}

async fn answer(state: &AppState, req: &HttpRequest, body_token: Option<String>) -> HttpResponse {
    if url::form_urlencoded::parse(req.query_string().as_bytes()).any(|(k, _)| k == "access_token")
    {
        return bearer_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "access tokens are not accepted in the query string",
        );
    }
    let Ok(sent) = super::one_authorization(req) else {
        return bearer_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the token was sent in more than one place",
        );
    };
    let header_token = match sent.map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match v.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Some(token.trim().to_string())
            }
            _ => {
                return bearer_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request",
                    "use Authorization: Bearer",
                )
            }
        },
        Some(Err(_)) => return invalid_token(),
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            return bearer_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the token was sent in more than one place",
            )
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            let mut res = HttpResponse::Unauthorized();
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"latchkey\""),
            ));
            return res.finish();
        }
    };
    let keys = state.keys.snapshot();
    let Some((claims, _)) = access_token::verify(&keys, &token, &state.config.issuer) else {
        return invalid_token();
    };
    let (org, sub, jti) = (
        claims.org_id.clone(),
        claims.sub.clone(),
        claims.jti.clone(),
    );
    let found = state
        .store
        .run(move |c| {
            if tokens::is_revoked_jti(c, &jti)? {
                return Ok(None);
            }
            users::find_in_org(c, &org, &sub)
        })
        .await;
    let user = match found {
        Ok(Some(u)) => u,
        Ok(None) => return invalid_token(),
        Err(e) => {
            tracing::error!(error = %e, "store failure at userinfo");
            return bearer_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "retry shortly",
            );
        }
    };
    let scope = claims
        .scope
        .as_deref()
        .map(ScopeSet::parse)
        .and_then(Result::ok)
        .unwrap_or_default();
    if !scope.contains("openid") {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "userinfo needs the openid scope",
        );
    }
    let mut body = json!({ "sub": user.id });
    if scope.contains("profile") {
        body["preferred_username"] = json!(user.username);
        if let Some(name) = &user.name {
            body["name"] = json!(name);
        }
    }
    if scope.contains("email") {
        if let Some(email) = &user.email {
            body["email"] = json!(email);
            body["email_verified"] = Value::Bool(user.email_verified != 0);
        }
    }
    let mut res = HttpResponse::Ok();
    super::no_store(&mut res);
    res.json(body)
}
