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
}

/// A person as the CLI and API show them: never the password hash.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
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

pub fn insert(conn: &mut AnyConnection, row: &UserRow) -> Result<(), StoreError> {
    match diesel::insert_into(u::users).values(row).execute(conn) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "the username {:?} is taken",
            row.username
        ))),
        Err(e) => Err(e.into()),
    }
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
