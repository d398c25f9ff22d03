//! `/v1/api-keys`: create, list, get, delete (revoke) and rotate an organization's keys
//! (SPEC §4), under the rules every credential-minting route keeps:
//!
//! - no escalation: a caller creates, rotates (and so reveals) only keys whose scopes it holds
//!   itself (`403 scope_grant_forbidden`);
//! - sandbox credentials see and create only sandbox keys (`403 environment_forbidden`);
//! - another organization's key is `404 not_found`, and nothing changes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::Caller;
use super::{json_body, ok_no_store, paged, ApiError};
use crate::apikey::{self, AllowedIps, Environment, KeyType, Scopes};
use crate::app::AppState;
use crate::crypto::{random_base62, Purpose, Secrets};
use crate::store::{self, api_keys::ApiKeyRow};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `live` or `sandbox` (default: the caller's).
    pub environment: Option<String>,
    /// Some of: read, write, delete, admin, keys:manage, clients:manage, users:manage, audit:read.
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// RFC 3339, in the future.
    pub expires_at: Option<String>,
    pub rate_limit_per_minute: Option<i64>,
    /// At most 50 string values.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<Map<String, Value>>,
}

/// A key's settings, checked: what `create` (HTTP and CLI) stores.
pub struct KeySpec {
    pub name: String,
    pub environment: Environment,
    pub scopes: Scopes,
    pub allowed_ips: AllowedIps,
    pub expires_at: Option<i64>,
    pub rate_limit_per_minute: Option<i32>,
    pub metadata: Map<String, Value>,
}

impl KeySpec {
    /// Checks every field; errors name the field at fault.
    pub fn parse(body: CreateKey, default_env: Environment, now: i64) -> Result<KeySpec, ApiError> {
        let name = body.name;
        let chars = name.chars().count();
        if chars == 0 || chars > 200 {
            return Err(ApiError::invalid(
                "name",
                "name must be 1 to 200 characters",
            ));
        }
        if name.trim().is_empty() {
            return Err(ApiError::invalid(
                "name",
                "name must not be only whitespace",
            ));
        }
        if let Some(what) = crate::hidden_characters(&name) {
            return Err(ApiError::invalid(
                "name",
                format!("name must not contain {what}"),
            ));
        }
        let environment = match body.environment.as_deref() {
            None => default_env,
            Some("live") => Environment::Live,
            Some("sandbox") => Environment::Sandbox,
            Some(_) => {
                return Err(ApiError::invalid(
                    "environment",
                    "environment must be live or sandbox",
                ))
            }
        };
        if body.scopes.is_empty() {
            return Err(ApiError::invalid(
                "scopes",
                format!(
                    "scopes must name at least one of: {}",
                    apikey::SCOPES.join(", ")
                ),
            ));
        }
        let scopes = Scopes::parse(body.scopes.iter().map(String::as_str)).map_err(|unknown| {
            ApiError::invalid(
                "scopes",
                format!(
                    "unknown scope {unknown:?}; scopes are: {}",
                    apikey::SCOPES.join(", ")
                ),
            )
        })?;
        let allowed_ips = AllowedIps::parse(body.allowed_ips.iter().map(String::as_str))
            .map_err(|e| ApiError::invalid("allowed_ips", e))?;
        let expires_at = match body.expires_at.as_deref() {
            None => None,
            Some(s) => {
                let t = parse_rfc3339(s).ok_or_else(|| {
                    ApiError::invalid(
                        "expires_at",
                        "expires_at must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z",
                    )
                })?;
                if t <= now {
                    return Err(ApiError::invalid(
                        "expires_at",
                        "expires_at must be in the future",
                    ));
                }
                Some(t)
            }
        };
        let rate_limit_per_minute = match body.rate_limit_per_minute {
            None => None,
            Some(n) if (1..=1_000_000).contains(&n) => Some(n as i32),
            Some(_) => {
                return Err(ApiError::invalid(
                    "rate_limit_per_minute",
                    "rate_limit_per_minute must be 1 to 1000000",
                ))
            }
        };
        let metadata = body.metadata.unwrap_or_default();
        check_metadata(&metadata)?;
        Ok(KeySpec {
            name,
            environment,
            scopes,
            allowed_ips,
            expires_at,
            rate_limit_per_minute,
            metadata,
        })
    }
}

/// Metadata is small and flat: at most 50 keys of at most 40 characters, string values of at
/// most 500 characters.
fn check_metadata(m: &Map<String, Value>) -> Result<(), ApiError> {
    if m.len() > 50 {
        return Err(ApiError::invalid(
            "metadata",
            "metadata holds at most 50 keys",
        ));
    }
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > 40 {
            return Err(ApiError::invalid(
                "metadata",
                "metadata keys are 1 to 40 characters",
            ));
        }
        match v {
            Value::String(s) if s.chars().count() <= 500 => {}
            _ => {
                return Err(ApiError::invalid(
                    "metadata",
                    format!("metadata.{k} must be a string of at most 500 characters"),
                ))
            }
        }
    }
    Ok(())
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// A new row for `spec` and the key itself (shown once).
pub fn mint(
    secrets: &Secrets,
    vendor_prefix: Option<&str>,
    org_id: &str,
    spec: &KeySpec,
    created_by: &str,
    now: i64,
) -> (ApiKeyRow, String) {
    let new = apikey::generate(
        vendor_prefix,
        KeyType::for_scopes(&spec.scopes),
        spec.environment,
    );
    let row = ApiKeyRow {
        id: format!("key_{}", random_base62(20)),
        org_id: org_id.to_string(),
        name: spec.name.clone(),
        key_prefix: new.display_prefix,
        key_hash: secrets.hash(Purpose::StoredSecret, &apikey::hash_input(&new.secret)),
        environment: spec.environment.as_str().to_string(),
        scopes: spec.scopes.to_stored(),
        allowed_ips: spec.allowed_ips.to_stored(),
        metadata: Value::Object(spec.metadata.clone()).to_string(),
        rate_limit_per_minute: spec.rate_limit_per_minute,
        expires_at: spec.expires_at,
        created_at: now,
        created_seq: store::seq_now(),
        created_by: created_by.to_string(),
        last_used_at: None,
        revoked_at: None,
        rotated_to: None,
    };
    (row, new.secret)
}

/// A key as the API and CLI show it: never its hash.
pub fn view(row: &ApiKeyRow) -> Value {
    let ts = |t: Option<i64>| t.map(crate::rfc3339);
    json!({
        "id": row.id,
        "object": "api_key",
        "key_prefix": row.key_prefix,
        "name": row.name,
        "environment": row.environment,
        "scopes": Scopes::from_stored(&row.scopes).names(),
        "allowed_ips": AllowedIps::from_stored(&row.allowed_ips).names(),
        "expires_at": ts(row.expires_at),
        "created_at": crate::rfc3339(row.created_at),
        "last_used_at": ts(row.last_used_at),
        "rate_limit_per_minute": row.rate_limit_per_minute,
        "metadata": serde_json::from_str::<Value>(&row.metadata).unwrap_or_else(|_| json!({})),
        "rotated_to": row.rotated_to,
    })
}

/// What the audit log says of a key: never the key or its hash.
pub fn key_summary(row: &ApiKeyRow) -> Value {
    json!({
        "name": row.name,
        "key_prefix": row.key_prefix,
        "environment": row.environment,
        "scopes": Scopes::from_stored(&row.scopes).names(),
    })
}

/// The creation response: the view plus the key, which is never shown again.
pub fn view_with_secret(row: &ApiKeyRow, secret: &str) -> Value {
    let mut v = view(row);
    v["api_key"] = json!(secret);
    v
}

#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    summary = "Create a key; the key is shown once",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Create a key; the key is shown once", body = super::openapi::ApiKey),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["keys:manage"])),
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require("keys:manage")?;
    let body: CreateKey = json_body(&req, payload).await?;
    let (row, secret) = create_key(&state, &caller, body).await?;
    Ok(ok_no_store(
        StatusCode::CREATED,
        view_with_secret(&row, &secret),
    ))
}

/// Creation under the rules (shared by `/v1` and the dashboard): the key's row and the key
/// itself, shown once.
pub async fn create_key(
    state: &AppState,
    caller: &Caller,
    body: CreateKey,
) -> Result<(ApiKeyRow, String), ApiError> {
    caller.require("keys:manage")?;
    let now = store::now();
    let spec = KeySpec::parse(body, caller.environment, now)?;
    if spec.environment == Environment::Live {
        caller.require_live("live keys")?;
    }
    if !caller.scopes.covers(spec.scopes) {
        return Err(escalation(caller.scopes, spec.scopes));
    }
    let (row, secret) = mint(
        &state.secrets,
        state.config.key_prefix.as_deref(),
        &caller.org_id,
        &spec,
        &caller.actor(),
        now,
    );
    let stored = row.clone();
    let event = caller
        .audit()
        .event("api_key.created", Some(&row.id), key_summary(&row));
    super::idempotency::will_answer(StatusCode::CREATED, &view_with_secret(&row, &secret));
    state
        .store
        .run(move |c| store::api_keys::insert(c, &stored, &event))
        .await?;
    tracing::info!(key_id = %row.id, org_id = %row.org_id, actor = %caller.actor(), "API key created");
    Ok((row, secret))
}

fn escalation(held: Scopes, wanted: Scopes) -> ApiError {
    let missing = wanted.without(held).names().join(", ");
    ApiError::scope_grant_forbidden(format!(
        "the credential cannot grant scopes it does not hold: {missing}"
    ))
}

#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "api-keys",
    summary = "List unrevoked keys in creation order",
    params(super::Page),
    responses(
        (status = 200, description = "List unrevoked keys in creation order", body = super::openapi::ApiKeyList),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["keys:manage"])),
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller.require("keys:manage")?;
    let org = caller.org_id.clone();
    let sandbox_only = caller.environment == Environment::Sandbox;
    paged(
        &state,
        &req,
        "key",
        move |c, after, limit| store::api_keys::list(c, &org, sandbox_only, after, limit),
        view,
    )
    .await
}

/// The caller's organization's key `id`, or 404; a sandbox caller may not touch a live key.
async fn load(state: &AppState, caller: &Caller, id: String) -> Result<ApiKeyRow, ApiError> {
    let org = caller.org_id.clone();
    let row = state
        .store
        .run(move |c| store::api_keys::get(c, &org, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    if row.environment == "live" {
        caller.require_live("live keys")?;
    }
    Ok(row)
}

#[utoipa::path(
    get,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    summary = "Read a key (never the key itself)",
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 200, description = "Read a key (never the key itself)", body = super::openapi::ApiKey),
        (status = 404, description = "No such key in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["keys:manage"])),
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("keys:manage")?;
    let row = load(&state, &caller, path.into_inner()).await?;
    Ok(ok_no_store(StatusCode::OK, view(&row)))
}

#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    summary = "Revoke a key at once, on every node",
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 200, description = "Revoke a key at once, on every node", body = super::openapi::Deleted),
        (status = 404, description = "No such key in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["keys:manage"])),
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("keys:manage")?;
    let row = revoke_key(&state, &caller, path.into_inner()).await?;
    Ok(ok_no_store(
        StatusCode::OK,
        json!({"id": row.id, "object": "api_key", "deleted": true}),
    ))
}

/// Revocation under the rules (shared by `/v1` and the dashboard): another organization's
/// key, or one already revoked, is `404`.
pub async fn revoke_key(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<ApiKeyRow, ApiError> {
    caller.require("keys:manage")?;
    let row = load(state, caller, id).await?;
    let (org, id) = (row.org_id.clone(), row.id.clone());
    let event = caller
        .audit()
        .event("api_key.revoked", Some(&row.id), json!({"name": row.name}));
    let revoked = state
        .store
        .run(move |c| store::api_keys::revoke(c, &org, &id, store::now(), &event))
        .await?;
    if !revoked {
        return Err(ApiError::not_found("API key"));
    }
    tracing::info!(key_id = %row.id, org_id = %row.org_id, actor = %caller.actor(), "API key revoked");
    Ok(row)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old key keeps working: 0 to 2592000 s, default 86400.
    #[schema(minimum = 0, maximum = 2592000)]
    #[serde(default, deserialize_with = "super::whole_number")]
    pub grace_period_seconds: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/v1/api-keys/{id}/rotate",
    tag = "api-keys",
    summary = "Issue a new key with the same settings; the old one works for the grace period",
    request_body = Rotate,
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 201, description = "Issue a new key with the same settings; the old one works for the grace period", body = super::openapi::ApiKey),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
        (status = 404, description = "No such key in the caller's organization", body = super::openapi::ErrorBody),
        (status = 409, description = "Expired, already rotated or revoked", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["keys:manage"])),
)]
pub async fn rotate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require("keys:manage")?;
    let body: Rotate = json_body(&req, payload).await?;
    let (row, secret) = rotate_key(
        &state,
        &caller,
        path.into_inner(),
        body.grace_period_seconds,
    )
    .await?;
    Ok(ok_no_store(
        StatusCode::CREATED,
        view_with_secret(&row, &secret),
    ))
}

/// Rotation under the rules (shared by `/v1` and the dashboard): the successor's row and
/// its key, shown once; the old key works for `grace_period_seconds` (default one day).
pub async fn rotate_key(
    state: &AppState,
    caller: &Caller,
    id: String,
    grace_period_seconds: Option<i64>,
) -> Result<(ApiKeyRow, String), ApiError> {
    caller.require("keys:manage")?;
    let grace = super::grace_period(grace_period_seconds)?;
    let old = load(state, caller, id).await?;
    let now = store::now();
    if !old.is_live(now) {
        return Err(ApiError::conflict("an expired key cannot be rotated"));
    }
    if old.rotated_to.is_some() {
        return Err(ApiError::conflict(
            "this key was already rotated; rotate its successor instead",
        ));
    }
    // Rotating reveals a new key carrying the old one's scopes: the caller must hold them.
    let scopes = Scopes::from_stored(&old.scopes);
    if !caller.scopes.covers(scopes) {
        return Err(escalation(caller.scopes, scopes));
    }
    let spec = KeySpec {
        name: old.name.clone(),
        environment: Environment::parse(&old.environment).unwrap_or(Environment::Live),
        scopes,
        allowed_ips: AllowedIps::from_stored(&old.allowed_ips),
        expires_at: old.expires_at,
        rate_limit_per_minute: old.rate_limit_per_minute,
        metadata: serde_json::from_str(&old.metadata).unwrap_or_default(),
    };
    let (row, secret) = mint(
        &state.secrets,
        state.config.key_prefix.as_deref(),
        &old.org_id,
        &spec,
        &caller.actor(),
        now,
    );
    let (stored, previous) = (row.clone(), old.clone());
    let event = caller.audit().event(
        "api_key.rotated",
        Some(&old.id),
        json!({"successor": row.id, "grace_period_seconds": grace}),
    );
    super::idempotency::will_answer(StatusCode::CREATED, &view_with_secret(&row, &secret));
    let rotated = state
        .store
        .run(move |c| store::api_keys::rotate(c, &previous, &stored, now + grace, &event))
        .await?;
    if !rotated {
        return Err(ApiError::conflict(
            "this key was rotated or revoked meanwhile",
        ));
    }
    tracing::info!(key_id = %old.id, successor = %row.id, org_id = %row.org_id, actor = %caller.actor(), grace, "API key rotated");
    Ok((row, secret))
}
