//! Browser sessions and the login throttle.

use diesel::prelude::*;

use super::schema::login_throttle::dsl as t;
use super::schema::sessions::dsl as s;
use super::users::UserRow;
use super::{AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::sessions)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: String,
    pub org_id: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert(conn: &mut AnyConnection, row: &SessionRow) -> Result<(), StoreError> {
    diesel::insert_into(s::sessions).values(row).execute(conn)?;
    Ok(())
}

/// The live session with this id hash, and its person.
pub fn find(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: i64,
) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
    use super::schema::users;
    let rows: Vec<(SessionRow, UserRow)> = crate::on_backend!(conn, |conn| s::sessions
        .inner_join(users::table)
        .filter(s::id_hash.eq(id_hash))
        .filter(s::expires_at.gt(now))
        .select((SessionRow::as_select(), UserRow::as_select()))
        .load(conn))?;
    Ok(rows.into_iter().next())
}

pub fn delete(conn: &mut AnyConnection, id_hash: &str) -> Result<(), StoreError> {
    diesel::delete(s::sessions.filter(s::id_hash.eq(id_hash))).execute(conn)?;
    Ok(())
}

/// Seconds until `key` may try again, if it is blocked.
pub fn blocked_for(
    conn: &mut AnyConnection,
    key: &str,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let rows: Vec<Option<i64>> = t::login_throttle
        .filter(t::throttle_key.eq(key))
        .select(t::blocked_until)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .next()
        .flatten()
        .filter(|until| *until > now)
        .map(|until| until - now))
}

/// Counts a failure for `key` within a `window`; from `limit` failures on, blocks it for a
/// time that doubles with every further failure (30 s, 60 s, … at most an hour).
pub fn record_failure(
    conn: &mut AnyConnection,
    key: &str,
    now: i64,
    window: i64,
    limit: i32,
) -> Result<(), StoreError> {
    conn.transaction(|c| {
        let rows: Vec<(i32, i64)> = t::login_throttle
            .filter(t::throttle_key.eq(key))
            .select((t::failures, t::window_start))
            .load(c)?;
        let (failures, window_start) = match rows.into_iter().next() {
            Some((f, start)) if start + window > now => (f + 1, start),
            _ => (1, now),
        };
        let blocked_until = (failures >= limit).then(|| {
            let doublings = (failures - limit).min(7) as u32;
            now + (30i64 << doublings).min(3600)
        });
        let updated = diesel::update(t::login_throttle.filter(t::throttle_key.eq(key)))
            .set((
                t::failures.eq(failures),
                t::window_start.eq(window_start),
                t::blocked_until.eq(blocked_until),
            ))
            .execute(c)?;
        if updated == 0 {
            // A concurrent first failure may have inserted the row meanwhile: then count this
            // one on it (an aborted INSERT would end the whole PostgreSQL transaction).
            let values = (
                t::throttle_key.eq(key),
                t::failures.eq(failures),
                t::window_start.eq(window_start),
                t::blocked_until.eq(blocked_until),
            );
            let inserted = crate::on_backend!(c, |c| diesel::insert_into(t::login_throttle)
                .values(values)
                .on_conflict_do_nothing()
                .execute(c))?;
            if inserted == 0 {
                diesel::update(t::login_throttle.filter(t::throttle_key.eq(key)))
                    .set(t::failures.eq(t::failures + 1))
                    .execute(c)?;
            }
        }
        Ok(())
    })
}

pub fn clear(conn: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
    diesel::delete(t::login_throttle.filter(t::throttle_key.eq(key))).execute(conn)?;
    Ok(())
}

/// Deletes expired sessions and stale throttle rows.
pub fn purge_expired(conn: &mut AnyConnection, now: i64, window: i64) -> Result<usize, StoreError> {
    let a = diesel::delete(s::sessions.filter(s::expires_at.lt(now))).execute(conn)?;
    let b = diesel::delete(
        t::login_throttle
            .filter(t::window_start.lt(now - window))
            .filter(t::blocked_until.is_null().or(t::blocked_until.lt(now))),
    )
    .execute(conn)?;
    Ok(a + b)
}
