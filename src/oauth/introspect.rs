//! `POST /oauth2/introspect` (RFC 7662) for Latchkey's access tokens (and refresh tokens, to
//! the client they were issued to; and API keys, SPEC §4). The caller is a
//! confidential client; a token is active only when its signature, issuer and expiry check
//! out, it is not revoked, and it belongs to the caller's organization. Anything else is
//! `{"active": false}` — the response never says why.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::access_token;
use super::client_auth::Presented;
use super::form::Form;
use super::{no_store, OAuthError};
use crate::apikey::{self, Scopes};
use crate::app::AppState;
use crate::store::{self, clients, grants};

pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let form = Form::read(&req, payload).await?;
    let presented = Presented::from_request(&req, &form)?;
    let token = form.require("token")?;

    // An API key (SPEC §4): the same endpoint answers for it, in the caller's organization.
    if let Some(key) = crate::apikey::parse(token) {
        return introspect_api_key(&state, &form, presented, key, &req).await;
    }

    // Signature checks need no I/O; done first, so that the client and the revocation
    // state come back in one database round trip.
    let keys = state.keys.snapshot();
    let verified =
        access_token::verify(&keys, token, &state.config.issuer).map(|(claims, _)| claims);
    // A refresh token's shape (43 base62 characters, never a JWT): only its own client may
    // introspect it.
    if verified.is_none() && super::flow_authorization_code::looks_like_refresh(token) {
        return introspect_refresh_token(&state, presented, token, &req).await;
    }

    let id = presented.client_id().to_string();
    let token_ids = verified
        .as_ref()
        .map(|c| (c.jti.clone(), c.client_id.clone(), c.sub.clone()));
    let (client, revoked) = state
        .store
        .run(move |c| {
            let token = token_ids
                .as_ref()
                .map(|(jti, client_id, sub)| clients::TokenRef {
                    jti,
                    client_id,
                    sub,
                });
            clients::find_with_revocation(c, &id, token)
        })
        .await?;
    let client = presented.verify(&state, client, &req).await?;
    if client.public {
        return Err(OAuthError::invalid_client(
            "introspection is for confidential clients",
        ));
    }

    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    match verified {
        // RFC 7662 §2.2: the claims as the token carries them (a token without a scope has no
        // scope member).
        Some(claims) if !revoked && claims.org_id == client.org_id => Ok(res.json(ActiveToken {
            active: true,
            token_type: "Bearer",
            claims: &claims,
        })),
        _ => Ok(res.json(json!({ "active": false }))),
    }
}

/// What introspection says of a good access token.
#[derive(Serialize)]
struct ActiveToken<'a> {
    active: bool,
    token_type: &'static str,
    #[serde(flatten)]
    claims: &'a access_token::AccessTokenClaims,
}

/// Introspection of a refresh token (RFC 7662 §2.1 names it): active while it would refresh,
/// and only to the client it was issued to — a resource server has no business with it.
async fn introspect_refresh_token(
    state: &web::Data<AppState>,
    presented: super::client_auth::Presented,
    token: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let hash = super::flow_authorization_code::refresh_hash(state, token);
    let (id, now) = (presented.client_id().to_string(), store::now());
    let (client, live) = state
        .store
        .run(move |c| {
            let client = clients::find(c, &id)?;
            Ok((client, grants::live_refresh(c, &hash, now)?))
        })
        .await?;
    let client = presented.verify(state, client, req).await?;
    if client.public {
        return Err(OAuthError::invalid_client(
            "introspection is for confidential clients",
        ));
    }
    let body = match live {
        Some((family, issued_at, lapses)) if family.client_id == client.client_id => json!({
            // No token_type: RFC 7662 means the access token type (RFC 6749 §5.1) by it.
            "active": true,
            "client_id": family.client_id,
            "sub": family.user_id,
            "scope": family.scope,
            "iss": state.config.issuer,
            "iat": issued_at,
            "exp": lapses,
            "auth_time": family.auth_time,
            "org_id": family.org_id,
        }),
        _ => json!({ "active": false }),
    };
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.json(body))
}

/// Introspection of an API key: active when the key is live, of the caller's organization,
/// and — when the resource server passes the caller's `client_ip` — allowed from that
/// address by the key's and the organization's allowlists and within the key's rate limit.
/// Two indexed reads, the key and the client, in the batch of lookups of this moment;
/// nothing is written.
async fn introspect_api_key(
    state: &web::Data<AppState>,
    form: &Form,
    presented: super::client_auth::Presented,
    key: apikey::WellFormed<'_>,
    req: &HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let client_ip = match form.get("client_ip") {
        Some(s) => Some(
            s.parse::<std::net::IpAddr>()
                .map_err(|_| OAuthError::invalid_request("client_ip is not an IP address"))?,
        ),
        None => None,
    };
    let hashes = crate::api::auth::lookup_hashes(state, key);
    let newest = hashes[0].clone();
    let id = presented.client_id().to_string();
    // The key and the client join this moment's batch of lookups (`store::key_lookups`).
    let (found, client) = state
        .store
        .find_api_key_and_client(hashes, id, &state.metrics.api_key_lookup_batches)
        .await?;
    let client = presented.verify(state, client, req).await?;
    if client.public {
        return Err(OAuthError::invalid_client(
            "introspection is for confidential clients",
        ));
    }
    let now = store::now();
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    match found {
        Some((row, org_ips))
            if row.org_id == client.org_id
                && row.is_live(now)
                && row.environment == key.environment.as_str()
                && client_ip.is_none_or(|ip| row.allowed_from(&org_ips, Some(ip)))
                // With client_ip the resource server asks on its caller's behalf: the key's
                // rate limit applies (the same per-node count as /v1), and a key over it is
                // not usable now — inactive, failing closed.
                && (client_ip.is_none()
                    || row.rate_limit_per_minute.is_none_or(|limit| {
                        state
                            .rate_limiter
                            .check(&row.id, limit.max(1) as u32)
                            .is_ok()
                    })) =>
        {
            crate::api::auth::touch_later(state, &row, now);
            crate::api::auth::rehash_later(state, &row, newest);
            // Written straight from the row (a resource server's hot path): the stored
            // metadata is a JSON object already and goes out as it is.
            let metadata = serde_json::from_str::<&RawValue>(&row.metadata)
                .map_or(Metadata::Empty(serde_json::Map::new()), Metadata::Stored);
            Ok(res.json(ActiveApiKey {
                active: true,
                token_type: "api_key",
                scope: Scopes::from_stored(&row.scopes).to_stored(),
                org_id: &row.org_id,
                environment: &row.environment,
                key_id: &row.id,
                iat: row.created_at,
                exp: row.expires_at,
                metadata,
            }))
        }
        _ => Ok(res.json(json!({ "active": false }))),
    }
}

/// What introspection says of a good API key (SPEC §4).
#[derive(Serialize)]
struct ActiveApiKey<'a> {
    active: bool,
    token_type: &'static str,
    scope: String,
    org_id: &'a str,
    environment: &'a str,
    key_id: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    metadata: Metadata<'a>,
}

/// A key's metadata: as stored (a JSON object, checked on write), or `{}` should the stored
/// text not parse.
#[derive(Serialize)]
#[serde(untagged)]
enum Metadata<'a> {
    Stored(&'a RawValue),
    Empty(serde_json::Map<String, serde_json::Value>),
}
