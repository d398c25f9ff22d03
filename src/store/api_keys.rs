//! API-key rows. The hot path (`find_by_hash`, batched by `find_many`) is one indexed read
//! joined with the key's organization (for its allowlist), and never writes; `touch` writes
//! `last_used_at` at most once a minute per key, conditionally, so nodes need no shared memory
//! to agree on it.

use diesel::prelude::*;

use super::audit::AuditEvent;
use super::schema::{api_keys::dsl as k, organizations::dsl as o};
use super::{AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_prefix: String,
    pub key_hash: String,
    pub environment: String,
    pub scopes: String,
    pub allowed_ips: String,
    pub metadata: String,
    pub rate_limit_per_minute: Option<i32>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// Creation order (microseconds since the epoch).
    pub created_seq: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rotated_to: Option<String>,
}

impl ApiKeyRow {
    /// Whether the key authenticates at `now`: not revoked, not past its expiry (which, for a
    /// rotated key, is the end of its grace period).
    pub fn is_live(&self, now: i64) -> bool {
        is_live(self.revoked_at, self.expires_at, now)
    }
}

fn is_live(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|e| now < e)
}

/// The columns of a key that verifying it reads (`/v1` authentication and introspection, the
/// hot path): what the checks, the caller and the introspection answer need, and no more
/// (each column read is decoded and allocated on every request).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::api_keys)]
pub struct KeyCheck {
    pub id: String,
    pub org_id: String,
    pub key_hash: String,
    pub environment: String,
    pub scopes: String,
    pub allowed_ips: String,
    pub metadata: String,
    pub rate_limit_per_minute: Option<i32>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl KeyCheck {
    /// As `ApiKeyRow::is_live`.
    pub fn is_live(&self, now: i64) -> bool {
        is_live(self.revoked_at, self.expires_at, now)
    }

    /// Whether `ip` may use the key: its own allowlist and its organization's (`org_ips`,
    /// stored form) both allow it.
    pub fn allowed_from(&self, org_ips: &str, ip: Option<std::net::IpAddr>) -> bool {
        crate::apikey::stored_list_allows(org_ips, ip)
            && crate::apikey::stored_list_allows(&self.allowed_ips, ip)
    }
}

/// The key whose keyed hash is one of `hashes` (one per configured instance secret), with its
/// organization's allowlist. Revoked and expired keys are returned too: the caller decides.
pub fn find_by_hash(conn: &mut AnyConnection, hashes: &[String]) -> Result<Found, StoreError> {
    for hash in hashes {
        let rows: Vec<(KeyCheck, String)> = crate::on_backend!(conn, |conn| k::api_keys
            .inner_join(o::organizations)
            .filter(k::key_hash.eq(hash))
            .select((KeyCheck::as_select(), o::allowed_ips))
            .load(conn))?;
        if let Some(found) = rows.into_iter().next() {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// What a key lookup finds: the key's row and its organization's allowlist.
pub type Found = Option<(KeyCheck, String)>;

/// Several lookups (each the hashes of one presented key) at once: PostgreSQL answers them
/// in one query, one network round trip; SQLite reads them one by one (the caller runs the
/// batch in one read transaction, see `store::key_lookups`). Each answer is what
/// `find_by_hash` would give for that lookup alone.
pub fn find_many(
    conn: &mut AnyConnection,
    lookups: &[&[String]],
) -> Result<Vec<Found>, StoreError> {
    match lookups {
        [one] => Ok(vec![find_by_hash(conn, one)?]),
        _ if matches!(conn, AnyConnection::Postgresql(_)) => {
            let all: Vec<&String> = lookups.iter().copied().flatten().collect();
            let rows: Vec<(KeyCheck, String)> = crate::on_backend!(conn, |conn| k::api_keys
                .inner_join(o::organizations)
                .filter(k::key_hash.eq_any(&all))
                .select((KeyCheck::as_select(), o::allowed_ips))
                .load(conn))?;
            let by_hash: std::collections::HashMap<&str, &(KeyCheck, String)> = rows
                .iter()
                .map(|found| (found.0.key_hash.as_str(), found))
                .collect();
            Ok(lookups
                .iter()
                .map(|hashes| {
                    hashes
                        .iter()
                        .find_map(|h| by_hash.get(h.as_str()).map(|found| (*found).clone()))
                })
                .collect())
        }
        _ => lookups.iter().map(|h| find_by_hash(conn, h)).collect(),
    }
}

/// Records a use at `now` unless one was recorded within the last minute (by any node).
pub fn touch(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), StoreError> {
    diesel::update(
        k::api_keys
            .filter(k::id.eq(id))
            .filter(k::last_used_at.is_null().or(k::last_used_at.le(now - 60))),
    )
    .set(k::last_used_at.eq(now))
    .execute(conn)?;
    Ok(())
}

/// Replaces a key's hash (made under an older instance secret) with its hash under the
/// newest; a no-op when another node or request did it first.
pub fn rehash(
    conn: &mut AnyConnection,
    id: &str,
    old: &str,
    newest: &str,
) -> Result<(), StoreError> {
    diesel::update(k::api_keys.filter(k::id.eq(id)).filter(k::key_hash.eq(old)))
        .set(k::key_hash.eq(newest))
        .execute(conn)?;
    Ok(())
}

/// Inserts a key and records `event`, in one transaction.
pub fn insert(
    conn: &mut AnyConnection,
    row: &ApiKeyRow,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    super::write_transaction(conn, |c| {
        diesel::insert_into(k::api_keys).values(row).execute(c)?;
        super::audit::insert(c, event)?;
        super::idempotency::record_answer(c)
    })
}

/// A key of `org_id` that is not revoked (another organization's key is not found).
pub fn get(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
) -> Result<Option<ApiKeyRow>, StoreError> {
    Ok(k::api_keys
        .filter(k::id.eq(id))
        .filter(k::org_id.eq(org_id))
        .filter(k::revoked_at.is_null())
        .select(ApiKeyRow::as_select())
        .load(conn)?
        .into_iter()
        .next())
}

/// One page of an organization's unrevoked keys in creation order, after `starting_after`
/// (a key id of this organization; `Ok(None)` when it is not one). Fetches `limit + 1` rows so
/// the caller can tell whether there are more.
pub fn list(
    conn: &mut AnyConnection,
    org_id: &str,
    sandbox_only: bool,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Option<Vec<ApiKeyRow>>, StoreError> {
    let mut query = k::api_keys
        .filter(k::org_id.eq(org_id))
        .filter(k::revoked_at.is_null())
        .into_boxed();
    if sandbox_only {
        query = query.filter(k::environment.eq("sandbox"));
    }
    if let Some(after) = starting_after {
        // A sandbox caller's cursor must be a sandbox key: a live key's id would otherwise
        // page (where an unknown id is refused), telling it which live ids exist.
        let Some(cursor) = k::api_keys
            .filter(k::id.eq(after))
            .filter(k::org_id.eq(org_id))
            .select((k::created_seq, k::id, k::environment))
            .load::<(i64, String, String)>(conn)?
            .into_iter()
            .find(|(_, _, env)| !sandbox_only || env == "sandbox")
        else {
            return Ok(None);
        };
        query = query.filter(
            k::created_seq
                .gt(cursor.0)
                .or(k::created_seq.eq(cursor.0).and(k::id.gt(cursor.1))),
        );
    }
    Ok(Some(
        query
            .order((k::created_seq.asc(), k::id.asc()))
            .limit(limit + 1)
            .select(ApiKeyRow::as_select())
            .load(conn)?,
    ))
}

/// Revokes a key of `org_id` and records `event`; `false` when there is no such unrevoked key.
pub fn revoke(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    now: i64,
    event: &AuditEvent,
) -> Result<bool, StoreError> {
    super::write_transaction(conn, |c| {
        let n = diesel::update(
            k::api_keys
                .filter(k::id.eq(id))
                .filter(k::org_id.eq(org_id))
                .filter(k::revoked_at.is_null()),
        )
        .set(k::revoked_at.eq(now))
        .execute(c)?;
        if n == 1 {
            super::audit::insert(c, event)?;
        }
        Ok(n == 1)
    })
}

/// Rotation in one transaction: the old key (still unrevoked, not yet rotated) points at its
/// successor and expires at `grace_until` (or sooner, if it already would); the successor is
/// inserted. `false` when the old key was rotated or revoked meanwhile.
pub fn rotate(
    conn: &mut AnyConnection,
    old: &ApiKeyRow,
    successor: &ApiKeyRow,
    grace_until: i64,
    event: &AuditEvent,
) -> Result<bool, StoreError> {
    super::write_transaction(conn, |c| {
        let expires = old.expires_at.map_or(grace_until, |e| e.min(grace_until));
        let n = diesel::update(
            k::api_keys
                .filter(k::id.eq(&old.id))
                .filter(k::org_id.eq(&old.org_id))
                .filter(k::revoked_at.is_null())
                .filter(k::rotated_to.is_null()),
        )
        .set((k::rotated_to.eq(&successor.id), k::expires_at.eq(expires)))
        .execute(c)?;
        if n != 1 {
            return Ok(false);
        }
        diesel::insert_into(k::api_keys)
            .values(successor)
            .execute(c)?;
        super::audit::insert(c, event)?;
        super::idempotency::record_answer(c)?;
        Ok(true)
    })
}

/// Revokes a key by id whatever its organization (the CLI's `api-key revoke`, run by an
/// operator of the whole server).
pub fn revoke_any(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<Option<ApiKeyRow>, StoreError> {
    let event = |row: &ApiKeyRow| {
        crate::audit::Context::cli(&row.org_id).event(
            "api_key.revoked",
            Some(&row.id),
            serde_json::json!({"name": row.name}),
        )
    };
    super::write_transaction(conn, |c| {
        let n = diesel::update(
            k::api_keys
                .filter(k::id.eq(id))
                .filter(k::revoked_at.is_null()),
        )
        .set(k::revoked_at.eq(now))
        .execute(c)?;
        if n != 1 {
            return Ok(None);
        }
        let row = k::api_keys
            .filter(k::id.eq(id))
            .select(ApiKeyRow::as_select())
            .load(c)?
            .into_iter()
            .next();
        if let Some(row) = &row {
            super::audit::insert(c, &event(row))?;
        }
        Ok(row)
    })
}
