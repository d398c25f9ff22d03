//! `Idempotency-Key` records of `/v1` POSTs (SPEC §4), shared by every node through the
//! database: the first request inserts the row (the primary key picks one winner among
//! concurrent duplicates), runs, and stores its response; later ones replay it or get a
//! conflict.

use diesel::prelude::*;

use super::schema::idempotency_keys::dsl as i;
use super::{AnyConnection, StoreError};

#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// This request holds the key: run it, then `finish` (or `abandon`).
    Started,
    /// The first request's response (status, encrypted response).
    Replay(i32, String),
    /// The key was used for another request.
    Mismatch,
    /// The first request is still running.
    InFlight,
}

pub fn begin(
    conn: &mut AnyConnection,
    key_hash: &str,
    request_hash: &str,
    now: i64,
    ttl: i64,
) -> Result<Begin, StoreError> {
    // An expired record no longer holds the key. (One whose request died with its node does,
    // until it expires: whether that request's change happened is unknown.)
    diesel::delete(
        i::idempotency_keys
            .filter(i::key_hash.eq(key_hash))
            .filter(i::expires_at.le(now)),
    )
    .execute(conn)?;
    let values = (
        i::key_hash.eq(key_hash),
        i::request_hash.eq(request_hash),
        i::created_at.eq(now),
        i::expires_at.eq(now + ttl),
    );
    let inserted = crate::on_backend!(conn, |c| diesel::insert_into(i::idempotency_keys)
        .values(values)
        .on_conflict_do_nothing()
        .execute(c))?;
    if inserted == 1 {
        return Ok(Begin::Started);
    }
    let rows: Vec<(String, Option<i32>, Option<String>)> = i::idempotency_keys
        .filter(i::key_hash.eq(key_hash))
        .select((i::request_hash, i::status, i::response))
        .load(conn)?;
    Ok(match rows.into_iter().next() {
        Some((hash, _, _)) if hash != request_hash => Begin::Mismatch,
        Some((_, Some(status), Some(response))) => Begin::Replay(status, response),
        // Running, or given up by its request a moment ago.
        _ => Begin::InFlight,
    })
}

/// Stores the first request's response.
pub fn finish(
    conn: &mut AnyConnection,
    key_hash: &str,
    status: i32,
    response: &str,
) -> Result<(), StoreError> {
    diesel::update(i::idempotency_keys.filter(i::key_hash.eq(key_hash)))
        .set((i::status.eq(status), i::response.eq(response)))
        .execute(conn)?;
    Ok(())
}

/// Frees the key of a request that ended without a response worth replaying (a server-side
/// failure): the client may retry it.
pub fn abandon(conn: &mut AnyConnection, key_hash: &str) -> Result<(), StoreError> {
    diesel::delete(
        i::idempotency_keys
            .filter(i::key_hash.eq(key_hash))
            .filter(i::status.is_null()),
    )
    .execute(conn)?;
    Ok(())
}

/// Deletes expired records (and with them the encrypted responses).
pub fn purge(conn: &mut AnyConnection, now: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(i::idempotency_keys.filter(i::expires_at.le(now))).execute(conn)?)
}
