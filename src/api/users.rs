//! `/v1/users` (scope `users:manage`, live credentials only): create, list, get and delete the
//! organization's people. Creating an admin person needs every scope (an admin can hold them
//! all); deleting a person ends their sessions and revokes their refresh tokens and consents.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{json_body, ok_no_store, paged, ApiError};
use crate::apikey::Scopes;
use crate::app::AppState;
use crate::people::{self, NewPerson};
use crate::store::{self, users::UserView};

fn allowed(caller: &Caller) -> Result<(), ApiError> {
    caller.require("users:manage")?;
    caller.require_live("/v1/users")
}

/// What a person can come to hold: every scope for an admin, all but the admin-only ones for
/// anyone else. Creating or deleting a person needs the caller to hold it all (so a caller
/// cannot grant itself more through a person, nor remove the organization's admins).
fn check_grant(caller: &Caller, admin: bool, verb: &str) -> Result<(), ApiError> {
    let carried = if admin {
        Scopes::all()
    } else {
        Scopes::all().without(Scopes::ADMIN_ONLY)
    };
    if caller.scopes.covers(carried) {
        return Ok(());
    }
    Err(ApiError::scope_grant_forbidden(format!(
        "to {verb} {} the credential needs every scope such a person may hold; missing: {}",
        if admin { "an admin" } else { "a person" },
        carried.without(caller.scopes).names().join(", ")
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1 to 64 characters, no whitespace or control characters.
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    /// At least 8 characters; stored as an Argon2id hash, never shown.
    #[schema(min_length = 8)]
    pub password: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// An admin may hold every scope; only a credential holding them all creates one.
    #[serde(default)]
    pub admin: bool,
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    summary = "Create a person",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Create a person", body = crate::store::users::UserView),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
        (status = 409, description = "Conflict with the object's state", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["users:manage"])),
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let body: CreateUser = json_body(&req, payload).await?;
    let person = NewPerson::check(&body.username, body.email, body.name, body.admin)
        .map_err(|(field, e)| ApiError::invalid(field, e))?;
    people::validate_password(&body.password).map_err(|e| ApiError::invalid("password", e))?;
    // Whoever sets a person's password can act as them: a caller creates only a person whose
    // every possible scope it holds (an admin may hold all of them; anyone else all but the
    // admin-only ones).
    check_grant(&caller, person.admin, "create")?;
    let password = body.password;
    let hash = web::block(move || people::hash_password(&password))
        .await
        .map_err(|_| ApiError::unavailable())?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash a password");
            ApiError::unavailable()
        })?;
    let row = person.into_row(&caller.org_id, hash, store::now());
    let event = caller.audit().event(
        "user.created",
        Some(&row.id),
        json!({"username": row.username, "admin": row.is_admin != 0}),
    );
    let stored = row.clone();
    let answer = json!(view(&row));
    super::idempotency::will_answer(StatusCode::CREATED, &answer);
    state
        .store
        .run(move |c| store::users::insert(c, &stored, &event))
        .await?;
    tracing::info!(user_id = %row.id, org_id = %row.org_id, actor = %caller.actor(), "person created");
    Ok(ok_no_store(StatusCode::CREATED, answer))
}

fn view(row: &store::users::UserRow) -> serde_json::Value {
    json!(UserView::of(row))
}

#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    summary = "List people in creation order",
    params(super::Page),
    responses(
        (status = 200, description = "List people in creation order", body = super::openapi::UserList),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["users:manage"])),
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
        "person",
        move |c, after, limit| store::users::list_page(c, &org, after, limit),
        view,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "users",
    summary = "Read a person",
    params(("id" = String, Path, description = "Person id")),
    responses(
        (status = 200, description = "Read a person", body = crate::store::users::UserView),
        (status = 404, description = "No such object in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["users:manage"])),
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let (org, id) = (caller.org_id.clone(), path.into_inner());
    let row = state
        .store
        .run(move |c| store::users::find_in_org(c, &org, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(ok_no_store(StatusCode::OK, view(&row)))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}",
    tag = "users",
    summary = "Delete a person; their sessions, refresh tokens and consents go with them",
    params(("id" = String, Path, description = "Person id")),
    responses(
        (status = 200, description = "Delete a person; their sessions, refresh tokens and consents go with them", body = super::openapi::Deleted),
        (status = 404, description = "No such object in the caller's organization", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["users:manage"])),
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    allowed(&caller)?;
    let (org, id) = (caller.org_id.clone(), path.into_inner());
    let (o, i) = (org.clone(), id.clone());
    let person = state
        .store
        .run(move |c| store::users::find_in_org(c, &o, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    check_grant(&caller, person.is_admin != 0, "delete")?;
    let event = caller.audit().event(
        "user.deleted",
        Some(&id),
        json!({"username": person.username, "admin": person.is_admin != 0}),
    );
    let target = id.clone();
    let deleted = state
        .store
        .run(move |c| store::users::delete_in_org(c, &org, &target, store::now(), &event))
        .await?;
    if !deleted {
        return Err(ApiError::not_found("user"));
    }
    tracing::info!(user_id = %id, org_id = %caller.org_id, actor = %caller.actor(), "person deleted");
    Ok(ok_no_store(
        StatusCode::OK,
        json!({"id": id, "object": "user", "deleted": true}),
    ))
}
