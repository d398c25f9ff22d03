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

/// What a counted login attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Check the password (the attempt is counted and in flight).
    Go,
    /// Refused: the key has had `limit` failures; wait this many seconds.
    Blocked(i64),
    /// Over the limit only because other attempts are still being checked: not counted; try
    /// again in a moment, when they have finished.
    Busy,
}

/// Counts a login attempt for `key` *before* its password is checked, so that parallel
/// guesses cannot all pass an earlier check: the increment is the transaction's first
/// statement (`failures = failures + 1`, atomic on both databases), and at most `limit`
/// attempts are ever counted and unresolved at once. `failures` holds failed attempts plus
/// those in flight (`in_flight`); an attempt that would go over the limit while some are still
/// in flight takes itself back and is `Busy`. With `limit` failures settled the key is blocked
/// (30 s from the `limit`-th, `settle_failure`); an attempt while it is blocked is `Blocked`
/// and not counted. Once the wait is over, one attempt is let through and checked — so that
/// `Retry-After` tells the truth — and the key is blocked again meanwhile for twice as long
/// (60 s, 120 s, … at most an hour): a failure keeps that block, a success lifts it
/// (`forgive`, `clear`). The window starts again `window` seconds after its first attempt.
pub fn count_attempt(
    conn: &mut AnyConnection,
    key: &str,
    now: i64,
    window: i64,
    limit: i32,
) -> Result<Attempt, StoreError> {
    super::write_transaction(conn, |c| {
        let bumped = diesel::update(
            t::login_throttle
                .filter(t::throttle_key.eq(key))
                .filter(t::window_start.gt(now - window)),
        )
        .set((
            t::failures.eq(t::failures + 1),
            t::in_flight.eq(t::in_flight + 1),
        ))
        .execute(c)?;
        if bumped == 0 {
            // No row yet, or its window is over: a new window starts with this attempt. Only a
            // row whose window is over is reset: on PostgreSQL the row may have been inserted by
            // a concurrent attempt after the UPDATE above took its snapshot, and resetting that
            // one would wipe the counts of the attempts racing with this one.
            let reset = diesel::update(
                t::login_throttle
                    .filter(t::throttle_key.eq(key))
                    .filter(t::window_start.le(now - window)),
            )
            .set((
                t::failures.eq(1),
                t::in_flight.eq(1),
                t::window_start.eq(now),
                t::blocked_until.eq(None::<i64>),
            ))
            .execute(c)?;
            if reset == 0 {
                let values = (
                    t::throttle_key.eq(key),
                    t::failures.eq(1),
                    t::in_flight.eq(1),
                    t::window_start.eq(now),
                    t::blocked_until.eq(None::<i64>),
                );
                let inserted = crate::on_backend!(c, |c| diesel::insert_into(t::login_throttle)
                    .values(values)
                    .on_conflict_do_nothing()
                    .execute(c))?;
                if inserted == 0 {
                    diesel::update(t::login_throttle.filter(t::throttle_key.eq(key)))
                        .set((
                            t::failures.eq(t::failures + 1),
                            t::in_flight.eq(t::in_flight + 1),
                        ))
                        .execute(c)?;
                }
            }
        }
        let rows: Vec<(i32, i32, Option<i64>)> = t::login_throttle
            .filter(t::throttle_key.eq(key))
            .select((t::failures, t::in_flight, t::blocked_until))
            .load(c)?;
        let (failures, in_flight, blocked_until) = rows.into_iter().next().unwrap_or((1, 1, None));
        if failures <= limit {
            return Ok(Attempt::Go);
        }
        let settled = failures - in_flight;
        if settled < limit {
            // Others are being checked; their outcome decides. Take this one back.
            diesel::update(t::login_throttle.filter(t::throttle_key.eq(key)))
                .set((
                    t::failures.eq(t::failures - 1),
                    t::in_flight.eq(t::in_flight - 1),
                ))
                .execute(c)?;
            return Ok(Attempt::Busy);
        }
        // The transaction holds the row from its first statement on, so of the attempts that
        // find the wait over exactly one sees the block expired and goes through.
        if blocked_until.is_some_and(|until| until <= now) {
            let doublings = (failures - limit).clamp(1, 7) as u32;
            diesel::update(t::login_throttle.filter(t::throttle_key.eq(key)))
                .set(t::blocked_until.eq(now + (30i64 << doublings).min(3600)))
                .execute(c)?;
            return Ok(Attempt::Go);
        }
        // Blocked: refused, and not counted (the wait was said; asking again does not add to it).
        let until = blocked_until.unwrap_or(now + 30);
        diesel::update(t::login_throttle.filter(t::throttle_key.eq(key)))
            .set((
                t::failures.eq(t::failures - 1),
                t::in_flight.eq(t::in_flight - 1),
                t::blocked_until.eq(until),
            ))
            .execute(c)?;
        Ok(Attempt::Blocked(until - now))
    })
}

/// A counted attempt failed: it stays counted, and no longer in flight. The `limit`-th
/// settled failure blocks the key for 30 s.
pub fn settle_failure(
    conn: &mut AnyConnection,
    key: &str,
    now: i64,
    limit: i32,
) -> Result<(), StoreError> {
    super::write_transaction(conn, |c| {
        diesel::update(
            t::login_throttle
                .filter(t::throttle_key.eq(key))
                .filter(t::in_flight.gt(0)),
        )
        .set(t::in_flight.eq(t::in_flight - 1))
        .execute(c)?;
        diesel::update(
            t::login_throttle
                .filter(t::throttle_key.eq(key))
                .filter((t::failures - t::in_flight).ge(limit))
                .filter(t::blocked_until.is_null()),
        )
        .set(t::blocked_until.eq(now + 30))
        .execute(c)?;
        Ok(())
    })
}

/// A counted attempt succeeded: it is taken back (no longer a failure, no longer in flight),
/// unblocking the key when it falls under `limit`; over it, the wait that this attempt set for
/// the next one is lifted (the next attempt is checked at once, and a failure blocks again).
pub fn forgive(conn: &mut AnyConnection, key: &str, limit: i32) -> Result<(), StoreError> {
    forgive_at(conn, key, limit, super::now())
}

fn forgive_at(conn: &mut AnyConnection, key: &str, limit: i32, now: i64) -> Result<(), StoreError> {
    diesel::update(
        t::login_throttle
            .filter(t::throttle_key.eq(key))
            .filter(t::failures.gt(0)),
    )
    .set(t::failures.eq(t::failures - 1))
    .execute(conn)?;
    diesel::update(
        t::login_throttle
            .filter(t::throttle_key.eq(key))
            .filter(t::in_flight.gt(0)),
    )
    .set(t::in_flight.eq(t::in_flight - 1))
    .execute(conn)?;
    diesel::update(
        t::login_throttle
            .filter(t::throttle_key.eq(key))
            .filter(t::failures.lt(limit)),
    )
    .set(t::blocked_until.eq(None::<i64>))
    .execute(conn)?;
    diesel::update(
        t::login_throttle
            .filter(t::throttle_key.eq(key))
            .filter(t::failures.ge(limit))
            .filter(t::blocked_until.gt(now)),
    )
    .set(t::blocked_until.eq(now))
    .execute(conn)?;
    Ok(())
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
