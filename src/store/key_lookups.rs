//! API-key lookups, batched per worker thread.
//!
//! Every `/v1` request and every introspection of a key reads one key row (introspection also
//! its client's). Under load many of them arrive in the same turn of a worker's event loop;
//! each becomes a waiter on the thread's next batch for its store, and the first one
//! schedules the batch as a task behind the ones already ready — so every request read off the
//! sockets in that turn joins it. The batch is one read of the database: one SQLite read
//! transaction, or one PostgreSQL query for the keys (`api_keys::find_many`) and one for the
//! clients (`clients::rows_of`).
//!
//! Nothing is cached: a lookup's batch starts after the lookup was asked for, so it sees every
//! change committed before its request arrived (a revocation on any node, or by the CLI).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use super::api_keys::{self, Found};
use super::clients::{self, ClientRow};
use super::{AnyConnection, Store, StoreError};
use crate::oauth::client::Client;

/// One lookup: the hashes of a presented key, and (at introspection) the id of the client
/// asking, read in the same batch.
struct Lookup {
    hashes: Vec<String>,
    client_id: Option<String>,
}

/// At most this many lookups share one read of the store: a bigger batch would hold a
/// worker (SQLite) or build a long query (PostgreSQL) for little more gain.
const MAX_BATCH: usize = 128;

/// A batch's keys (one per lookup, in order) and the rows of the clients asked for (or why
/// they could not be read).
type BatchRead = (Vec<Found>, Result<Vec<ClientRow>, String>);

/// What a lookup gets: the key, and the client when one was asked for.
type Answer = (Found, Option<Client>);
type Waiter = (Lookup, oneshot::Sender<Result<Answer, StoreError>>);

thread_local! {
    /// Per store (by `Store::id`): the lookups waiting for this thread's scheduled batch.
    static NEXT: RefCell<Vec<(u64, Vec<Waiter>)>> = const { RefCell::new(Vec::new()) };
}

/// A process-wide number for each opened store, so that two stores used on one thread (tests
/// run several servers in one process) never share a batch.
pub(super) fn next_store_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Store {
    /// The key whose keyed hash is one of `hashes` (one per configured instance secret), with
    /// its organization's allowlist; revoked and expired keys too (the caller decides). Must
    /// run on an actix worker (or inside a `LocalSet`): the batch is a task of this thread.
    /// `batches` counts the reads of the store (one per batch).
    pub async fn find_api_key(
        &self,
        hashes: Vec<String>,
        batches: &prometheus::IntCounter,
    ) -> Result<Found, StoreError> {
        let lookup = Lookup {
            hashes,
            client_id: None,
        };
        Ok(self.lookup(lookup, batches).await?.0)
    }

    /// `find_api_key`, and the client `client_id` (introspection's caller) in the same batch.
    pub async fn find_api_key_and_client(
        &self,
        hashes: Vec<String>,
        client_id: String,
        batches: &prometheus::IntCounter,
    ) -> Result<Answer, StoreError> {
        let lookup = Lookup {
            hashes,
            client_id: Some(client_id),
        };
        self.lookup(lookup, batches).await
    }

    async fn lookup(
        &self,
        lookup: Lookup,
        batches: &prometheus::IntCounter,
    ) -> Result<Answer, StoreError> {
        let (tx, rx) = oneshot::channel();
        let id = self.id;
        let scheduled = NEXT.with(|next| next.borrow().iter().any(|(store, _)| *store == id));
        if !scheduled {
            // Spawned before the waiter is queued (it cannot run before this task yields), so
            // that a failure to spawn leaves no queue behind for later lookups to wait on.
            let store = self.clone();
            let batches = batches.clone();
            actix_rt::spawn(async move {
                let waiters = NEXT.with(|next| {
                    let mut next = next.borrow_mut();
                    let i = next.iter().position(|(store, _)| *store == id)?;
                    Some(next.swap_remove(i).1)
                });
                if let Some(waiters) = waiters {
                    store.answer(waiters, &batches).await;
                }
            });
        }
        NEXT.with(|next| {
            let mut next = next.borrow_mut();
            match next.iter_mut().find(|(store, _)| *store == id) {
                Some((_, waiters)) => waiters.push((lookup, tx)),
                None => next.push((id, vec![(lookup, tx)])),
            }
        });
        // The sender is dropped unanswered only if the batch task died (a panic in the store).
        rx.await
            .map_err(|_| StoreError::Pool("the key lookup was abandoned".into()))?
    }

    /// Answers the waiters, at most `MAX_BATCH` per read of the store.
    async fn answer(&self, mut waiters: Vec<Waiter>, batches: &prometheus::IntCounter) {
        while !waiters.is_empty() {
            let rest = waiters.split_off(waiters.len().min(MAX_BATCH));
            batches.inc();
            self.answer_batch(waiters).await;
            waiters = rest;
        }
    }

    async fn answer_batch(&self, waiters: Vec<Waiter>) {
        let (lookups, senders): (Vec<Lookup>, Vec<_>) = waiters.into_iter().unzip();
        let read = self
            .read(move |c| {
                let reads = read_batch(c, &lookups)?;
                Ok((lookups, reads))
            })
            .await;
        let (lookups, (keys, client_rows)) = match read {
            Ok(read) => read,
            Err(e) => {
                let e = e.to_string();
                for tx in senders {
                    let _ = tx.send(Err(StoreError::Pool(e.clone())));
                }
                return;
            }
        };
        // A failure to read the clients fails only the lookups that asked for one.
        let clients: Result<HashMap<&str, &ClientRow>, &String> = client_rows
            .as_ref()
            .map(|rows| rows.iter().map(|r| (r.client_id.as_str(), r)).collect());
        for ((lookup, key), tx) in lookups.into_iter().zip(keys).zip(senders) {
            let answer = match (lookup.client_id, &clients) {
                (None, _) => Ok((key, None)),
                (Some(_), Err(e)) => Err(StoreError::Pool((*e).clone())),
                (Some(id), Ok(clients)) => clients
                    .get(id.as_str())
                    .map(|row| Client::try_from((*row).clone()))
                    .transpose()
                    .map(|client| (key, client)),
            };
            // A request that went away no longer listens; nothing to do.
            let _ = tx.send(answer);
        }
    }
}

/// The keys and clients of a batch. SQLite reads them in one read transaction when there is
/// more than one read: its lock round trip (file and shared-memory locks, and the workers'
/// contention on them — most of a lookup's cost when measured) is paid once per batch.
fn read_batch(c: &mut AnyConnection, lookups: &[Lookup]) -> Result<BatchRead, StoreError> {
    let hashes: Vec<&[String]> = lookups.iter().map(|l| l.hashes.as_slice()).collect();
    // A resource server introspecting many keys asks as one client: read it once.
    let mut client_ids: Vec<&str> = lookups
        .iter()
        .filter_map(|l| l.client_id.as_deref())
        .collect();
    client_ids.sort_unstable();
    client_ids.dedup();
    let read = |c: &mut AnyConnection| -> Result<BatchRead, StoreError> {
        let keys = api_keys::find_many(c, &hashes)?;
        let clients = clients::rows_of(c, &client_ids).map_err(|e| e.to_string());
        Ok((keys, clients))
    };
    if lookups.len() + client_ids.len() > 1 {
        super::sqlite_read_transaction(c, read)
    } else {
        read(c)
    }
}
