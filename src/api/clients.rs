//! `/v1/clients` (scope `clients:manage`, live credentials only): register, list, read, update
//! and delete the organization's OAuth clients, and rotate a client's secret with a grace
//! period. The registration rules are the CLI's (`oauth::client::apply_spec`).
//!
//! No escalation: a client carries the `/v1` scopes in its `scope`, and tokens it obtains can
//! hold them; so creating, changing (before and after), or revealing a secret of a client
//! needs the caller to hold every one of them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::{json_body, ok_no_store, paged, ApiError};
use crate::apikey::Scopes;
use crate::app::AppState;
use crate::oauth::client::{apply_spec, Client, ClientSpec, ClientView};
use crate::store;

fn allowed(caller: &Caller) -> Result<(), ApiError> {
    caller.require("clients:manage")?;
    caller.require_live("/v1/clients")
}

/// A registration or an update, in RFC 7591's names. Every field is optional on update.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    pub client_name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub public: Option<bool>,
    pub native: Option<bool>,
    pub skip_consent: Option<bool>,
    /// A JSON Web Key Set (private_key_jwt).
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub access_token_alg: Option<String>,
    pub id_token_alg: Option<String>,
}

impl ClientBody {
    fn spec(self) -> ClientSpec {
        ClientSpec {
            name: self.client_name,
            grant_types: self.grant_types,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            scopes: self.scope,
            public: self.public,
            native: self.native,
            auth_method: self.token_endpoint_auth_method,
            jwks: self.jwks,
            jwks_uri: self.jwks_uri,
            audiences: self.audiences,
            access_token_alg: self.access_token_alg,
            id_token_alg: self.id_token_alg,
            skip_consent: self.skip_consent,
        }
    }
}

/// The registration rules speak the CLI's option names; the API names its own fields.
fn rule_error(e: String) -> ApiError {
    const FIELDS: [(&str, &str); 11] = [
        ("name", "client_name"),
        ("grant-types", "grant_types"),
        ("redirect-uri", "redirect_uris"),
        ("post-logout-redirect-uri", "post_logout_redirect_uris"),
        ("scopes", "scope"),
        ("auth-method", "token_endpoint_auth_method"),
        ("jwks-uri", "jwks_uri"),
        ("jwks", "jwks"),
        ("audience", "audiences"),
        ("access-token-alg", "access_token_alg"),
        ("id-token-alg", "id_token_alg"),
    ];
    let (prefix, message) = e.split_once(": ").unwrap_or(("", &e));
    match FIELDS.iter().find(|(p, _)| *p == prefix) {
        Some((_, field)) => ApiError::invalid(field, message.to_string()),
        None => ApiError::invalid_request(e.clone()),
    }
}

/// The `/v1` scopes a client carries.
fn carried(client: &Client) -> Scopes {
    Scopes::from_claim(&client.scopes.to_string())
}

fn check_grant(caller: &Caller, client: &Client) -> Result<(), ApiError> {
    let wanted = carried(client);
    if caller.scopes.covers(wanted) {
        return Ok(());
    }
    Err(ApiError::scope_grant_forbidden(format!(
        "the credential cannot manage a client carrying scopes it does not hold: {}",
        wanted.without(caller.scopes).names().join(", ")
    )))
}

fn view(client: &Client, secret: Option<String>) -> Value {
    json!(ClientView::of(client, secret))
}

fn summary(client: &Client) -> Value {
    json!({
        "client_name": client.name,
        "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scope": client.scopes.to_string(),
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": client.auth_method.as_str(),
    })
}

#[utoipa::path(
    post,
    path = "/v1/clients",
    tag = "clients",
    summary = "Register a client; its secret is shown once",
    request_body = ClientBody,
    responses(
        (status = 201, description = "Register a client; its secret is shown once", body = crate::oauth::client::ClientView),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["clients:manage"])),
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let body: ClientBody = json_body(&req, payload).await?;
    if body.client_name.is_none() {
        return Err(ApiError::invalid("client_name", "client_name is required"));
    }
    if body.grant_types.is_none() {
        return Err(ApiError::invalid(
            "grant_types",
            "grant_types is required (client_credentials, authorization_code, refresh_token)",
        ));
    }
    let now = store::now();
    let mut client =
        apply_spec(Client::blank(&caller.org_id, now), &body.spec()).map_err(rule_error)?;
    check_grant(&caller, &client)?;
    let secret = client.issue_secret(&state.secrets);
    let event = caller
        .audit()
        .event("client.created", Some(&client.client_id), summary(&client));
    let stored = client.clone();
    let answer = view(&client, secret);
    super::idempotency::will_answer(StatusCode::CREATED, &answer);
    state
        .store
        .run(move |c| store::clients::insert(c, &stored, &event))
        .await?;
    tracing::info!(client_id = %client.client_id, org_id = %client.org_id, actor = %caller.actor(), "client created");
    Ok(ok_no_store(StatusCode::CREATED, answer))
}

#[utoipa::path(
    get,
    path = "/v1/clients",
    tag = "clients",
    summary = "List clients in creation order",
    params(super::Page),
    responses(
        (status = 200, description = "List clients in creation order", body = super::openapi::ClientList),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["clients:manage"])),
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let org = caller.org_id.clone();
    paged(
        &state,
        &req,
        "client",
        move |c, after, limit| store::clients::list_page(c, &org, after, limit),
        |c| view(c, None),
    )
    .await
}

async fn load(state: &AppState, caller: &Caller, id: String) -> Result<Client, ApiError> {
    let org = caller.org_id.clone();
    state
        .store
        .run(move |c| store::clients::get_in_org(c, &org, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("client"))
}

#[utoipa::path(
    get,
    path = "/v1/clients/{id}",
    tag = "clients",
    summary = "Read a client",
    params(("id" = String, Path, description = "Client id")),
    responses(
        (status = 200, description = "Read a client", body = crate::oauth::client::ClientView),
        (status = 404, description = "No such object in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["clients:manage"])),
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let client = load(&state, &caller, path.into_inner()).await?;
    Ok(ok_no_store(StatusCode::OK, view(&client, None)))
}

#[utoipa::path(
    patch,
    path = "/v1/clients/{id}",
    tag = "clients",
    summary = "Change what the body names",
    request_body = ClientBody,
    params(("id" = String, Path, description = "Client id")),
    responses(
        (status = 200, description = "Change what the body names", body = crate::oauth::client::ClientView),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
        (status = 404, description = "No such object in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["clients:manage"])),
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let body: ClientBody = json_body(&req, payload).await?;
    let existing = load(&state, &caller, path.into_inner()).await?;
    // Changing a powerful client (its redirect URIs, say) is as good as holding its scopes.
    check_grant(&caller, &existing)?;
    let (existing_copy, existing_updated_at) = (existing.clone(), existing.updated_at);
    let (client, secret) = existing
        .updated(&body.spec(), &state.secrets, store::now())
        .map_err(rule_error)?;
    check_grant(&caller, &client)?;
    // A PATCH that changes nothing writes nothing: no new version, no audit event.
    let unchanged = secret.is_none() && {
        let mut after = store::clients::ClientRow::from(&client);
        after.updated_at = existing_updated_at;
        after == store::clients::ClientRow::from(&existing_copy)
    };
    if unchanged {
        return Ok(ok_no_store(StatusCode::OK, view(&existing_copy, None)));
    }
    let event = caller
        .audit()
        .event("client.updated", Some(&client.client_id), summary(&client));
    let stored = client.clone();
    state
        .store
        .run(move |c| store::clients::update(c, &stored, &event))
        .await?;
    tracing::info!(client_id = %client.client_id, org_id = %client.org_id, actor = %caller.actor(), "client updated");
    Ok(ok_no_store(StatusCode::OK, view(&client, secret)))
}

#[utoipa::path(
    delete,
    path = "/v1/clients/{id}",
    tag = "clients",
    summary = "Delete a client; its refresh tokens and consents go with it",
    params(("id" = String, Path, description = "Client id")),
    responses(
        (status = 200, description = "Delete a client; its refresh tokens and consents go with it", body = super::openapi::Deleted),
        (status = 404, description = "No such object in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["clients:manage"])),
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let client = load(&state, &caller, path.into_inner()).await?;
    let event = caller.audit().event(
        "client.deleted",
        Some(&client.client_id),
        json!({"client_name": client.name}),
    );
    let (org, id) = (client.org_id.clone(), client.client_id.clone());
    let deleted = state
        .store
        .run(move |c| store::clients::delete_in_org(c, &org, &id, store::now(), &event))
        .await?;
    if !deleted {
        return Err(ApiError::not_found("client"));
    }
    tracing::info!(client_id = %client.client_id, org_id = %client.org_id, actor = %caller.actor(), "client deleted");
    Ok(ok_no_store(
        StatusCode::OK,
        json!({"id": client.client_id, "object": "client", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps working: 0 to 2592000 s, default 86400.
    #[schema(minimum = 0, maximum = 2592000)]
    #[serde(default, deserialize_with = "super::whole_number")]
    pub grace_period_seconds: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/v1/clients/{id}/secret",
    tag = "clients",
    summary = "Issue a new secret; the old one works for the grace period",
    request_body = RotateSecret,
    params(("id" = String, Path, description = "Client id")),
    responses(
        (status = 200, description = "Issue a new secret; the old one works for the grace period", body = crate::oauth::client::ClientView),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
        (status = 404, description = "No such object in the caller's organization", body = super::openapi::ErrorBody),
        (status = 409, description = "Conflict with the object's state", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["clients:manage"])),
)]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let body: RotateSecret = json_body(&req, payload).await?;
    let grace = super::grace_period(body.grace_period_seconds)?;
    let mut client = load(&state, &caller, path.into_inner()).await?;
    check_grant(&caller, &client)?;
    let now = store::now();
    let Some(secret) = client.rotate_secret(&state.secrets, now, now + grace) else {
        return Err(ApiError::conflict(format!(
            "this client authenticates with {}: it has no secret to rotate",
            client.auth_method
        )));
    };
    let event = caller.audit().event(
        "client.secret_rotated",
        Some(&client.client_id),
        json!({"grace_period_seconds": grace}),
    );
    let stored = client.clone();
    let answer = view(&client, Some(secret));
    super::idempotency::will_answer(StatusCode::OK, &answer);
    state
        .store
        .run(move |c| store::clients::update(c, &stored, &event))
        .await?;
    tracing::info!(client_id = %client.client_id, org_id = %client.org_id, actor = %caller.actor(), "client secret rotated");
    Ok(ok_no_store(StatusCode::OK, answer))
}
