//! `GET /v1/audit-events` (scope `audit:read`, live credentials only): the organization's audit
//! log in the order things happened (SPEC §4).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::Caller;
use super::{paged, ApiError};
use crate::app::AppState;
use crate::store::{self, audit::AuditView};

#[utoipa::path(
    get,
    path = "/v1/audit-events",
    tag = "audit",
    summary = "List audit events in the order they happened",
    params(super::Page),
    responses(
        (status = 200, description = "List audit events in the order they happened", body = super::openapi::AuditEventList),
        (status = 400, description = "Invalid input; `field` names it", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["audit:read"])),
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller.require("audit:read")?;
    // The log names live keys and people; a sandbox credential sees sandbox keys only.
    caller.require_live("/v1/audit-events")?;
    let org = caller.org_id.clone();
    paged(
        &state,
        &req,
        "event",
        move |c, after, limit| store::audit::list(c, &org, after, limit),
        |e| json!(AuditView::of(e)),
    )
    .await
}
