//! The audit log (SPEC §4): who did what to which object of an organization, from where, in
//! which request, and how it ended. Rows are only ever inserted (and purged after
//! `LATCHKEY_AUDIT_RETENTION`); nothing here ever holds a secret.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::audit_events::dsl as a;
use super::{AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::audit_events)]
pub struct AuditEvent {
    pub id: String,
    pub seq: i64,
    pub org_id: String,
    /// `key_…`, `user:…`, `client:…` or `cli`.
    pub actor: String,
    /// e.g. `api_key.created`, `login.failed`, `credential.refused`.
    pub action: String,
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// A small JSON object of non-secret facts (names, scopes, environment).
    pub detail: String,
    /// Set for refused credentials only: one record per credential, reason and minute.
    pub dedup_key: Option<String>,
    pub created_at: i64,
}

/// An event as `GET /v1/audit-events` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: String,
    pub object: &'static str,
    /// The organization whose log this is.
    pub org_id: String,
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub target: Option<String>,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: String,
}

impl AuditView {
    pub fn of(e: &AuditEvent) -> AuditView {
        AuditView {
            id: e.id.clone(),
            object: "audit_event",
            org_id: e.org_id.clone(),
            action: e.action.clone(),
            outcome: e.outcome.clone(),
            actor: e.actor.clone(),
            target: e.target.clone(),
            reason: e.reason.clone(),
            ip: e.ip.clone(),
            request_id: e.request_id.clone(),
            detail: serde_json::from_str(&e.detail).unwrap_or_else(|_| serde_json::json!({})),
            created_at: crate::rfc3339(e.created_at),
        }
    }
}

/// Inserts an event; one carrying a `dedup_key` that is already recorded is dropped
/// (`false`).
pub fn insert(conn: &mut AnyConnection, event: &AuditEvent) -> Result<bool, StoreError> {
    let n = crate::on_backend!(conn, |c| diesel::insert_into(a::audit_events)
        .values(event)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(n == 1)
}

/// One page of an organization's events in the order they happened, after `starting_after`
/// (an event of this organization; `Ok(None)` when it is not one), `limit + 1` at most.
pub fn list(
    conn: &mut AnyConnection,
    org_id: &str,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Option<Vec<AuditEvent>>, StoreError> {
    let mut query = a::audit_events.filter(a::org_id.eq(org_id)).into_boxed();
    if let Some(after) = starting_after {
        let Some((seq, id)) = a::audit_events
            .filter(a::id.eq(after))
            .filter(a::org_id.eq(org_id))
            .select((a::seq, a::id))
            .load::<(i64, String)>(conn)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        query = query.filter(a::seq.gt(seq).or(a::seq.eq(seq).and(a::id.gt(id))));
    }
    Ok(Some(
        query
            .order((a::seq.asc(), a::id.asc()))
            .limit(limit + 1)
            .select(AuditEvent::as_select())
            .load(conn)?,
    ))
}

/// Deletes events older than `before`.
pub fn purge(conn: &mut AnyConnection, before: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(a::audit_events.filter(a::created_at.lt(before))).execute(conn)?)
}
