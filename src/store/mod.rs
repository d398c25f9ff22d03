//! The store: one `Store` over SQLite (the embedded default) or PostgreSQL, chosen by
//! `DATABASE_URL`, through diesel's `MultiConnection` and an r2d2 pool.
//!
//! Every query runs on actix's blocking pool (`Store::run`), but the API-key lookups: on
//! SQLite, `Store::read` runs them on the worker when a pooled connection is idle, batched
//! (`key_lookups`). Each change is one transaction. Rows owned by an organization are always read with the caller's
//! organization in the filter.

pub mod api_keys;
pub mod audit;
pub mod clients;
pub mod grants;
pub mod idempotency;
pub mod key_lookups;
pub mod keys;
pub mod orgs;
pub mod schema;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;
use crate::crypto::{Purpose, Secrets};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Runs the same diesel code on whichever backend the connection is, instantiated per backend.
/// Hot-path queries go through it: on the concrete connection, diesel caches the prepared
/// statement by query type, which it did not do through the `MultiConnection` wrapper
/// (the profile showed SQLite parsing the client lookup on every request).
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::AnyConnection::Sqlite($c) => $body,
            $crate::store::AnyConnection::Postgresql($c) => $body,
        }
    };
}

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Pool(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<r2d2::PoolError> for StoreError {
    fn from(e: r2d2::PoolError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

/// Opens connections of the kind the URL names — never falls back from one backend to
/// another (diesel's own `establish` on a MultiConnection tries each in turn, which would turn
/// an unreachable PostgreSQL into a new SQLite file named after its URL).
pub struct Manager {
    url: DatabaseUrl,
    /// When a connection attempt last failed (ms since the epoch), 0 after one succeeds.
    failing_since: Arc<AtomicI64>,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => match diesel::PgConnection::establish(&bounded(url)) {
                Ok(c) => {
                    self.failing_since.store(0, Ordering::Relaxed);
                    Ok(AnyConnection::Postgresql(c))
                }
                Err(e) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.as_millis() as i64);
                    self.failing_since.store(now, Ordering::Relaxed);
                    Err(r2d2::Error::ConnectionError(e))
                }
            },
            DatabaseUrl::Sqlite(path) => {
                configure_sqlite();
                let path = path.to_string_lossy();
                let mut conn = diesel::SqliteConnection::establish(&path)
                    .map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the one writer; the busy timeout makes writers
                // queue instead of failing; foreign keys are off by default in SQLite.
                // (busy_timeout first: switching a new file to WAL takes a lock that another
                // connection opening at the same moment must wait for, not fail on.)
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.is_broken()
    }
}

/// The PostgreSQL URL with libpq's time limits added where the URL sets none: a connection
/// attempt gives up after 5 s (`connect_timeout`), and a connection whose server stops
/// acknowledging what is sent is dropped after 10 s (`tcp_user_timeout`), so that a database
/// host that vanishes from the network (no reset, no answer) fails requests instead of
/// hanging them. (A server that crashes or restarts closes its sockets: that fails at once.)
fn bounded(url: &str) -> String {
    let mut url = url.to_string();
    for (name, value) in [("connect_timeout", "5"), ("tcp_user_timeout", "10000")] {
        let set = url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.split('=').next() == Some(name)));
        if !set {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{name}={value}"));
        }
    }
    url
}

/// SQLite's process-wide settings, once, before its first connection opens (`sqlite3_config`
/// refuses changes after SQLite has initialized, and then nothing changes):
/// - multi-thread mode instead of serialized: no mutex around every call on a connection. A
///   connection is used by one thread at a time here (r2d2 hands it out, diesel needs
///   `&mut`), which is all that mode asks; SQLite's own global mutexes stay.
/// - no memory statistics: they take a global mutex on every allocation SQLite makes, and
///   nothing reads them.
///
/// Together these were about 5 % of the instructions of a key verification (callgrind).
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use libsqlite3_sys as ffi;
        // SAFETY: sqlite3_config is called before any connection exists in this process (the
        // Once runs ahead of the first `establish`); it takes the documented arguments.
        let (threading, memstatus) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MULTITHREAD),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int),
            )
        };
        if threading != ffi::SQLITE_OK || memstatus != ffi::SQLITE_OK {
            tracing::debug!(
                threading,
                memstatus,
                "SQLite was initialized already; its global settings stay as they are"
            );
        }
    });
}

/// Statements with a fixed text that diesel prepares once per connection and then takes from
/// its statement cache (a `sql_query` or `batch_execute` is parsed again on every run).
macro_rules! fixed_statement {
    ($name:ident, $sql:literal) => {
        struct $name;
        impl diesel::query_builder::QueryId for $name {
            type QueryId = $name;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
        impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
            ) -> QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }
        impl RunQueryDsl<diesel::SqliteConnection> for $name {}
    };
}
fixed_statement!(Begin, "BEGIN");
fixed_statement!(Commit, "COMMIT");

/// Runs `f` in one SQLite read transaction: one snapshot, and the file and shared-memory locks
/// taken once for all its reads (on PostgreSQL, `f` runs as it is). The transaction always
/// ends here — a connection left inside one would keep reading the past — and a connection on
/// which it could not be ended is marked broken, so the pool closes it instead of handing it
/// out again.
pub fn sqlite_read_transaction<T>(
    c: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match c {
        AnyConnection::Sqlite(s) => Begin.execute(s)?,
        AnyConnection::Postgresql(_) => return f(c),
    };
    let out = f(c);
    if let AnyConnection::Sqlite(s) = c {
        if let Err(e) = Commit.execute(s) {
            if s.batch_execute("ROLLBACK").is_err() {
                AnsiTransactionManager::transaction_manager_status_mut(s).set_in_error();
            }
            return Err(e.into());
        }
    }
    out
}

/// Runs `f` in a write transaction. On SQLite it takes the write lock when it begins
/// (`BEGIN IMMEDIATE`, waiting out other writers under the busy timeout): a deferred `BEGIN`
/// that reads first and writes after fails at once with `SQLITE_BUSY` — without waiting —
/// when another connection commits in between, which answered 503 to a person's deletion
/// while a key's `last_used_at` was being recorded. Inside a transaction already, and on
/// PostgreSQL, it is diesel's `transaction` (a savepoint when nested).
pub fn write_transaction<T, E>(
    c: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    // A request holding an Idempotency-Key marks its record in the same transaction.
    let f = |c: &mut AnyConnection| {
        let v = f(c)?;
        idempotency::mark_changed(c)?;
        Ok(v)
    };
    let begun = match c {
        AnyConnection::Sqlite(s) => {
            let idle = AnsiTransactionManager::transaction_manager_status_mut(s)
                .transaction_depth()?
                .is_none();
            if idle {
                AnsiTransactionManager::begin_transaction_sql(s, "BEGIN IMMEDIATE")?;
            }
            idle
        }
        AnyConnection::Postgresql(_) => false,
    };
    if !begun {
        return c.transaction(f);
    }
    let out = f(c);
    let AnyConnection::Sqlite(s) = c else {
        return out;
    };
    match out {
        Ok(v) => match AnsiTransactionManager::commit_transaction(s) {
            Ok(()) => Ok(v),
            Err(e) => {
                // As diesel's own `transaction`: a commit that fails is rolled back.
                let _ = AnsiTransactionManager::rollback_transaction(s);
                Err(e.into())
            }
        },
        Err(e) => {
            if AnsiTransactionManager::rollback_transaction(s).is_err() {
                AnsiTransactionManager::transaction_manager_status_mut(s).set_in_error();
            }
            Err(e)
        }
    }
}

pub type Pool = r2d2::Pool<Manager>;

/// A pooled connection: waits up to 5 s for one, or 0.5 s while the database does not
/// answer (the last connection attempt, within the last 10 s, failed), so that an outage
/// costs each request half a second, not five, before its `503`.
fn checkout(pool: &Pool, failing_since: &AtomicI64) -> Result<Conn, r2d2::PoolError> {
    let since = failing_since.load(Ordering::Relaxed);
    if since != 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if now - since < 10_000 {
            return pool.get_timeout(Duration::from_millis(500));
        }
    }
    pool.get()
}
pub type Conn = r2d2::PooledConnection<Manager>;

#[derive(Clone)]
pub struct Store {
    /// Tells stores apart in the per-thread key-lookup batches (`key_lookups`).
    id: u64,
    pool: Pool,
    url: DatabaseUrl,
    pub postgres: bool,
    failing_since: Arc<AtomicI64>,
}

impl Store {
    /// Opens the server's pool of `size` connections (creating the SQLite file and its
    /// directory when needed). It keeps no idle reserve: r2d2 tops a reserve up from background
    /// threads, and a process that exits while one of them is inside libpq crashes in libpq's
    /// teardown (seen in CI when a test dropped its PostgreSQL database and r2d2 kept
    /// reconnecting). Connections are opened on demand and then kept while in use.
    pub fn open(url: &DatabaseUrl, size: u32) -> anyhow::Result<Store> {
        Store::open_sized(url, size, 0)
    }

    /// A pool for a one-shot command: one connection, opened on demand.
    pub fn open_for_command(url: &DatabaseUrl) -> anyhow::Result<Store> {
        Store::open_sized(url, 1, 0)
    }

    fn open_sized(url: &DatabaseUrl, size: u32, min_idle: u32) -> anyhow::Result<Store> {
        if let DatabaseUrl::Sqlite(path) = url {
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        anyhow::anyhow!(
                            "cannot create the database directory {}: {e}",
                            dir.display()
                        )
                    })?;
                }
            }
        }
        let failing_since = Arc::new(AtomicI64::new(0));
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(min_idle))
            // r2d2 would run `SELECT 1` before every checkout: one extra query per request on
            // the hot paths. A broken connection is still caught by `has_broken` and the
            // failing query answers 503.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(5))
            .build(Manager {
                url: url.clone(),
                failing_since: failing_since.clone(),
            })
            .map_err(|e| anyhow::anyhow!("cannot open the database {url:?}: {e}"))?;
        Ok(Store {
            id: key_lookups::next_store_id(),
            pool,
            url: url.clone(),
            postgres: url.is_postgres(),
            failing_since,
        })
    }

    /// Waits up to `within` for a PostgreSQL that does not answer yet (a database started
    /// beside Latchkey, a failover in progress), trying every 2 seconds and logging one
    /// warning line per failed attempt; then gives up with the last error. SQLite (a local
    /// file) is not waited for.
    pub fn wait_until_reachable(url: &DatabaseUrl, within: Duration) -> anyhow::Result<()> {
        let DatabaseUrl::Postgres(raw) = url else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        loop {
            let error = match diesel::PgConnection::establish(&bounded(raw)) {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string().trim().replace('\n', " "),
            };
            let waited = started.elapsed();
            if waited >= within {
                anyhow::bail!(
                    "cannot reach the database {url:?} (waited {} s, LATCHKEY_DATABASE_WAIT): {error}",
                    waited.as_secs()
                );
            }
            tracing::warn!(
                database = ?url,
                %error,
                "the database does not answer; retrying in 2 s"
            );
            std::thread::sleep(Duration::from_secs(2).min(within - waited));
        }
    }

    /// How many connections the pool holds at most.
    pub fn max_connections(&self) -> usize {
        self.pool.max_size() as usize
    }

    pub fn conn(&self) -> Result<Conn, StoreError> {
        Ok(checkout(&self.pool, &self.failing_since)?)
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (pool, failing_since) = (self.pool.clone(), self.failing_since.clone());
        let claim = idempotency::task_claim();
        actix_web::web::block(move || {
            let mut conn = checkout(&pool, &failing_since)?;
            idempotency::on_thread(claim, || f(&mut conn))
        })
        .await
        .map_err(|e| StoreError::Pool(format!("blocking pool: {e}")))?
    }

    /// A short indexed read (API-key verification): on SQLite, with a connection that is idle
    /// right now, it runs on the calling thread — a read of a cached page costs less than the
    /// two thread switches of the blocking pool, which dominated the key path's profile
    /// (measured: authtest 21–23.5k → 26–28k rps, interleaved runs). It never waits for a
    /// connection there: no idle connection, or PostgreSQL (a network round trip), goes
    /// through `run`.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        if !self.postgres {
            if let Some(mut conn) = self.pool.try_get() {
                return f(&mut conn);
            }
        }
        self.run(f).await
    }

    /// Applies pending migrations; returns how many ran.
    pub fn migrate(&self) -> anyhow::Result<usize> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
        migrate_on(&mut conn)
    }

    /// Everything a node or a command needs before it starts: migrations, the instance-secret
    /// check, and a signing key per algorithm. On PostgreSQL a session advisory lock makes
    /// nodes that start together against an empty database take turns. Returns the number of
    /// migrations applied and the kids of the keys created.
    pub fn setup(&self, secrets: &Secrets) -> anyhow::Result<(usize, Vec<String>)> {
        // "LATCHK"
        const SETUP_LOCK: i64 = 0x4c41_5443_484b;
        // SQLite: an exclusive flock on the database's directory (not on the database file,
        // whose POSIX locks SQLite owns), released when `_dir_lock` drops.
        let _dir_lock = match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => std::path::PathBuf::from("."),
                };
                let handle = std::fs::File::open(&dir)
                    .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
                handle
                    .lock()
                    .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", dir.display()))?;
                Some(handle)
            }
            DatabaseUrl::Postgres(_) => None,
        };
        let mut conn = self
            .pool
            .get()
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
        let postgres = matches!(&*conn, AnyConnection::Postgresql(_));
        if postgres {
            conn.batch_execute(&format!("SELECT pg_advisory_lock({SETUP_LOCK})"))?;
        }
        let result = (|| {
            let applied = migrate_on(&mut conn)?;
            check_secret_on(&mut conn, secrets)?;
            if secrets.rotating() {
                reseal_on(&mut conn, secrets)?;
            }
            let created = keys::ensure_keys(&mut conn, secrets, now())
                .map_err(|e| anyhow::anyhow!("cannot create signing keys: {e}"))?;
            Ok((applied, created))
        })();
        if postgres {
            let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({SETUP_LOCK})"));
        }
        result
    }

    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.batch_execute("SELECT 1")?;
        Ok(())
    }
}

/// Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

fn migrate_on(conn: &mut AnyConnection) -> anyhow::Result<usize> {
    match conn {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        AnyConnection::Postgresql(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    }
    .map_err(|e| anyhow::anyhow!("migration failed: {e}"))
}

/// Makes sure the database and the configured instance secret belong together: the first
/// start records a check value; later starts with another secret are refused, before they
/// could write hashes or keys that the rest of the deployment cannot read.
fn check_secret_on(conn: &mut AnyConnection, secrets: &Secrets) -> anyhow::Result<()> {
    use schema::instance::dsl as i;
    const LABEL: &[u8] = b"latchkey instance";
    write_transaction(conn, |c| {
        let stored: Option<String> = i::instance
            .filter(i::id.eq(1))
            .select(i::secret_check)
            .first(c)
            .optional()?;
        match stored {
            None => {
                diesel::insert_into(i::instance)
                    .values((i::id.eq(1), i::secret_check.eq(secrets.hash(Purpose::SecretCheck, LABEL))))
                    .execute(c)?;
                Ok(())
            }
            Some(check) if secrets.verify_hash(Purpose::SecretCheck, LABEL, &check) => {
                if !secrets.is_newest_hash(Purpose::SecretCheck, LABEL, &check) {
                    diesel::update(i::instance.filter(i::id.eq(1)))
                        .set(i::secret_check.eq(secrets.hash(Purpose::SecretCheck, LABEL)))
                        .execute(c)?;
                }
                Ok(())
            }
            Some(_) => Err(anyhow::anyhow!(
                "the instance secret does not match this database: every node of a deployment needs the same LATCHKEY_SECRET (or keys/latchkey.secret)"
            )),
        }
    })
}

/// During a rotation of the instance secret, encrypts again under the newest secret what an
/// older one encrypted: signing keys and client_secret_jwt secrets (current and previous). One
/// transaction; runs at every start while more than one secret is listed and changes only
/// rows still under an older secret. Keyed hashes cannot be moved this way (nothing here
/// knows what was hashed): API keys and client secrets move when they are next used.
fn reseal_on(conn: &mut AnyConnection, secrets: &Secrets) -> anyhow::Result<()> {
    use schema::clients::dsl as c;
    use schema::signing_keys::dsl as k;
    let (keys, clients) = write_transaction(
        conn,
        |tx| -> Result<(usize, usize), diesel::result::Error> {
            let mut keys = 0;
            let rows: Vec<(String, String)> =
                k::signing_keys.select((k::kid, k::private_key)).load(tx)?;
            for (kid, blob) in rows {
                if let Some(moved) = secrets.reseal(&blob, kid.as_bytes()) {
                    diesel::update(k::signing_keys.filter(k::kid.eq(&kid)))
                        .set(k::private_key.eq(moved))
                        .execute(tx)?;
                    keys += 1;
                }
            }
            let mut clients = 0;
            let rows: Vec<(String, Option<String>, Option<String>)> = c::clients
                .filter(
                    c::secret_enc
                        .is_not_null()
                        .or(c::prev_secret_enc.is_not_null()),
                )
                .select((c::client_id, c::secret_enc, c::prev_secret_enc))
                .load(tx)?;
            for (id, current, previous) in rows {
                let reseal = |blob: &Option<String>| {
                    blob.as_deref()
                        .and_then(|b| secrets.reseal(b, id.as_bytes()))
                };
                let (current2, previous2) = (reseal(&current), reseal(&previous));
                if current2.is_some() || previous2.is_some() {
                    diesel::update(c::clients.filter(c::client_id.eq(&id)))
                        .set((
                            c::secret_enc.eq(current2.or(current)),
                            c::prev_secret_enc.eq(previous2.or(previous)),
                        ))
                        .execute(tx)?;
                    clients += 1;
                }
            }
            Ok((keys, clients))
        },
    )?;
    if keys + clients > 0 {
        tracing::info!(
            signing_keys = keys,
            clients,
            "encrypted again under the newest instance secret"
        );
    }
    Ok(())
}

/// Microseconds since the epoch: the creation order of rows made within one second (lists
/// are ordered by it; ties are broken by id).
pub fn seq_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::BigInt;

    fn rows(c: &mut AnyConnection) -> Result<i64, StoreError> {
        Ok(diesel::dsl::sql::<BigInt>("SELECT count(*) FROM t").get_result(c)?)
    }

    /// A read transaction ends whatever its reads return: the connection's next reads see
    /// what other connections committed since (a connection left inside one would keep its
    /// old snapshot, or fail to begin the next).
    #[test]
    fn a_read_transaction_always_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("t.db")), 2).unwrap();
        let (mut reader, mut writer) = (store.conn().unwrap(), store.conn().unwrap());
        writer
            .batch_execute("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();

        let failed = sqlite_read_transaction(&mut reader, |c| {
            assert_eq!(rows(c)?, 1);
            Err::<(), _>(StoreError::Invalid("a read that fails".into()))
        });
        assert!(matches!(failed, Err(StoreError::Invalid(_))));
        writer.batch_execute("INSERT INTO t VALUES (2);").unwrap();
        assert_eq!(sqlite_read_transaction(&mut reader, rows).unwrap(), 2);
        writer.batch_execute("INSERT INTO t VALUES (3);").unwrap();
        assert_eq!(sqlite_read_transaction(&mut reader, rows).unwrap(), 3);
        // The connection is not left in a transaction: a write on it commits at once.
        reader.batch_execute("INSERT INTO t VALUES (4);").unwrap();
        assert_eq!(rows(&mut writer).unwrap(), 4);
        assert!(!ManageConnection::has_broken(
            &Manager {
                url: DatabaseUrl::Sqlite(dir.path().join("t.db")),
                failing_since: Default::default(),
            },
            &mut reader
        ));
    }

    /// A write transaction that reads first, while another connection commits a write: with
    /// a deferred BEGIN, SQLite refuses its write at once (SQLITE_BUSY, no busy wait); a
    /// write transaction holds the write lock from its start, so the other writer waits for it
    /// and both changes land.
    #[test]
    fn a_write_transaction_that_reads_first_is_not_refused_for_a_concurrent_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(&DatabaseUrl::Sqlite(path.clone()), 2).unwrap();
        let (mut a, mut b) = (store.conn().unwrap(), store.conn().unwrap());
        a.batch_execute("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();

        // What went wrong: read, another connection commits, write.
        let deferred = a.transaction(|c| {
            rows(c)?;
            b.batch_execute("INSERT INTO t VALUES (2);")?;
            c.batch_execute("INSERT INTO t VALUES (3);")?;
            Ok::<_, StoreError>(())
        });
        assert!(
            matches!(&deferred, Err(StoreError::Query(e)) if e.to_string().contains("locked")),
            "{deferred:?}"
        );
        assert_eq!(
            rows(&mut b).unwrap(),
            2,
            "the deferred transaction's write was lost"
        );

        // With the write lock taken at BEGIN the other writer waits (here a thread with a
        // busy timeout long enough) and both commit.
        let other = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b.batch_execute("INSERT INTO t VALUES (20);").map(|_| b)
        });
        let done = write_transaction(&mut a, |c| {
            let n = rows(c)?;
            std::thread::sleep(Duration::from_millis(200));
            c.batch_execute("INSERT INTO t VALUES (30);")?;
            Ok::<_, StoreError>(n)
        });
        assert_eq!(done.unwrap(), 2);
        let mut b = other
            .join()
            .unwrap()
            .expect("the other writer waited, then wrote");
        assert_eq!(rows(&mut b).unwrap(), 4);

        // Nested, it is a savepoint of the outer one; an error rolls the whole one back, and
        // the connection is usable after.
        let failed = write_transaction(&mut a, |c| {
            c.batch_execute("INSERT INTO t VALUES (40);")?;
            write_transaction(c, |c| c.batch_execute("INSERT INTO t VALUES (41);"))?;
            Err::<(), _>(StoreError::Invalid("refused".into()))
        });
        assert!(matches!(failed, Err(StoreError::Invalid(_))));
        assert_eq!(rows(&mut a).unwrap(), 4);
        write_transaction(&mut a, |c| c.batch_execute("INSERT INTO t VALUES (5);")).unwrap();
        assert_eq!(rows(&mut b).unwrap(), 5);
    }

    #[test]
    fn postgresql_connections_get_time_limits_unless_the_url_sets_them() {
        assert_eq!(
            bounded("postgres://db/app"),
            "postgres://db/app?connect_timeout=5&tcp_user_timeout=10000"
        );
        assert_eq!(
            bounded("postgres://db/app?sslmode=disable&connect_timeout=30"),
            "postgres://db/app?sslmode=disable&connect_timeout=30&tcp_user_timeout=10000"
        );
        assert_eq!(
            bounded("postgres://db/app?tcp_user_timeout=0&connect_timeout=2"),
            "postgres://db/app?tcp_user_timeout=0&connect_timeout=2"
        );
    }
}
