//! `GET/PATCH /v1/organization` (scope `admin`): the caller's own organization and its
//! `allowed_ips`, which every credential of the organization is held to.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{json_body, ok_no_store, ApiError};
use crate::apikey::AllowedIps;
use crate::app::AppState;
use crate::store::{self, orgs::OrgView};

#[utoipa::path(
    get,
    path = "/v1/organization",
    tag = "organization",
    summary = "Read the caller's organization",
    responses(
        (status = 200, description = "Read the caller's organization", body = crate::store::orgs::OrgView),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn get(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require("admin")?;
    caller.require_live("/v1/organization")?;
    let org = caller.org_id.clone();
    let row = state
        .store
        .run(move |c| store::orgs::find_by_id(c, &org))
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(ok_no_store(StatusCode::OK, json!(OrgView::of(&row))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    /// CIDRs or addresses every credential of the organization is held to; empty: any.
    pub allowed_ips: Option<Vec<String>>,
}

#[utoipa::path(
    patch,
    path = "/v1/organization",
    tag = "organization",
    summary = "Change the organization's allowed_ips",
    request_body = UpdateOrg,
    responses(
        (status = 200, description = "Change the organization's allowed_ips", body = crate::store::orgs::OrgView),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require("admin")?;
    caller.require_live("/v1/organization")?;
    let body: UpdateOrg = json_body(&req, payload).await?;
    let Some(list) = body.allowed_ips else {
        return get(state, caller).await;
    };
    let allowed = AllowedIps::parse(list.iter().map(String::as_str))
        .map_err(|e| ApiError::invalid("allowed_ips", e))?;
    // An allowlist that shuts out the address making the change would lock the caller out
    // of the very route that could undo it.
    if let Some(ip) = crate::pages::client_addr(&state, &req) {
        if !allowed.allows(ip) {
            return Err(ApiError::invalid(
                "allowed_ips",
                format!("the list must include the address making this request ({ip})"),
            ));
        }
    }
    let (org, stored) = (caller.org_id.clone(), allowed.to_stored());
    let event = caller.audit().event(
        "organization.updated",
        Some(&caller.org_id),
        json!({"allowed_ips": allowed.names()}),
    );
    let row = state
        .store
        .run(move |c| store::orgs::set_allowed_ips(c, &org, &stored, &event))
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    tracing::info!(org_id = %row.id, actor = %caller.actor(), "organization allowlist changed");
    Ok(ok_no_store(StatusCode::OK, json!(OrgView::of(&row))))
}
