//! `Idempotency-Key` records of `/v1` POSTs (SPEC §4), shared by every node through the
//! database: the first request inserts the row (the primary key picks one winner among
//! concurrent duplicates), runs, and stores its response; later ones replay it or get a
//! conflict.
//!
//! A request's change and its record are one transaction: while a request holds a key (its
//! [`Claim`], in scope for the task that runs it), every write transaction it makes also
//! marks the record, and the routes that create something store their answer in the same
//! transaction as the change ([`record_answer`]). So after a crash (kill -9, a node lost, the
//! database gone between the change and the answer) a record tells what happened: an answer
//! (replayed), a change without its answer (`Lost`), or nothing — no change happened, and once
//! the claim's lease has run out a retry takes the key over and runs the request once. A
//! request that still runs after losing its lease cannot commit: its mark no longer matches.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;

use super::schema::idempotency_keys::dsl as i;
use super::{AnyConnection, StoreError};

/// How long a claim without a change holds its key (seconds). Far longer than a request runs
/// once its body is read (the pool waits at most 5 s per statement); after it, a request that
/// died with its node no longer blocks its retry.
pub const LEASE_SECS: i64 = 10;

/// `status` of a record whose request's change committed and whose answer is not stored yet.
const CHANGED: i32 = -1;

#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// This request holds the key from the given time (its claim's stamp): run it, then
    /// `finish` (or `abandon`).
    Started(i64),
    /// The first request's response (status, encrypted response).
    Replay(i32, String),
    /// The key was used for another request.
    Mismatch,
    /// The first request is still running.
    InFlight,
    /// The first request's change happened, and its node stopped before storing the answer.
    Lost,
}

type Seal = Box<dyn Fn(&[u8]) -> String + Send + Sync>;

/// A request holding an Idempotency-Key, for the writes it makes.
pub struct Claim {
    key_hash: String,
    stamp: i64,
    /// Seals an answer for storing (the records hold answers encrypted).
    seal: Seal,
    /// The answer to store with the change: (status, sealed response).
    answer: Mutex<Option<(i32, String)>>,
    recorded: std::sync::atomic::AtomicBool,
}

impl Claim {
    pub fn new(
        key_hash: String,
        stamp: i64,
        seal: impl Fn(&[u8]) -> String + Send + Sync + 'static,
    ) -> Arc<Claim> {
        Arc::new(Claim {
            key_hash,
            stamp,
            seal: Box::new(seal),
            answer: Mutex::new(None),
            recorded: Default::default(),
        })
    }

    /// Sets the answer (status, response body) that the change's transaction stores with it.
    pub fn will_answer(&self, status: i32, body: &[u8]) {
        let sealed = (self.seal)(body);
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some((status, sealed));
    }

    /// Whether the answer was stored with the change (then `finish` is not needed).
    pub fn recorded(&self) -> bool {
        self.recorded.load(std::sync::atomic::Ordering::Acquire)
    }
}

tokio::task_local! {
    static TASK_CLAIM: Arc<Claim>;
}

thread_local! {
    static THREAD_CLAIM: RefCell<Option<Arc<Claim>>> = const { RefCell::new(None) };
}

/// Runs `fut` (a request) holding `claim`: its store calls see it.
pub async fn holding<F: std::future::Future>(claim: Arc<Claim>, fut: F) -> F::Output {
    TASK_CLAIM.scope(claim, fut).await
}

/// The claim of the request this task runs, if any.
pub fn task_claim() -> Option<Arc<Claim>> {
    TASK_CLAIM.try_with(Arc::clone).ok()
}

/// Runs `f` (on a blocking thread) with the claim of the request it serves.
pub(super) fn on_thread<T>(claim: Option<Arc<Claim>>, f: impl FnOnce() -> T) -> T {
    if claim.is_none() {
        return f();
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            THREAD_CLAIM.with(|c| c.borrow_mut().take());
        }
    }
    THREAD_CLAIM.with(|c| *c.borrow_mut() = claim);
    let _reset = Reset;
    f()
}

fn thread_claim() -> Option<Arc<Claim>> {
    THREAD_CLAIM.with(|c| c.borrow().clone())
}

/// Inside a write transaction of a request holding a key: marks its record "changed", so
/// that the key is never taken over and run twice. Fails (and the transaction rolls back)
/// when the claim was taken over meanwhile.
pub(super) fn mark_changed(conn: &mut AnyConnection) -> Result<(), diesel::result::Error> {
    let Some(claim) = thread_claim() else {
        return Ok(());
    };
    let marked = diesel::update(
        i::idempotency_keys
            .filter(i::key_hash.eq(&claim.key_hash))
            .filter(i::created_at.eq(claim.stamp)),
    )
    .set(i::status.eq(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Integer>,
    >("COALESCE(status, -1)")))
    .execute(conn)?;
    if marked == 0 {
        return Err(diesel::result::Error::QueryBuilderError(
            "this request's Idempotency-Key was taken over by a retry".into(),
        ));
    }
    Ok(())
}

/// Inside the transaction of a change that a route answers with the answer set by
/// [`Claim::will_answer`]: stores that answer with the change.
pub fn record_answer(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let Some(claim) = thread_claim() else {
        return Ok(());
    };
    let Some((status, sealed)) = claim
        .answer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    else {
        return Ok(());
    };
    let stored = diesel::update(
        i::idempotency_keys
            .filter(i::key_hash.eq(&claim.key_hash))
            .filter(i::created_at.eq(claim.stamp)),
    )
    .set((i::status.eq(status), i::response.eq(sealed)))
    .execute(conn)?;
    if stored == 0 {
        return Err(StoreError::Conflict(
            "this request's Idempotency-Key was taken over by a retry".into(),
        ));
    }
    claim
        .recorded
        .store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

pub fn begin(
    conn: &mut AnyConnection,
    key_hash: &str,
    request_hash: &str,
    now: i64,
    ttl: i64,
) -> Result<Begin, StoreError> {
    // An expired record no longer holds the key.
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
        return Ok(Begin::Started(now));
    }
    let rows: Vec<(String, Option<i32>, Option<String>, i64)> = i::idempotency_keys
        .filter(i::key_hash.eq(key_hash))
        .select((i::request_hash, i::status, i::response, i::created_at))
        .load(conn)?;
    Ok(match rows.into_iter().next() {
        Some((hash, _, _, _)) if hash != request_hash => Begin::Mismatch,
        Some((_, Some(status), Some(response), _)) => Begin::Replay(status, response),
        Some((_, Some(CHANGED), None, stamp)) if stamp + LEASE_SECS <= now => Begin::Lost,
        // No change was made under this claim, and its lease ran out: its request died
        // (or gave up) before changing anything. Take the key over.
        Some((_, None, None, stamp)) if stamp + LEASE_SECS <= now => {
            let taken = diesel::update(
                i::idempotency_keys
                    .filter(i::key_hash.eq(key_hash))
                    .filter(i::created_at.eq(stamp))
                    .filter(i::status.is_null()),
            )
            .set(i::created_at.eq(now))
            .execute(conn)?;
            if taken == 1 {
                Begin::Started(now)
            } else {
                Begin::InFlight
            }
        }
        // Running, or given up by its request a moment ago.
        _ => Begin::InFlight,
    })
}

/// Stores the first request's response.
pub fn finish(
    conn: &mut AnyConnection,
    key_hash: &str,
    stamp: i64,
    status: i32,
    response: &str,
) -> Result<(), StoreError> {
    diesel::update(
        i::idempotency_keys
            .filter(i::key_hash.eq(key_hash))
            .filter(i::created_at.eq(stamp)),
    )
    .set((i::status.eq(status), i::response.eq(response)))
    .execute(conn)?;
    Ok(())
}

/// Frees the key of a request that ended without a response worth replaying (a server-side
/// failure) and without a change: the client may retry it.
pub fn abandon(conn: &mut AnyConnection, key_hash: &str, stamp: i64) -> Result<(), StoreError> {
    diesel::delete(
        i::idempotency_keys
            .filter(i::key_hash.eq(key_hash))
            .filter(i::created_at.eq(stamp))
            .filter(i::status.is_null()),
    )
    .execute(conn)?;
    Ok(())
}

/// Deletes expired records (and with them the encrypted responses).
pub fn purge(conn: &mut AnyConnection, now: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(i::idempotency_keys.filter(i::expires_at.le(now))).execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;
    use crate::store::{write_transaction, Store};
    use diesel::connection::SimpleConnection;

    fn claim(stamp: i64) -> Arc<Claim> {
        claim_for("k", stamp)
    }

    /// A change under a claim, as a route makes it (its answer stored with it or not).
    fn change(
        c: &mut AnyConnection,
        claim: &Arc<Claim>,
        answer: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(a) = answer {
            claim.will_answer(201, a.as_bytes());
        }
        on_thread(Some(claim.clone()), || {
            write_transaction(c, |c| {
                c.batch_execute("INSERT INTO t VALUES (1);")?;
                if answer.is_some() {
                    record_answer(c)?;
                }
                Ok::<_, StoreError>(())
            })
        })
    }

    #[test]
    fn a_crashed_request_is_replayed_taken_over_or_refused_never_run_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("t.db")), 1).unwrap();
        store.migrate().unwrap();
        let mut c = store.conn().unwrap();
        c.batch_execute("CREATE TABLE t (v INTEGER);").unwrap();
        let t = 1_000;

        // Killed after its change and answer committed, before `finish`: replayed.
        assert_eq!(begin(&mut c, "k", "r", t, 60).unwrap(), Begin::Started(t));
        let first = claim(t);
        change(&mut c, &first, Some("{\"id\":1}")).unwrap();
        assert!(first.recorded());
        assert_eq!(
            begin(&mut c, "k", "r", t + 1, 60).unwrap(),
            Begin::Replay(201, "{\"id\":1}".into())
        );

        // Killed before any change: in flight during the lease, then taken over once.
        assert_eq!(begin(&mut c, "j", "r", t, 60).unwrap(), Begin::Started(t));
        assert_eq!(begin(&mut c, "j", "r", t + 1, 60).unwrap(), Begin::InFlight);
        let late = t + LEASE_SECS;
        assert_eq!(
            begin(&mut c, "j", "r", late, 60).unwrap(),
            Begin::Started(late)
        );
        assert_eq!(begin(&mut c, "j", "r", late, 60).unwrap(), Begin::InFlight);
        // The first request, still running somewhere, can no longer commit a change.
        let stale = Claim::new("j".into(), t, |b| String::from_utf8_lossy(b).into_owned());
        assert!(change(&mut c, &stale, None).is_err());
        assert!(change(&mut c, &stale, Some("{}")).is_err());
        // A 5xx of the stale request frees nothing; the new holder's does.
        abandon(&mut c, "j", t).unwrap();
        assert_eq!(
            begin(&mut c, "j", "r", late + 1, 60).unwrap(),
            Begin::InFlight
        );
        abandon(&mut c, "j", late).unwrap();
        assert_eq!(
            begin(&mut c, "j", "r", late + 1, 60).unwrap(),
            Begin::Started(late + 1)
        );

        // A change made without its answer stored (a route that answers after the commit),
        // then killed: never taken over; after the lease, `Lost`.
        assert_eq!(begin(&mut c, "m", "r", t, 60).unwrap(), Begin::Started(t));
        change(&mut c, &claim_for("m", t), None).unwrap();
        assert_eq!(begin(&mut c, "m", "r", t + 1, 60).unwrap(), Begin::InFlight);
        assert_eq!(begin(&mut c, "m", "r", late, 60).unwrap(), Begin::Lost);
        abandon(&mut c, "m", t).unwrap();
        assert_eq!(begin(&mut c, "m", "r", late, 60).unwrap(), Begin::Lost);

        let changes: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM t")
            .get_result(&mut c)
            .unwrap();
        assert_eq!(changes, 2, "the stale request's changes were rolled back");
    }

    fn claim_for(key: &str, stamp: i64) -> Arc<Claim> {
        Claim::new(key.into(), stamp, |b| {
            String::from_utf8_lossy(b).into_owned()
        })
    }
}
