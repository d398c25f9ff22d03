//! Token state: revoked access-token `jti`s and used client-assertion `jti`s, each kept only
//! until the token or assertion it names would have expired anyway.

use diesel::prelude::*;

use super::schema::{revoked_tokens::dsl as r, used_assertions::dsl as u};
use super::{is_unique_violation, AnyConnection, StoreError};

/// Records a client assertion's `jti`; `false` when it was already used (a replay).
pub fn use_assertion(
    conn: &mut AnyConnection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    match diesel::insert_into(u::used_assertions)
        .values((
            u::client_id.eq(client_id),
            u::jti.eq(jti),
            u::expires_at.eq(expires_at),
        ))
        .execute(conn)
    {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Records an access token's `jti` as revoked until `expires_at` (idempotent).
pub fn revoke(conn: &mut AnyConnection, jti: &str, expires_at: i64) -> Result<(), StoreError> {
    // Looked up first: it may run inside a transaction, which on PostgreSQL a failed
    // (duplicate) insert would abort, undoing everything before it. The unique violation
    // below is left only to a race with another node.
    if is_revoked_jti(conn, jti)? {
        return Ok(());
    }
    match diesel::insert_into(r::revoked_tokens)
        .values((r::jti.eq(jti), r::expires_at.eq(expires_at)))
        .execute(conn)
    {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether an access token's `jti` is revoked.
pub fn is_revoked_jti(conn: &mut AnyConnection, jti: &str) -> Result<bool, StoreError> {
    let query = diesel::select(diesel::dsl::exists(
        r::revoked_tokens.filter(r::jti.eq(jti)),
    ));
    Ok(crate::on_backend!(conn, |conn| query.get_result(conn))?)
}

/// Deletes what can no longer matter: revocations and used assertions past their expiry.
pub fn purge_expired(conn: &mut AnyConnection, now: i64) -> Result<usize, StoreError> {
    let a = diesel::delete(r::revoked_tokens.filter(r::expires_at.lt(now))).execute(conn)?;
    let b = diesel::delete(u::used_assertions.filter(u::expires_at.lt(now))).execute(conn)?;
    Ok(a + b)
}
