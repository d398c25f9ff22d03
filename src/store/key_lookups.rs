//! API-key lookups, batched per worker thread.
//!
//! Every `/v1` request and every introspection of a key reads one key row. Under load many of
//! them arrive in the same turn of a worker's event loop; each becomes a waiter on the
//! thread's next batch for its store, and the first one schedules the batch as a task behind
//! the ones already ready — so every request read off the sockets in that turn joins it. The
//! batch is one read of the database (`api_keys::find_many`): one SQLite read transaction, or
//! one PostgreSQL query.
//!
//! Nothing is cached: a lookup's batch starts after the lookup was asked for, so it sees every
//! change committed before its request arrived (a revocation on any node, or by the CLI).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use super::api_keys::{self, Found};
use super::{Store, StoreError};

type Waiter = (Vec<String>, oneshot::Sender<Result<Found, StoreError>>);

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
        let (tx, rx) = oneshot::channel();
        let id = self.id;
        let first = NEXT.with(|next| {
            let mut next = next.borrow_mut();
            match next.iter_mut().find(|(store, _)| *store == id) {
                Some((_, waiters)) => {
                    waiters.push((hashes, tx));
                    false
                }
                None => {
                    next.push((id, vec![(hashes, tx)]));
                    true
                }
            }
        });
        if first {
            let store = self.clone();
            let batches = batches.clone();
            actix_rt::spawn(async move {
                let waiters = NEXT.with(|next| {
                    let mut next = next.borrow_mut();
                    let i = next.iter().position(|(store, _)| *store == id)?;
                    Some(next.swap_remove(i).1)
                });
                if let Some(waiters) = waiters {
                    batches.inc();
                    store.answer(waiters).await;
                }
            });
        }
        // The sender is dropped unanswered only if the batch task died (a panic in the store).
        rx.await
            .map_err(|_| StoreError::Pool("the key lookup was abandoned".into()))?
    }

    async fn answer(&self, waiters: Vec<Waiter>) {
        let (lookups, senders): (Vec<_>, Vec<_>) = waiters.into_iter().unzip();
        match self.read(move |c| api_keys::find_many(c, &lookups)).await {
            Ok(found) => {
                for (tx, found) in senders.into_iter().zip(found) {
                    // A request that went away no longer listens; nothing to do.
                    let _ = tx.send(Ok(found));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for tx in senders {
                    let _ = tx.send(Err(StoreError::Pool(e.clone())));
                }
            }
        }
    }
}
