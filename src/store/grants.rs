//! Authorization codes and refresh-token families (SPEC §2), the state the code flow keeps.
//!
//! Single use under concurrency: a code is claimed, and a refresh token rotated, by a
//! conditional UPDATE (`… WHERE used_at IS NULL`, `… WHERE rotated_at IS NULL`) whose row
//! count decides the one winner. That UPDATE is the first statement of its transaction, so on
//! SQLite it takes the write lock at once (as `BEGIN IMMEDIATE` would) and a racing caller
//! waits on the busy timeout, then sees the row already taken; on PostgreSQL the second UPDATE
//! blocks on the row lock and re-checks its WHERE clause after the first commits.

use diesel::prelude::*;

use super::schema::authorization_codes::dsl as ac;
use super::schema::consents::dsl as cs;
use super::schema::refresh_families::dsl as rf;
use super::schema::refresh_tokens::dsl as rt;
use super::{tokens, AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::authorization_codes)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub org_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub auth_time: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub family_id: Option<String>,
    pub access_jti: Option<String>,
    pub access_exp: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = super::schema::refresh_families)]
pub struct FamilyRow {
    pub id: String,
    pub client_id: String,
    pub org_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a redemption will issue, recorded when it claims the code.
#[derive(Debug, Clone)]
pub struct Issued {
    pub family_id: Option<String>,
    pub access_jti: String,
    pub access_exp: i64,
}

/// A refresh family to start with the redemption, in the same transaction as the claim, so
/// that a racing replay always finds it to revoke.
#[derive(Debug, Clone)]
pub struct NewFamily {
    pub family: FamilyRow,
    pub token_hash: String,
    pub idle_expires_at: i64,
}

#[derive(Debug)]
pub enum Redemption {
    /// This call claimed the code.
    Fresh(Box<CodeRow>),
    /// The code had been redeemed before: the refresh family and the access token that first
    /// redemption started are now revoked (SPEC §2, RFC 6749 §4.1.2).
    Replayed { client_id: String },
    /// No such code, or it expired unused.
    Invalid,
}

pub fn insert_code(conn: &mut AnyConnection, row: &CodeRow) -> Result<(), StoreError> {
    diesel::insert_into(ac::authorization_codes)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Claims the code for this redemption, recording up front what it will issue, and starts
/// `family` (whose id must be `issued.family_id`) in the same transaction.
pub fn redeem_code(
    conn: &mut AnyConnection,
    code_hash: &str,
    now: i64,
    issued: &Issued,
    family: Option<&NewFamily>,
) -> Result<Redemption, StoreError> {
    super::write_transaction(conn, |c| {
        let claimed = diesel::update(
            ac::authorization_codes
                .filter(ac::code_hash.eq(code_hash))
                .filter(ac::used_at.is_null())
                .filter(ac::expires_at.gt(now)),
        )
        .set((
            ac::used_at.eq(now),
            ac::family_id.eq(&issued.family_id),
            ac::access_jti.eq(&issued.access_jti),
            ac::access_exp.eq(issued.access_exp),
        ))
        .execute(c)?;
        let rows: Vec<CodeRow> = ac::authorization_codes
            .filter(ac::code_hash.eq(code_hash))
            .load(c)?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(Redemption::Invalid);
        };
        if claimed == 1 {
            if let Some(new) = family {
                let access = (issued.access_jti.as_str(), issued.access_exp);
                insert_family(c, new, Some(access))?;
            }
            return Ok(Redemption::Fresh(Box::new(row)));
        }
        if row.used_at.is_none() {
            return Ok(Redemption::Invalid);
        }
        if let Some(family) = &row.family_id {
            revoke_family(c, family, now)?;
        }
        if let (Some(jti), Some(exp)) = (&row.access_jti, row.access_exp) {
            tokens::revoke(c, jti, exp)?;
        }
        Ok(Redemption::Replayed {
            client_id: row.client_id,
        })
    })
}

/// The family and its first token; `access` is the access token issued with it (jti, exp).
fn insert_family(
    c: &mut AnyConnection,
    new: &NewFamily,
    access: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    let family = &new.family;
    diesel::insert_into(rf::refresh_families)
        .values(family)
        .execute(c)?;
    diesel::insert_into(rt::refresh_tokens)
        .values((
            rt::token_hash.eq(&new.token_hash),
            rt::family_id.eq(&family.id),
            rt::issued_at.eq(family.created_at),
            rt::idle_expires_at.eq(new.idle_expires_at.min(family.expires_at)),
            rt::access_jti.eq(access.map(|a| a.0)),
            rt::access_exp.eq(access.map(|a| a.1)),
        ))
        .execute(c)?;
    Ok(())
}

/// Starts a refresh family with its first token (issued without an access token).
pub fn start_family(
    conn: &mut AnyConnection,
    family: &FamilyRow,
    token_hash: &str,
    idle_expires_at: i64,
) -> Result<(), StoreError> {
    let new = NewFamily {
        family: family.clone(),
        token_hash: token_hash.to_string(),
        idle_expires_at,
    };
    super::write_transaction(conn, |c| insert_family(c, &new, None))
}

#[derive(Debug)]
pub enum Rotation {
    /// The presented token is now rotated and `new_hash` is the family's live token.
    Rotated(FamilyRow),
    /// The presented token had been rotated before, outside the grace window: the whole
    /// family is revoked (RFC 9700 §4.14).
    Reused { family_id: String },
    /// Unknown token, revoked family, or past the absolute or idle lifetime.
    Invalid,
}

/// Rotates a refresh token: the presented one is used up, `new_hash` replaces it, recorded
/// with the access token issued beside it (`access`: jti, exp).
pub fn rotate_refresh(
    conn: &mut AnyConnection,
    token_hash: &str,
    new_hash: &str,
    access: (&str, i64),
    now: i64,
    idle_ttl: i64,
    grace: i64,
) -> Result<Rotation, StoreError> {
    super::write_transaction(conn, |c| {
        let claimed = diesel::update(
            rt::refresh_tokens
                .filter(rt::token_hash.eq(token_hash))
                .filter(rt::rotated_at.is_null()),
        )
        .set(rt::rotated_at.eq(now))
        .execute(c)?;
        let found: Vec<(String, i64, Option<i64>)> = rt::refresh_tokens
            .filter(rt::token_hash.eq(token_hash))
            .select((rt::family_id, rt::idle_expires_at, rt::rotated_at))
            .load(c)?;
        let Some((family_id, idle_expires_at, rotated_at)) = found.into_iter().next() else {
            return Ok(Rotation::Invalid);
        };
        let families: Vec<FamilyRow> =
            rf::refresh_families.filter(rf::id.eq(&family_id)).load(c)?;
        let Some(family) = families.into_iter().next() else {
            return Ok(Rotation::Invalid);
        };
        if family.revoked_at.is_some() || family.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        let within_grace = claimed == 0 && rotated_at.is_some_and(|r| now < r + grace);
        if claimed == 0 && !within_grace {
            revoke_family(c, &family_id, now)?;
            return Ok(Rotation::Reused { family_id });
        }
        if idle_expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if within_grace {
            // A retry of a lost response: the successor issued moments ago is retired, so the
            // family keeps exactly one live token and reuse detection still holds.
            diesel::update(
                rt::refresh_tokens
                    .filter(rt::family_id.eq(&family_id))
                    .filter(rt::rotated_at.is_null()),
            )
            .set(rt::rotated_at.eq(now))
            .execute(c)?;
        }
        diesel::insert_into(rt::refresh_tokens)
            .values((
                rt::token_hash.eq(new_hash),
                rt::family_id.eq(&family_id),
                rt::issued_at.eq(now),
                rt::idle_expires_at.eq((now + idle_ttl).min(family.expires_at)),
                rt::access_jti.eq(access.0),
                rt::access_exp.eq(access.1),
            ))
            .execute(c)?;
        Ok(Rotation::Rotated(family))
    })
}

/// Revokes a family (idempotent): none of its tokens refreshes again, and the access tokens
/// it issued that have not expired are revoked with it (RFC 7009 §2.1, RFC 9700 §4.14).
pub fn revoke_family(
    conn: &mut AnyConnection,
    family_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    diesel::update(
        rf::refresh_families
            .filter(rf::id.eq(family_id))
            .filter(rf::revoked_at.is_null()),
    )
    .set(rf::revoked_at.eq(now))
    .execute(conn)?;
    let issued: Vec<(Option<String>, Option<i64>)> = rt::refresh_tokens
        .filter(rt::family_id.eq(family_id))
        .filter(rt::access_exp.gt(now))
        .select((rt::access_jti, rt::access_exp))
        .load(conn)?;
    for (jti, exp) in issued {
        if let (Some(jti), Some(exp)) = (jti, exp) {
            tokens::revoke(conn, &jti, exp)?;
        }
    }
    Ok(())
}

/// RFC 7009 for refresh tokens: revokes the token's family when it belongs to `client_id`;
/// `false` when it is unknown or another client's (left alone).
pub fn revoke_by_token(
    conn: &mut AnyConnection,
    token_hash: &str,
    client_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let found: Vec<(String, String)> = rt::refresh_tokens
        .inner_join(rf::refresh_families)
        .filter(rt::token_hash.eq(token_hash))
        .select((rf::id, rf::client_id))
        .load(conn)?;
    match found.into_iter().next() {
        Some((family, owner)) if owner == client_id => {
            revoke_family(conn, &family, now)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub fn family(conn: &mut AnyConnection, family_id: &str) -> Result<Option<FamilyRow>, StoreError> {
    let rows: Vec<FamilyRow> = rf::refresh_families
        .filter(rf::id.eq(family_id))
        .load(conn)?;
    Ok(rows.into_iter().next())
}

/// The scope a person has consented to for a client, if any.
pub fn consent(
    conn: &mut AnyConnection,
    user_id: &str,
    client_id: &str,
) -> Result<Option<String>, StoreError> {
    let rows: Vec<String> = cs::consents
        .filter(cs::user_id.eq(user_id))
        .filter(cs::client_id.eq(client_id))
        .select(cs::scope)
        .load(conn)?;
    Ok(rows.into_iter().next())
}

/// Records consent to `scope` (replacing the earlier set, which the caller has merged in).
pub fn save_consent(
    conn: &mut AnyConnection,
    user_id: &str,
    client_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), StoreError> {
    super::write_transaction(conn, |c| {
        let updated = diesel::update(
            cs::consents
                .filter(cs::user_id.eq(user_id))
                .filter(cs::client_id.eq(client_id)),
        )
        .set((cs::scope.eq(scope), cs::granted_at.eq(now)))
        .execute(c)?;
        if updated == 0 {
            let values = (
                cs::user_id.eq(user_id),
                cs::client_id.eq(client_id),
                cs::scope.eq(scope),
                cs::granted_at.eq(now),
            );
            crate::on_backend!(c, |c| diesel::insert_into(cs::consents)
                .values(values)
                .on_conflict_do_nothing()
                .execute(c))?;
        }
        Ok(())
    })
}

/// The code's row without claiming it (binding checks come before the claim, so a code
/// presented by the wrong client or with the wrong verifier is left untouched).
pub fn peek_code(conn: &mut AnyConnection, code_hash: &str) -> Result<Option<CodeRow>, StoreError> {
    let rows: Vec<CodeRow> = ac::authorization_codes
        .filter(ac::code_hash.eq(code_hash))
        .load(conn)?;
    Ok(rows.into_iter().next())
}

/// The family a refresh token belongs to, without rotating it.
pub fn family_of_token(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<FamilyRow>, StoreError> {
    let rows: Vec<FamilyRow> = rt::refresh_tokens
        .inner_join(rf::refresh_families)
        .filter(rt::token_hash.eq(token_hash))
        .select(FamilyRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().next())
}

/// A refresh token that would refresh now (not rotated, within its idle and absolute
/// lifetimes, family not revoked): its family, when it was issued and when it lapses.
pub fn live_refresh(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<(FamilyRow, i64, i64)>, StoreError> {
    let rows: Vec<(FamilyRow, i64, i64)> = rt::refresh_tokens
        .inner_join(rf::refresh_families)
        .filter(rt::token_hash.eq(token_hash))
        .filter(rt::rotated_at.is_null())
        .filter(rt::idle_expires_at.gt(now))
        .filter(rf::revoked_at.is_null())
        .filter(rf::expires_at.gt(now))
        .select((FamilyRow::as_select(), rt::issued_at, rt::idle_expires_at))
        .load(conn)?;
    Ok(rows.into_iter().next().map(|(family, issued, idle)| {
        let lapses = idle.min(family.expires_at);
        (family, issued, lapses)
    }))
}

/// What a person or a client leaves behind when deleted (SPEC §4): every refresh family is
/// revoked, consents and authorization codes are deleted, and (for a person) browser sessions
/// end. Runs inside the caller's transaction.
pub enum Forget<'a> {
    Client(&'a str),
    Person(&'a str),
}

pub fn forget(conn: &mut AnyConnection, who: Forget<'_>, now: i64) -> Result<(), StoreError> {
    use super::schema::sessions::dsl as s;
    // Each family is revoked with its live access tokens, as any revocation does.
    let live = rf::refresh_families.filter(rf::revoked_at.is_null());
    let families: Vec<String> = match who {
        Forget::Client(id) => live
            .filter(rf::client_id.eq(id))
            .select(rf::id)
            .load(conn)?,
        Forget::Person(id) => live.filter(rf::user_id.eq(id)).select(rf::id).load(conn)?,
    };
    for family in &families {
        revoke_family(conn, family, now)?;
    }
    match who {
        Forget::Client(id) => {
            diesel::delete(cs::consents.filter(cs::client_id.eq(id))).execute(conn)?;
            diesel::delete(ac::authorization_codes.filter(ac::client_id.eq(id))).execute(conn)?;
        }
        Forget::Person(id) => {
            diesel::delete(cs::consents.filter(cs::user_id.eq(id))).execute(conn)?;
            diesel::delete(ac::authorization_codes.filter(ac::user_id.eq(id))).execute(conn)?;
            diesel::delete(s::sessions.filter(s::user_id.eq(id))).execute(conn)?;
        }
    }
    Ok(())
}
