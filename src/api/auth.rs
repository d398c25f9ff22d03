//! Bearer authentication of `/v1` (SPEC §4): an API key, or a Latchkey access token whose
//! `aud` holds `{issuer}/v1`. The result is a `Caller`: the organization it acts for, the
//! scopes it holds, its environment, and what it is (for audit and `created_by`).
//!
//! Nothing here is cached: a revoked key or token is refused on every node at the next
//! request. A key that does not have the shape and checksum of a key is refused before any
//! lookup (the `latchkey_api_key_lookups_total` metric counts the lookups). Verifying a key
//! reads one row (joined with its organization's allowlist), in one read of the store shared
//! with the lookups that arrive with it (`store::key_lookups`), and writes nothing, but
//! `last_used_at` once a minute at most.

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::ApiError;
use crate::apikey::{self, Environment, Scopes};
use crate::app::AppState;
use crate::crypto::Purpose;
use crate::oauth::access_token;
use crate::store::{self, api_keys::KeyCheck};

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org_id: String,
    pub scopes: Scopes,
    pub environment: Environment,
    pub credential: Credential,
    /// The address the request came from (after trusted proxies).
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone)]
pub enum Credential {
    ApiKey {
        id: String,
    },
    /// A person's token (`sub` is a user id) or a service's (`sub` is the client id).
    AccessToken {
        sub: String,
        client_id: String,
        /// The token's own id: what an Idempotency-Key is scoped to.
        jti: String,
    },
    /// A person signed in to the dashboard (an admin of the organization; SPEC §3).
    Session {
        user_id: String,
    },
}

impl Caller {
    /// What the audit log and `created_by` name: `key_…`, `user:…` or `client:…`.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::ApiKey { id } => id.clone(),
            Credential::AccessToken { sub, client_id, .. } if sub == client_id => {
                format!("client:{client_id}")
            }
            Credential::AccessToken { sub, .. } => format!("user:{sub}"),
            Credential::Session { user_id } => format!("user:{user_id}"),
        }
    }

    /// What an Idempotency-Key is scoped to: the organization, the credential itself (the key,
    /// or the one access token) and what it may do now, so that a replay never shows a
    /// response to a credential that could not have made the request.
    pub fn idempotency_scope(&self) -> String {
        let credential = match &self.credential {
            Credential::ApiKey { id } => id.clone(),
            Credential::AccessToken { jti, .. } => format!("jti:{jti}"),
            Credential::Session { user_id } => format!("user:{user_id}"),
        };
        format!(
            "{}\0{credential}\0{}\0{}",
            self.org_id,
            self.scopes.to_stored(),
            self.environment.as_str()
        )
    }

    /// The audit context of this caller's request.
    pub fn audit(&self) -> crate::audit::Context {
        crate::audit::Context::request(&self.org_id, self.actor(), self.ip)
    }

    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope))
        }
    }

    /// Sandbox credentials manage sandbox keys only (SPEC §4).
    pub fn require_live(&self, what: &str) -> Result<(), ApiError> {
        match self.environment {
            Environment::Live => Ok(()),
            Environment::Sandbox => Err(ApiError::environment_forbidden(format!(
                "a sandbox credential cannot use {what}"
            ))),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            // Already authenticated by the Idempotency-Key layer for this request.
            let known = req.extensions().get::<Caller>().cloned();
            let caller = match known {
                Some(caller) => caller,
                None => {
                    let state = req
                        .app_data::<web::Data<AppState>>()
                        .cloned()
                        .ok_or_else(ApiError::unavailable)?;
                    authenticate(&state, &req).await?
                }
            };
            refuse_unread_query(&req)?;
            // No id holds a NUL, and PostgreSQL cannot even compare a text with one (the
            // lookup failed, answering 503): a path with one names nothing.
            if req.path().to_ascii_lowercase().contains("%00") {
                return Err(ApiError::not_found("object"));
            }
            Ok(caller)
        })
    }
}

/// The `/v1` routes that read a query string: the lists (`super::Page`), on GET.
const LIST_ROUTES: [&str; 4] = [
    "/v1/api-keys",
    "/v1/clients",
    "/v1/users",
    "/v1/audit-events",
];

/// SPEC §4's 400 for a query parameter a route does not take, naming it: only the lists read
/// one (and refuse what they do not know themselves). Checked once the caller is known, as the
/// lists do, so an unauthenticated request still gets its 401.
pub(super) fn refuse_unread_query(req: &HttpRequest) -> Result<(), ApiError> {
    if req.query_string().is_empty()
        || (req.method() == actix_web::http::Method::GET
            && req
                .match_pattern()
                .is_some_and(|p| LIST_ROUTES.contains(&p.as_str())))
    {
        return Ok(());
    }
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid_request(format!("the query string cannot be read: {e}")))?
        .into_inner();
    match pairs.into_iter().next() {
        Some((name, _)) => Err(ApiError::invalid(
            &name,
            format!("unknown query parameter {name:?}: this route takes none"),
        )),
        // A bare "?" or "?&": nothing was sent.
        None => Ok(()),
    }
}

/// The bearer credential of the `Authorization` header (RFC 6750 §2.1; never the query).
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let sent = crate::oauth::one_authorization(req)
        .map_err(|_| ApiError::invalid_request("send one Authorization header, not several"))?;
    let Some(value) = sent else {
        return Err(ApiError::unauthorized(
            "No API key provided: send Authorization: Bearer <api key>",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Invalid API key provided"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "The Authorization header must be Bearer <api key>",
        )),
    }
}

pub async fn authenticate(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<Caller, ApiError> {
    let token = bearer(req)?;
    let ip = crate::pages::client_addr(state, req);
    if let Some(key) = apikey::parse(token) {
        let (row, org_ips) = verify_key(state, key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Invalid API key provided"))?;
        let now = store::now();
        let refuse = |reason: &'static str, e: ApiError| {
            let ctx = crate::audit::Context::request(&row.org_id, row.id.clone(), ip);
            crate::audit::refused(state, &ctx, &row.id, reason);
            e
        };
        if row.revoked_at.is_some() {
            return Err(refuse(
                "revoked",
                ApiError::unauthorized("This API key has been revoked"),
            ));
        }
        if !row.is_live(now) {
            return Err(refuse(
                "expired",
                ApiError::unauthorized("This API key has expired"),
            ));
        }
        if !row.allowed_from(&org_ips, ip) {
            return Err(refuse("ip_not_allowed", ApiError::ip_not_allowed()));
        }
        if let Some(limit) = row.rate_limit_per_minute {
            if let Err(wait) = state.rate_limiter.check(&row.id, limit.max(1) as u32) {
                return Err(refuse("rate_limited", ApiError::rate_limited(wait)));
            }
        }
        touch_later(state, &row, now);
        return Ok(Caller {
            org_id: row.org_id,
            scopes: Scopes::from_stored(&row.scopes),
            environment: key.environment,
            credential: Credential::ApiKey { id: row.id },
            ip,
        });
    }
    if token.matches('.').count() == 2 {
        return verify_access_token(state, token, ip).await;
    }
    Err(ApiError::unauthorized("Invalid API key provided"))
}

/// Finds a well-formed key by its keyed hash (under each configured instance secret), with
/// its organization's allowlist. One indexed read, batched with the lookups beside it.
pub async fn verify_key(
    state: &web::Data<AppState>,
    key: apikey::WellFormed<'_>,
) -> Result<store::api_keys::Found, ApiError> {
    let hashes = lookup_hashes(state, key);
    let newest = hashes[0].clone();
    let found = state
        .store
        .find_api_key(hashes, &state.metrics.api_key_lookup_batches)
        .await?;
    if let Some((row, _)) = &found {
        rehash_later(state, row, newest);
    }
    // The environment is part of the key string, which the hash covers; a mismatch means a
    // corrupt row, which must not authenticate.
    Ok(found.filter(|(row, _)| row.environment == key.environment.as_str()))
}

/// The keyed hashes a well-formed key is looked up by (one per configured instance secret),
/// counted in `latchkey_api_key_lookups_total`: every caller that looks a key up gets them here.
pub fn lookup_hashes(state: &AppState, key: apikey::WellFormed<'_>) -> Vec<String> {
    state.metrics.api_key_lookups.inc();
    state
        .secrets
        .hashes_all(Purpose::StoredSecret, &apikey::hash_input(key.raw))
}

/// During a rotation of the instance secret, a key found by its hash under an older secret
/// gets its hash under the newest one, in the background: once per key, after which the old
/// secret is no longer needed for it.
pub fn rehash_later(state: &web::Data<AppState>, row: &KeyCheck, newest: String) {
    if row.key_hash == newest {
        return;
    }
    let state = state.clone();
    let (id, old) = (row.id.clone(), row.key_hash.clone());
    actix_web::rt::spawn(async move {
        if let Err(e) = state
            .store
            .run(move |c| store::api_keys::rehash(c, &id, &old, &newest))
            .await
        {
            tracing::warn!(error = %e, "cannot store an API key's hash under the newest instance secret");
        }
    });
}

/// Records `last_used_at` in the background when the stored one is over a minute old: at
/// most one write a minute per key, off the request's path.
pub fn touch_later(state: &web::Data<AppState>, row: &KeyCheck, now: i64) {
    if row.last_used_at.is_some_and(|t| t > now - 60) {
        return;
    }
    let state = state.clone();
    let id = row.id.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = state
            .store
            .run(move |c| store::api_keys::touch(c, &id, now))
            .await
        {
            tracing::warn!(error = %e, "cannot record an API key's last use");
        }
    });
}

async fn verify_access_token(
    state: &web::Data<AppState>,
    token: &str,
    ip: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    let invalid = || ApiError::unauthorized("Invalid access token provided");
    let keys = state.keys.snapshot();
    let (claims, _) =
        access_token::verify(&keys, token, &state.config.issuer).ok_or_else(invalid)?;
    let audience = format!("{}/v1", state.config.issuer);
    if !claims.aud.contains(&audience) {
        return Err(ApiError::unauthorized(format!(
            "This access token is not for this API: its aud must contain {audience}"
        )));
    }
    let person = (claims.sub != claims.client_id).then(|| claims.sub.clone());
    let (jti, org_id) = (claims.jti.clone(), claims.org_id.clone());
    let client_id = claims.client_id.clone();
    let (revoked, org_ips, admin, client) = state
        .store
        .run(move |c| {
            let revoked = store::tokens::is_revoked_jti(c, &jti)?;
            let org = store::orgs::find_by_id(c, &org_id)?;
            let admin = match &person {
                Some(user) => store::users::find_in_org(c, &org_id, user)?.map(|u| u.is_admin != 0),
                None => Some(true),
            };
            let client = store::clients::get_in_org(c, &org_id, &client_id)?;
            Ok((revoked, org.map(|o| o.allowed_ips), admin, client))
        })
        .await?;
    // A deleted organization, person or client holds nothing.
    let (Some(org_ips), Some(admin), Some(client)) = (org_ips, admin, client) else {
        return Err(invalid());
    };
    // A person reaches /v1 only through a first-party client (SPEC §4): one registered to skip
    // consent, which the organization itself runs.
    if claims.sub != claims.client_id && !client.skip_consent {
        return Err(ApiError::unauthorized(
            "A person's access token for this API must come from a first-party client",
        ));
    }
    let refuse = |reason: &'static str, e: ApiError| {
        let actor = if claims.sub == claims.client_id {
            format!("client:{}", claims.client_id)
        } else {
            format!("user:{}", claims.sub)
        };
        let ctx = crate::audit::Context::request(&claims.org_id, actor.clone(), ip);
        crate::audit::refused(state, &ctx, &actor, reason);
        e
    };
    if revoked {
        return Err(refuse(
            "revoked",
            ApiError::unauthorized("This access token has been revoked"),
        ));
    }
    if !apikey::stored_list_allows(&org_ips, ip) {
        return Err(refuse("ip_not_allowed", ApiError::ip_not_allowed()));
    }
    let mut scopes = Scopes::from_claim(claims.scope.as_deref().unwrap_or(""));
    if !admin {
        scopes = scopes.without(Scopes::ADMIN_ONLY);
    }
    Ok(Caller {
        org_id: claims.org_id,
        scopes,
        environment: Environment::Live,
        credential: Credential::AccessToken {
            sub: claims.sub,
            client_id: claims.client_id,
            jti: claims.jti,
        },
        ip,
    })
}
