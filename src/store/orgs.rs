//! Organizations: the walls every org-owned row stands behind.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::organizations::dsl as o;
use super::{is_unique_violation, AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::organizations)]
pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub allowed_ips: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub allowed_ips: Vec<String>,
    pub created_at: String,
}

impl OrgView {
    pub fn of(row: &OrgRow) -> OrgView {
        OrgView {
            id: row.id.clone(),
            name: row.name.clone(),
            allowed_ips: row
                .allowed_ips
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: crate::rfc3339(row.created_at),
        }
    }
}

pub fn create(conn: &mut AnyConnection, name: &str, now: i64) -> Result<OrgRow, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StoreError::Invalid(
            "organization name: 1 to 200 characters".into(),
        ));
    }
    if let Some(what) = crate::hidden_characters(name) {
        return Err(StoreError::Invalid(format!(
            "organization name: must not contain {what}"
        )));
    }
    if name.starts_with("org_") {
        return Err(StoreError::Invalid(
            "organization name: must not start with org_ (ids do)".into(),
        ));
    }
    let row = OrgRow {
        id: format!("org_{}", crate::crypto::random_base62(20)),
        name: name.to_string(),
        allowed_ips: String::new(),
        created_at: now,
    };
    match diesel::insert_into(o::organizations)
        .values(&row)
        .execute(conn)
    {
        Ok(_) => Ok(row),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "an organization named {name:?} already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Finds an organization by id or by name (the CLI's `--org`).
pub fn find(conn: &mut AnyConnection, id_or_name: &str) -> Result<OrgRow, StoreError> {
    o::organizations
        .filter(o::id.eq(id_or_name).or(o::name.eq(id_or_name)))
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::Invalid(format!("no organization {id_or_name:?}")))
}

/// An organization by id (`None` when it does not exist).
pub fn find_by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<OrgRow>, StoreError> {
    let rows: Vec<OrgRow> = crate::on_backend!(conn, |conn| o::organizations
        .filter(o::id.eq(id))
        .select(OrgRow::as_select())
        .load(conn))?;
    Ok(rows.into_iter().next())
}

/// Replaces an organization's allowlist (stored comma-separated) and records `event`;
/// returns the updated row.
pub fn set_allowed_ips(
    conn: &mut AnyConnection,
    id: &str,
    allowed_ips: &str,
    event: &super::audit::AuditEvent,
) -> Result<Option<OrgRow>, StoreError> {
    super::write_transaction(conn, |c| {
        let n = diesel::update(o::organizations.filter(o::id.eq(id)))
            .set(o::allowed_ips.eq(allowed_ips))
            .execute(c)?;
        if n == 1 {
            super::audit::insert(c, event)?;
        }
        find_by_id(c, id)
    })
}
