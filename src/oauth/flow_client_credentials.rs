//! `POST /oauth2/token` and its `client_credentials` grant (RFC 6749 §4.4).
//!
//! A client_credentials token is a signature, not a row: the only database work is the client
//! lookup (and, for JWT client assertions, recording the assertion's `jti`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::access_token::{AccessTokenClaims, Audience};
use super::client::{Client, GrantType};
use super::client_auth::Presented;
use super::form::Form;
use super::scope::{validate_resource, ScopeSet};
use super::{no_store, OAuthError};
use crate::app::AppState;
use crate::crypto::random_base62;
use crate::store::{self, clients};

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let form = Form::read(&req, payload).await?;
    let grant_type = form.require("grant_type")?;
    let Some(grant) = GrantType::parse(grant_type) else {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {grant_type} is not supported; see grant_types_supported in the metadata"
        )));
    };
    let presented = Presented::from_request(&req, &form)?;
    let id = presented.client_id().to_string();
    let client = state.store.run(move |c| clients::find(c, &id)).await?;
    let client = presented.verify(&state, client, &req).await?;
    match grant {
        GrantType::ClientCredentials => client_credentials(&state, &client, &form),
        GrantType::AuthorizationCode => {
            super::flow_authorization_code::exchange(&state, &client, &form).await
        }
        GrantType::RefreshToken => {
            super::flow_authorization_code::refresh(&state, &client, &form).await
        }
    }
}

fn client_credentials(
    state: &AppState,
    client: &Client,
    form: &Form,
) -> Result<HttpResponse, OAuthError> {
    if client.public || !client.may_use(GrantType::ClientCredentials) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the client_credentials grant",
        ));
    }
    let scope = granted_scope(client, form.get("scope"))?;
    let aud = audience(state, client, &form.all("resource"))?;
    let (access_token, claims) = mint_access_token(state, client, &client.client_id, &scope, aud)?;
    state
        .metrics
        .tokens_issued
        .with_label_values(&["client_credentials"])
        .inc();
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.config.access_token_ttl.as_secs(),
        scope: claims.scope,
    }))
}

/// Signs an RFC 9068 access token for `sub` with the client's algorithm.
pub fn mint_access_token(
    state: &AppState,
    client: &Client,
    sub: &str,
    scope: &ScopeSet,
    aud: Audience,
) -> Result<(String, AccessTokenClaims), OAuthError> {
    mint_access_token_as(
        state,
        client,
        sub,
        scope,
        aud,
        random_base62(22),
        store::now(),
    )
}

/// `mint_access_token` with its `jti` and issue time chosen by the caller (a refresh records
/// them with the new refresh token before the token is signed).
pub fn mint_access_token_as(
    state: &AppState,
    client: &Client,
    sub: &str,
    scope: &ScopeSet,
    aud: Audience,
    jti: String,
    now: i64,
) -> Result<(String, AccessTokenClaims), OAuthError> {
    let keys = state.keys.snapshot();
    let key = keys.signer(client.access_token_alg, now).ok_or_else(|| {
        tracing::error!(alg = %client.access_token_alg, "no signing key");
        OAuthError::unavailable()
    })?;
    let claims = AccessTokenClaims {
        iss: state.config.issuer.clone(),
        sub: sub.to_string(),
        aud,
        client_id: client.client_id.clone(),
        scope: (!scope.is_empty()).then(|| scope.to_string()),
        iat: now,
        exp: now + state.config.access_token_ttl.as_secs() as i64,
        jti,
        org_id: client.org_id.clone(),
    };
    let token = key
        .sign_access_token(&claims)
        .map_err(|_| OAuthError::unavailable())?;
    Ok((token, claims))
}

/// RFC 6749 §3.3: the requested scope, within the client's; the client's whole registered
/// scope when none is requested.
pub fn granted_scope(client: &Client, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
    let Some(requested) = requested else {
        return Ok(client.scopes.clone());
    };
    let scope = ScopeSet::parse(requested).map_err(OAuthError::invalid_scope)?;
    let excess = scope.excess(&client.scopes);
    if !excess.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "scope {} is not registered for this client",
            excess.join(" ")
        )));
    }
    Ok(scope)
}

/// SPEC §2 / RFC 8707: `aud` is the requested resources (each a registered audience), else the
/// client's first audience, else the issuer.
pub fn audience(
    state: &AppState,
    client: &Client,
    resources: &[&str],
) -> Result<Audience, OAuthError> {
    if resources.is_empty() {
        return Ok(Audience::One(
            client
                .audiences
                .first()
                .cloned()
                .unwrap_or_else(|| state.config.issuer.clone()),
        ));
    }
    let list = registered_resources(client, resources).map_err(OAuthError::invalid_target)?;
    Ok(Audience::from_list(list))
}

/// RFC 8707 §2: the requested resources, each an absolute URI without a fragment that the
/// client registered as an audience, without repeats; `Err` is the `invalid_target`
/// description. The token endpoint and the authorization endpoint both check with this.
pub fn registered_resources(client: &Client, resources: &[&str]) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = Vec::with_capacity(resources.len());
    for r in resources {
        validate_resource(r)?;
        if !client.audiences.iter().any(|a| a == r) {
            return Err(format!("resource {r} is not registered for this client"));
        }
        if !list.iter().any(|a| a == r) {
            list.push(r.to_string());
        }
    }
    Ok(list)
}
