//! Client rows. Lists are stored space-separated (redirect URIs, audiences, grant types and
//! scopes cannot contain spaces), the JWKS as JSON.

use diesel::prelude::*;

use super::schema::clients::dsl as c;
use super::{AnyConnection, StoreError};
use crate::keys::Alg;
use crate::oauth::client::{AuthMethod, Client, GrantType};
use crate::oauth::scope::ScopeSet;

#[derive(Debug, Clone, PartialEq, Queryable, Insertable, Selectable, AsChangeset)]
#[diesel(table_name = super::schema::clients, treat_none_as_null = true)]
pub struct ClientRow {
    pub client_id: String,
    pub org_id: String,
    pub name: String,
    pub auth_method: String,
    pub secret_hash: Option<String>,
    pub secret_enc: Option<String>,
    pub grant_types: String,
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub scopes: String,
    pub audiences: String,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub access_token_alg: String,
    pub id_token_alg: String,
    pub is_public: i32,
    pub is_native: i32,
    pub skip_consent: i32,
    pub created_at: i64,
    pub updated_at: i64,
    pub prev_secret_hash: Option<String>,
    pub prev_secret_enc: Option<String>,
    pub prev_secret_expires_at: Option<i64>,
    pub created_seq: i64,
    pub version: i64,
}

fn words(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;

    fn try_from(r: ClientRow) -> Result<Client, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Invalid(format!(
                "client {}: stored {what} does not parse",
                r.client_id
            ))
        };
        Ok(Client {
            auth_method: AuthMethod::parse(&r.auth_method).ok_or_else(|| corrupt("auth_method"))?,
            grant_types: r
                .grant_types
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(GrantType::parse)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| corrupt("grant_types"))?,
            scopes: ScopeSet::parse(&r.scopes).map_err(|_| corrupt("scopes"))?,
            jwks: match &r.jwks {
                Some(j) => Some(serde_json::from_str(j).map_err(|_| corrupt("jwks"))?),
                None => None,
            },
            access_token_alg: Alg::parse(&r.access_token_alg)
                .ok_or_else(|| corrupt("access_token_alg"))?,
            id_token_alg: Alg::parse(&r.id_token_alg).ok_or_else(|| corrupt("id_token_alg"))?,
            redirect_uris: words(&r.redirect_uris),
            post_logout_redirect_uris: words(&r.post_logout_redirect_uris),
            audiences: words(&r.audiences),
            public: r.is_public != 0,
            native: r.is_native != 0,
            skip_consent: r.skip_consent != 0,
            client_id: r.client_id,
            org_id: r.org_id,
            name: r.name,
            secret_hash: r.secret_hash,
            secret_enc: r.secret_enc,
            jwks_uri: r.jwks_uri,
            created_at: r.created_at,
            updated_at: r.updated_at,
            prev_secret_hash: r.prev_secret_hash,
            prev_secret_enc: r.prev_secret_enc,
            prev_secret_expires_at: r.prev_secret_expires_at,
            created_seq: r.created_seq,
            version: r.version,
        })
    }
}

impl From<&Client> for ClientRow {
    fn from(k: &Client) -> ClientRow {
        ClientRow {
            client_id: k.client_id.clone(),
            org_id: k.org_id.clone(),
            name: k.name.clone(),
            auth_method: k.auth_method.as_str().into(),
            secret_hash: k.secret_hash.clone(),
            secret_enc: k.secret_enc.clone(),
            grant_types: k
                .grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            redirect_uris: k.redirect_uris.join(" "),
            post_logout_redirect_uris: k.post_logout_redirect_uris.join(" "),
            scopes: k.scopes.to_string(),
            audiences: k.audiences.join(" "),
            jwks: k.jwks.as_ref().map(|j| j.to_string()),
            jwks_uri: k.jwks_uri.clone(),
            access_token_alg: k.access_token_alg.as_str().into(),
            id_token_alg: k.id_token_alg.as_str().into(),
            is_public: k.public as i32,
            is_native: k.native as i32,
            skip_consent: k.skip_consent as i32,
            created_at: k.created_at,
            updated_at: k.updated_at,
            prev_secret_hash: k.prev_secret_hash.clone(),
            prev_secret_enc: k.prev_secret_enc.clone(),
            prev_secret_expires_at: k.prev_secret_expires_at,
            created_seq: k.created_seq,
            version: k.version,
        }
    }
}

/// Registers a client and records `event`, in one transaction.
pub fn insert(
    conn: &mut AnyConnection,
    client: &Client,
    event: &super::audit::AuditEvent,
) -> Result<(), StoreError> {
    super::write_transaction(conn, |conn| {
        diesel::insert_into(c::clients)
            .values(ClientRow::from(client))
            .execute(conn)?;
        super::audit::insert(conn, event)?;
        super::idempotency::record_answer(conn)
    })
}

/// Writes a changed client read at `client.version` (stored as the next version) and records
/// `event`, in one transaction; a client changed by someone else since it was read is a
/// conflict, and nothing is written.
pub fn update(
    conn: &mut AnyConnection,
    client: &Client,
    event: &super::audit::AuditEvent,
) -> Result<(), StoreError> {
    let mut row = ClientRow::from(client);
    row.version = client.version + 1;
    super::write_transaction(conn, |conn| {
        let n = diesel::update(
            c::clients
                .filter(c::client_id.eq(&client.client_id))
                .filter(c::org_id.eq(&client.org_id))
                .filter(c::version.eq(client.version)),
        )
        .set(&row)
        .execute(conn)?;
        if n != 1 {
            return Err(StoreError::Conflict(
                "the client was changed or deleted meanwhile; read it again and retry".into(),
            ));
        }
        super::audit::insert(conn, event)?;
        super::idempotency::record_answer(conn)
    })
}

/// The client with this id, whatever its organization (client authentication: the id is what
/// the caller claims to be; the organization comes from the row).
pub fn find(conn: &mut AnyConnection, client_id: &str) -> Result<Option<Client>, StoreError> {
    // A primary-key filter, loaded rather than `.first()`: diesel's `LIMIT ?` makes SQLite
    // (≥ 3.47 reads bound LIMIT values while planning) re-prepare the statement on every
    // execution; the profile showed the parse as the lookup's largest cost.
    row_of(conn, client_id)?.map(Client::try_from).transpose()
}

/// One client's row, by primary key (loaded, not `.first()`: see `find`).
fn row_of(conn: &mut AnyConnection, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
    let rows: Vec<ClientRow> = crate::on_backend!(conn, |conn| c::clients
        .filter(c::client_id.eq(client_id))
        .load(conn))?;
    Ok(rows.into_iter().next())
}

/// The rows of several clients at once (one query on PostgreSQL, indexed reads on SQLite),
/// for the batches of `store::key_lookups`; ids that match no client have no row.
pub fn rows_of(conn: &mut AnyConnection, ids: &[&str]) -> Result<Vec<ClientRow>, StoreError> {
    match (conn, ids) {
        (_, []) => Ok(Vec::new()),
        (AnyConnection::Postgresql(conn), _) => {
            // PostgreSQL refuses a NUL in text outright; no client id holds one.
            let ids: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| !id.contains('\0'))
                .collect();
            Ok(c::clients.filter(c::client_id.eq_any(ids)).load(conn)?)
        }
        (conn, _) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                rows.extend(row_of(conn, id)?);
            }
            Ok(rows)
        }
    }
}

pub fn list_for_org(conn: &mut AnyConnection, org_id: &str) -> Result<Vec<Client>, StoreError> {
    let rows: Vec<ClientRow> = c::clients
        .filter(c::org_id.eq(org_id))
        .order((c::created_at.asc(), c::client_id.asc()))
        .load(conn)?;
    rows.into_iter().map(Client::try_from).collect()
}

/// The token introspection asks about: its id, the client it was issued to and its subject.
pub struct TokenRef<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    pub sub: &'a str,
}

/// The client, and whether the token is dead — revoked, or its client or person deleted since
/// — in one query (one round trip on PostgreSQL): introspection's whole database work.
pub fn find_with_revocation(
    conn: &mut AnyConnection,
    client_id: &str,
    token: Option<TokenRef<'_>>,
) -> Result<(Option<Client>, bool), StoreError> {
    use super::schema::revoked_tokens::dsl as r;
    use super::schema::users::dsl as u;
    let Some(token) = token else {
        return Ok((find(conn, client_id)?, false));
    };
    let owner = diesel::alias!(super::schema::clients as owner);
    let revoked = diesel::dsl::exists(r::revoked_tokens.filter(r::jti.eq(token.jti)));
    let client_lives =
        diesel::dsl::exists(owner.filter(owner.field(c::client_id).eq(token.client_id)));
    let person_lives = diesel::dsl::exists(u::users.filter(u::id.eq(token.sub)));
    let rows: Vec<(ClientRow, bool, bool, bool)> = crate::on_backend!(conn, |conn| c::clients
        .filter(c::client_id.eq(client_id))
        .select((ClientRow::as_select(), revoked, client_lives, person_lives))
        .load(conn))?;
    let is_person = token.sub != token.client_id;
    match rows.into_iter().next() {
        Some((row, revoked, client_lives, person_lives)) => {
            let dead = revoked || !client_lives || (is_person && !person_lives);
            Ok((Some(Client::try_from(row)?), dead))
        }
        None => Ok((None, false)),
    }
}

/// Whether some client has a redirect URI at `origin` (`scheme://host[:port]`). The LIKE is
/// only a prefilter; the exact comparison is on the parsed URIs.
pub fn origin_is_registered(conn: &mut AnyConnection, origin: &str) -> Result<bool, StoreError> {
    let pattern = format!("%{origin}%");
    let rows: Vec<String> = c::clients
        .filter(c::redirect_uris.like(pattern))
        .select(c::redirect_uris)
        .load(conn)?;
    Ok(rows
        .iter()
        .flat_map(|r| r.split(' '))
        .any(|uri| url::Url::parse(uri).is_ok_and(|u| u.origin().ascii_serialization() == origin)))
}

/// A client of `org_id` by id (the `/v1` routes: another organization's id is not found).
pub fn get_in_org(
    conn: &mut AnyConnection,
    org_id: &str,
    client_id: &str,
) -> Result<Option<Client>, StoreError> {
    let rows: Vec<ClientRow> = c::clients
        .filter(c::client_id.eq(client_id))
        .filter(c::org_id.eq(org_id))
        .load(conn)?;
    rows.into_iter().next().map(Client::try_from).transpose()
}

/// One page of an organization's clients in creation order, after `starting_after` (a client
/// of this organization; `Ok(None)` when it is not one), `limit + 1` rows at most.
pub fn list_page(
    conn: &mut AnyConnection,
    org_id: &str,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Option<Vec<Client>>, StoreError> {
    let mut query = c::clients.filter(c::org_id.eq(org_id)).into_boxed();
    if let Some(after) = starting_after {
        let Some((seq, id)) = c::clients
            .filter(c::client_id.eq(after))
            .filter(c::org_id.eq(org_id))
            .select((c::created_seq, c::client_id))
            .load::<(i64, String)>(conn)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        query = query.filter(
            c::created_seq
                .gt(seq)
                .or(c::created_seq.eq(seq).and(c::client_id.gt(id))),
        );
    }
    let rows: Vec<ClientRow> = query
        .order((c::created_seq.asc(), c::client_id.asc()))
        .limit(limit + 1)
        .load(conn)?;
    rows.into_iter()
        .map(Client::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Deletes a client of `org_id` with everything it was granted (refresh families revoked,
/// consents and codes deleted), and records `event`, in one transaction. `false` when the
/// organization has no such client.
pub fn delete_in_org(
    conn: &mut AnyConnection,
    org_id: &str,
    client_id: &str,
    now: i64,
    event: &super::audit::AuditEvent,
) -> Result<bool, StoreError> {
    super::write_transaction(conn, |conn| {
        let n = diesel::delete(
            c::clients
                .filter(c::client_id.eq(client_id))
                .filter(c::org_id.eq(org_id)),
        )
        .execute(conn)?;
        if n == 0 {
            return Ok(false);
        }
        super::grants::forget(conn, super::grants::Forget::Client(client_id), now)?;
        super::audit::insert(conn, event)?;
        Ok(true)
    })
}
