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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    pub allowed_ips: Option<Vec<String>>,
}

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
    let row = state
        .store
        .run(move |c| store::orgs::set_allowed_ips(c, &org, &stored))
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    tracing::info!(org_id = %row.id, actor = %caller.actor(), "organization allowlist changed");
    Ok(ok_no_store(StatusCode::OK, json!(OrgView::of(&row))))
}
