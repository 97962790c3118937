//! The store: deliveries, the deploy queue, the waits, the GitHub outbox and everything the
//! pages show, on one of two engines — the embedded SQLite database (`sqlite`: one writer
//! thread with group commit, the default) or PostgreSQL (`postgres`: several replicas on
//! one database). `Store::read` and `Store::write` run the store's domain functions (one
//! file per table, below) in one transaction on either engine; callers never learn which.
//! SQL lives in this module's submodules and nowhere else.
//!
//! Files: `error` (what a failed request means, and whether writes fail for want of
//! storage), `sqlite` (the embedded engine: its writer thread, reader and file lock), `db`
//! (the one `Connection` type the SQL runs on, either engine), `writer` (SQLite's group
//! commit, sync thread, checkpoints and the log's bound), `schema` (SQLite's migrations),
//! `postgres` (the pool, TLS, schema, the leader's lock), `retention`, and one file per
//! table: `deliveries`, `merges`, `waits` (with check results), `jobs` (with `approvals`:
//! deployments that wait for people to approve them), `locks`, `freezes` (the freeze edges
//! announced), `outbox` (with `given_up`),
//! `refused`, `logs`, `sessions`, `tokens` (personal tokens, hashed), `views` (what pages
//! show), `insights`, `audit` (who did what: append-only, written in the action's own
//! transaction), `changelogs` (what is in each deploy).
//!
//! May use: `model`.
pub mod approvals;
pub mod audit;
pub mod changelogs;
pub mod commands;
pub mod db;
pub mod deliveries;
mod error;
pub mod freezes;
pub mod insights;
pub mod jobs;
pub mod locks;
pub mod logs;
pub mod merges;
pub mod outbox;
pub mod postgres;
pub mod previews;
pub mod refused;
pub mod retention;
mod schema;
pub mod sessions;
mod sqlite;
pub mod tokens;
pub mod views;
pub mod waits;
mod writer;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use db::Connection;
pub use error::StoreError;
use error::Trouble;
pub use schema::SCHEMA_VERSION;
use sqlite::SqliteStore;
pub use sqlite::open_read_only;

use crate::model::Sync;

/// The write-ahead log's size limit unless configured otherwise.
pub const DEFAULT_LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// The path that opens a private in-memory database (for benchmarks and experiments).
pub const IN_MEMORY: &str = ":memory:";

/// A handle to the database, on either engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
}

/// The two engines: the callers of [`Store::read`] and [`Store::write`] never learn which
/// one runs their work (see [`db`]).
#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqliteStore),
    Postgres(postgres::PgStore),
}

/// Whether `database` names a PostgreSQL database (`postgres://…`, `postgresql://…`) rather
/// than a SQLite file.
pub fn is_postgres(database: &str) -> bool {
    crate::model::database::is_postgres(database)
}

impl Store {
    /// Opens (creating if needed) and migrates the SQLite database at `path`, then starts
    /// its writer thread. [`IN_MEMORY`] opens a database that lives as long as the process.
    /// The write-ahead log is kept under [`DEFAULT_LOG_LIMIT`].
    pub fn open(path: &str, sync: Sync) -> anyhow::Result<Self> {
        Self::open_with_log_limit(path, sync, DEFAULT_LOG_LIMIT)
    }

    /// [`Store::open`], keeping the write-ahead log under `log_limit` bytes.
    pub fn open_with_log_limit(path: &str, sync: Sync, log_limit: u64) -> anyhow::Result<Self> {
        crate::model::database::check_sqlite_path(path)?;
        Ok(Self {
            engine: Engine::Sqlite(SqliteStore::open(path, sync, log_limit)?),
        })
    }

    /// Opens `database`: a PostgreSQL URL (`postgres://…`, connecting and migrating it), or
    /// else a SQLite path as [`Store::open_with_log_limit`] (`sync` and `log_limit` apply to
    /// SQLite only).
    pub async fn connect(database: &str, sync: Sync, log_limit: u64) -> anyhow::Result<Self> {
        if is_postgres(database) {
            Ok(Self {
                engine: Engine::Postgres(postgres::PgStore::connect(database).await?),
            })
        } else {
            Self::open_with_log_limit(database, sync, log_limit)
        }
    }

    /// Which engine this is, for `/readyz` and the start-up line: `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL engine, for what only replicas need (leadership, heartbeats).
    pub fn postgres(&self) -> Option<&postgres::PgStore> {
        match &self.engine {
            Engine::Postgres(pg) => Some(pg),
            Engine::Sqlite(_) => None,
        }
    }

    /// At shutdown: SQLite copies its write-ahead log back into the database file and
    /// empties it (see [`SqliteStore::truncate_log`]); nothing to do on PostgreSQL.
    pub async fn close(&self) -> anyhow::Result<()> {
        match &self.engine {
            Engine::Sqlite(sqlite) => {
                // A write queued by a task aborted before this still runs: let the writer
                // finish it first, or it lands in the log after the truncation.
                let _ = sqlite.write(|_| Ok(())).await;
                let truncating = sqlite.clone();
                let truncated =
                    tokio::task::spawn_blocking(move || truncating.truncate_log()).await?;
                // Let go of the file now, not when the last handle is dropped: a task still
                // winding down (a connection closing) must not keep the next start off it.
                if let Some(lock) = &sqlite.lock {
                    let _ = lock.unlock();
                }
                truncated
            }
            Engine::Postgres(_) => Ok(()),
        }
    }

    /// Why the latest write failed, when it failed because the database could not store it
    /// (a full disk, say): `/readyz` reports it, since every delivery gets 503 meanwhile.
    pub fn write_trouble(&self) -> Option<String> {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.write_trouble(),
            Engine::Postgres(pg) => pg.trouble(),
        }
    }

    /// Whether a sync to disk failed, after which every write is refused (SQLite).
    pub fn sync_failed(&self) -> Option<&StoreError> {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.sync_failed(),
            Engine::Postgres(_) => None,
        }
    }

    /// Runs read-only `work` in one transaction, so that its queries see one snapshot of
    /// what was committed: a page read in one `work` never shows a deploy both running (in
    /// one table) and ended (in another).
    pub async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.read(work).await,
            Engine::Postgres(pg) => pg.run(true, work).await,
        }
    }

    /// Runs `work` in a transaction; resolves to its result once it has committed. When
    /// `work` fails, its changes are rolled back. Queued at once: writes made one after
    /// another commit in that order.
    pub fn write<R, F>(&self, work: F) -> impl Future<Output = Result<R, StoreError>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let engine = match &self.engine {
            Engine::Sqlite(sqlite) => Ok(sqlite.write(work)),
            Engine::Postgres(pg) => Err((pg.clone(), work)),
        };
        async move {
            match engine {
                Ok(queued) => queued.await,
                Err((pg, work)) => pg.run(false, work).await,
            }
        }
    }
}

/// How long bookkeeping writes are retried while the database refuses them.
const PERSIST_FOR: Duration = Duration::from_secs(60);

impl Store {
    /// Like [`Store::write`], for bookkeeping whose loss would wedge the queue (a deploy's
    /// end, a sent call): retried with backoff while the database refuses it (disk full,
    /// locked by a backup), for up to a minute.
    pub async fn write_persistently<R, F>(&self, what: &str, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<R> + Clone + Send + 'static,
    {
        let deadline = Instant::now() + PERSIST_FOR;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.write(work.clone()).await {
                Ok(result) => return Ok(result),
                Err(err) if Instant::now() + delay < deadline => {
                    tracing::warn!("could not record {what} ({err}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Runs read-only `work` on `database` beside a running server (a command's check): a
/// read-only SQLite connection, which needs no lock, or a PostgreSQL connection.
pub async fn read_beside<R, F>(database: &str, work: F) -> anyhow::Result<R>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
{
    if is_postgres(database) {
        let store = postgres::PgStore::connect(database).await?;
        return Ok(store.run(true, work).await?);
    }
    crate::model::database::check_sqlite_path(database)?;
    let path = std::path::PathBuf::from(database);
    tokio::task::spawn_blocking(move || {
        let conn = open_read_only(&path)?;
        let snapshot = conn.unchecked_transaction()?;
        Ok(work(&Connection::Sqlite(&snapshot))?)
    })
    .await?
}

/// An id as stored: SQLite integers are signed; GitHub's ids fit comfortably.
pub(crate) fn int_key(id: u64) -> rusqlite::Result<i64> {
    i64::try_from(id).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Now, as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
