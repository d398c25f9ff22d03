//! People rows. Every read names the organization except the login lookup, which finds a
//! person by username server-wide and then checks the organization against the client's.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::users::dsl as u;
use super::{is_unique_violation, AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::users)]
pub struct UserRow {
    pub id: String,
    pub org_id: String,
    pub username: String,
    pub username_key: String,
    pub email: Option<String>,
    pub email_verified: i32,
    pub name: Option<String>,
    pub is_admin: i32,
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_seq: i64,
}

/// A person as the CLI and API show them: never the password hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    /// `user`.
    pub object: &'static str,
    pub org_id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub admin: bool,
    pub created_at: String,
}

impl UserView {
    pub fn of(r: &UserRow) -> UserView {
        UserView {
            id: r.id.clone(),
            object: "user",
            org_id: r.org_id.clone(),
            username: r.username.clone(),
            email: r.email.clone(),
            email_verified: r.email_verified != 0,
            name: r.name.clone(),
            admin: r.is_admin != 0,
            created_at: crate::rfc3339(r.created_at),
        }
    }
}

/// Inserts a person and records `event`, in one transaction; a taken username is a conflict.
pub fn insert(
    conn: &mut AnyConnection,
    row: &UserRow,
    event: &super::audit::AuditEvent,
) -> Result<(), StoreError> {
    super::write_transaction(conn, |conn| {
        match diesel::insert_into(u::users).values(row).execute(conn) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "the username {:?} is taken",
                    row.username
                )))
            }
            Err(e) => return Err(e.into()),
        }
        super::audit::insert(conn, event)?;
        super::idempotency::record_answer(conn)
    })
}

/// The person with this username anywhere on the server (login), case-insensitively.
pub fn find_by_username(
    conn: &mut AnyConnection,
    username: &str,
) -> Result<Option<UserRow>, StoreError> {
    let key = crate::people::username_key(username);
    let rows: Vec<UserRow> = crate::on_backend!(conn, |conn| u::users
        .filter(u::username_key.eq(&key))
        .load(conn))?;
    Ok(rows.into_iter().next())
}

/// A person of `org_id` by id.
pub fn find_in_org(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
) -> Result<Option<UserRow>, StoreError> {
    let rows: Vec<UserRow> = crate::on_backend!(conn, |conn| u::users
        .filter(u::id.eq(id))
        .filter(u::org_id.eq(org_id))
        .load(conn))?;
    Ok(rows.into_iter().next())
}

/// One page of an organization's people in creation order, after `starting_after` (a person
/// of this organization; `Ok(None)` when it is not one), `limit + 1` rows at most.
pub fn list_page(
    conn: &mut AnyConnection,
    org_id: &str,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Option<Vec<UserRow>>, StoreError> {
    let mut query = u::users.filter(u::org_id.eq(org_id)).into_boxed();
    if let Some(after) = starting_after {
        let Some((seq, id)) = u::users
            .filter(u::id.eq(after))
            .filter(u::org_id.eq(org_id))
            .select((u::created_seq, u::id))
            .load::<(i64, String)>(conn)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        query = query.filter(
            u::created_seq
                .gt(seq)
                .or(u::created_seq.eq(seq).and(u::id.gt(id))),
        );
    }
    Ok(Some(
        query
            .order((u::created_seq.asc(), u::id.asc()))
            .limit(limit + 1)
            .select(UserRow::as_select())
            .load(conn)?,
    ))
}

/// Deletes a person of `org_id` with their sessions, refresh families (revoked), consents and
/// codes, and records `event`, in one transaction. `false` when there is no such person.
pub fn delete_in_org(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    now: i64,
    event: &super::audit::AuditEvent,
) -> Result<bool, StoreError> {
    super::write_transaction(conn, |conn| {
        let found: Vec<String> = u::users
            .filter(u::id.eq(id))
            .filter(u::org_id.eq(org_id))
            .select(u::id)
            .load(conn)?;
        if found.is_empty() {
            return Ok(false);
        }
        super::grants::forget(conn, super::grants::Forget::Person(id), now)?;
        diesel::delete(u::users.filter(u::id.eq(id)).filter(u::org_id.eq(org_id))).execute(conn)?;
        super::audit::insert(conn, event)?;
        Ok(true)
    })
}
