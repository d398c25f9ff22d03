//! Signing-key rows and their lifecycle changes (generate, rotate, retire), each one
//! transaction so that every node sees the whole change or none of it.

use diesel::prelude::*;

use super::schema::signing_keys::dsl as k;
use super::{AnyConnection, StoreError};
use crate::crypto::Secrets;
use crate::keys::{self, Alg};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::signing_keys)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub private_key: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub publish_until: Option<i64>,
}

impl KeyRow {
    /// `pending`, `signing` (the one key of its alg that signs now), `standby` (activated but
    /// superseded by a newer key), `retired` (still published), `expired` (unpublished).
    pub fn status(&self, now: i64, newest_signer: bool) -> &'static str {
        if self.publish_until.is_some_and(|p| now >= p) {
            "expired"
        } else if self.retired_at.is_some_and(|r| now >= r) {
            "retired"
        } else if now < self.activates_at {
            "pending"
        } else if newest_signer {
            "signing"
        } else {
            "standby"
        }
    }
}

fn new_row(secrets: &Secrets, alg: Alg, now: i64, activates_at: i64) -> Result<KeyRow, StoreError> {
    let key = keys::generate(alg).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(KeyRow {
        private_key: secrets.encrypt(&key.pkcs8, key.kid.as_bytes()),
        kid: key.kid,
        alg: alg.as_str().to_string(),
        public_jwk: key.public_jwk.to_string(),
        created_at: now,
        activates_at,
        retired_at: None,
        publish_until: None,
    })
}

/// Every key, newest first.
pub fn list_all(conn: &mut AnyConnection) -> Result<Vec<KeyRow>, StoreError> {
    Ok(k::signing_keys
        .order((k::activates_at.desc(), k::kid.asc()))
        .load(conn)?)
}

/// The keys a node loads: those still published.
pub fn list_published(conn: &mut AnyConnection, now: i64) -> Result<Vec<KeyRow>, StoreError> {
    Ok(k::signing_keys
        .filter(k::publish_until.is_null().or(k::publish_until.gt(now)))
        .load(conn)?)
}

/// Creates a key for every algorithm that has no unretired key, active at once: with no key of
/// that algorithm nothing else could sign, and no resource server can hold an older set.
pub fn ensure_keys(
    conn: &mut AnyConnection,
    secrets: &Secrets,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut created = Vec::new();
    for alg in Alg::ALL {
        let unretired: i64 = k::signing_keys
            .filter(k::alg.eq(alg.as_str()))
            .filter(k::retired_at.is_null())
            .count()
            .get_result(conn)?;
        if unretired == 0 {
            let row = new_row(secrets, alg, now, now)?;
            diesel::insert_into(k::signing_keys)
                .values(&row)
                .execute(conn)?;
            created.push(row.kid);
        }
    }
    Ok(created)
}

/// Adds a key of `alg` that activates after `delay` (the pre-publication window) and retires
/// every other unretired key of that algorithm at that moment; they stay published `grace`
/// longer (the longest token lifetime, plus a reload interval and clock skew). `keys
/// generate` and `keys rotate` both come here: at most one activated key per algorithm is
/// unretired, so no superseded key lingers in the JWKS.
pub fn rotate(
    conn: &mut AnyConnection,
    secrets: &Secrets,
    alg: Alg,
    now: i64,
    delay: i64,
    grace: i64,
) -> Result<(KeyRow, Vec<String>), StoreError> {
    let row = new_row(secrets, alg, now, now + delay)?;
    let retiring = super::write_transaction(conn, |c| {
        let retiring: Vec<String> = k::signing_keys
            .filter(k::alg.eq(alg.as_str()))
            .filter(k::retired_at.is_null())
            .select(k::kid)
            .load(c)?;
        diesel::update(k::signing_keys.filter(k::kid.eq_any(&retiring)))
            .set((
                k::retired_at.eq(row.activates_at),
                k::publish_until.eq(row.activates_at + grace),
            ))
            .execute(c)?;
        diesel::insert_into(k::signing_keys)
            .values(&row)
            .execute(c)?;
        Ok::<_, StoreError>(retiring)
    })?;
    Ok((row, retiring))
}

/// The emergency switch: `kid` stops signing now and stays published `grace` longer.
/// - The key that signs now may be retired only when a successor exists (`keys rotate`
///   first); that successor starts signing at once, cutting its pre-publication short.
/// - A pending key may be retired; the keys it was to replace keep signing.
///
/// Returns the retired row and the successor that was activated early, if any.
pub fn retire(
    conn: &mut AnyConnection,
    kid: &str,
    now: i64,
    grace: i64,
) -> Result<(KeyRow, Option<String>), StoreError> {
    super::write_transaction(conn, |c| {
        let rows: Vec<KeyRow> = k::signing_keys.filter(k::kid.eq(kid)).load(c)?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Invalid(format!("no signing key with kid {kid}")))?;
        if row.retired_at.is_some_and(|r| r <= now) {
            return Err(StoreError::Invalid(format!("key {kid} is already retired")));
        }
        let mut successor = None;
        if row.activates_at > now {
            // A pending key: whatever it was to retire stays unretired.
            diesel::update(
                k::signing_keys
                    .filter(k::alg.eq(&row.alg))
                    .filter(k::kid.ne(kid))
                    .filter(k::retired_at.eq(row.activates_at)),
            )
            .set((
                k::retired_at.eq(None::<i64>),
                k::publish_until.eq(None::<i64>),
            ))
            .execute(c)?;
        } else {
            let next: Vec<KeyRow> = k::signing_keys
                .filter(k::alg.eq(&row.alg))
                .filter(k::kid.ne(kid))
                .filter(k::retired_at.is_null())
                .order(k::activates_at.asc())
                .load(c)?;
            let Some(next) = next.into_iter().next() else {
                return Err(StoreError::Invalid(format!(
                    "key {kid} is the only {} key that can sign; run `latchkey keys rotate --alg {}` first",
                    row.alg, row.alg
                )));
            };
            if next.activates_at > now {
                diesel::update(k::signing_keys.filter(k::kid.eq(&next.kid)))
                    .set(k::activates_at.eq(now))
                    .execute(c)?;
            }
            successor = Some(next.kid);
        }
        diesel::update(k::signing_keys.filter(k::kid.eq(kid)))
            .set((k::retired_at.eq(now), k::publish_until.eq(now + grace)))
            .execute(c)?;
        Ok((
            KeyRow {
                retired_at: Some(now),
                publish_until: Some(now + grace),
                ..row
            },
            successor,
        ))
    })
}
