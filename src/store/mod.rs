//! The embedded SQLite database: deliveries, the deploy queue and the GitHub outbox.
//!
//! One connection, owned by one writer thread, does all the work. Requests queue up on a
//! channel; the thread takes every request waiting, runs each in its own savepoint inside
//! one transaction, commits once, and only then answers them all (group commit). So a
//! delivery is acknowledged only after its commit, yet concurrent deliveries share the
//! cost of one commit: those that arrive while a batch runs make up the next. The thread
//! does not hold a batch open for deliveries still being parsed: the intake benchmark
//! measured no gain from that in any mode, only added latency.
//!
//! With [`Sync::Full`] the sync to disk is pipelined: the writer commits without syncing
//! and hands the batch's answers to a sync thread, which syncs the write-ahead log once for
//! every batch committed since its last sync and only then answers them. The writer goes on
//! with the next batch meanwhile, so a sync never stalls the writer, and a busy server
//! syncs once for many batches. Unlike SQLite's own `synchronous = FULL`, a commit is
//! visible to other connections (pages, `deployhook redeliver`) a moment before its sync
//! completes; everything that acts on it goes through the writer, whose answers wait for
//! the sync. A third thread checkpoints the log in the background, the writer restarts it
//! between batches once it nears its size limit (see `writer::LogBound`), and a lock on the
//! database file keeps a second deployhook off it. SQL lives in this module's submodules and
//! nowhere else.
//!
//! May use: `model`.

pub mod db;
pub mod deliveries;
pub mod insights;
pub mod jobs;
pub mod locks;
pub mod logs;
pub mod merges;
pub mod outbox;
pub mod postgres;
pub mod refused;
pub mod retention;
mod schema;
pub mod sessions;
pub mod views;
pub mod waits;
mod writer;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::oneshot;

pub use db::Connection;

use crate::model::Sync;
pub use schema::SCHEMA_VERSION;
use schema::migrate;
use writer::{
    BUSY_TIMEOUT, LogBound, Request, configure, in_savepoint, start_checkpoints, start_syncer,
    write_loop,
};

/// The write-ahead log's size limit unless configured otherwise.
pub const DEFAULT_LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// The path that opens a private in-memory database (for benchmarks and experiments).
pub const IN_MEMORY: &str = ":memory:";

/// A database request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("the database writer has stopped")]
    Closed,
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    #[error("the database could not start a transaction; see the log")]
    NotRun,
    #[error("the database rolled the transaction back (disk full? I/O error?); see the log")]
    RolledBack,
    #[error(
        "the database could not be synced to disk ({0}); deployhook refuses further writes \
         until it is restarted"
    )]
    SyncFailed(Arc<std::io::Error>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(err))
    }
}

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

/// The embedded SQLite database: its writer thread, reader and background threads.
#[derive(Debug, Clone)]
struct SqliteStore {
    requests: mpsc::Sender<Request>,
    /// The checkpoint thread stops once every handle (and so this) is gone.
    _alive: Arc<()>,
    /// Held while any handle lives, or until [`Store::close`]: see [`lock_exclusively`].
    lock: Option<Arc<std::fs::File>>,
    /// Set for good once a sync to disk failed: see [`sync_loop`].
    sync_failed: Arc<OnceLock<StoreError>>,
    /// A read-only connection for pages and scrapes, so they never queue behind (or hold
    /// up) the writer; `None` for an in-memory database, which only the writer can see.
    reader: Option<Arc<std::sync::Mutex<rusqlite::Connection>>>,
    /// The database file; `None` in memory.
    path: Option<String>,
    /// Set while writes fail for want of storage: see [`Store::write_trouble`].
    trouble: Arc<Trouble>,
}

/// Whether the latest write failed because the database could not store it (disk full,
/// I/O error, read-only file), and why. A write that succeeds clears it.
#[derive(Debug, Default)]
struct Trouble {
    failing: std::sync::atomic::AtomicBool,
    why: std::sync::Mutex<String>,
}

impl Trouble {
    /// Why writes fail, while they do.
    fn current(&self) -> Option<String> {
        self.failing
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| self.why.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn note<R>(&self, result: &Result<R, StoreError>) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => {
                // One load per write on the common path; the store only when it changes.
                if self.failing.load(Ordering::Relaxed) {
                    self.failing.store(false, Ordering::Relaxed);
                }
            }
            Err(err) if err.is_storage_failure() => {
                *self.why.lock().unwrap_or_else(|e| e.into_inner()) = err.to_string();
                self.failing.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

impl StoreError {
    /// Whether the database could not store what it was asked to: the disk is full, an I/O
    /// error, a read-only file, or a transaction rolled back whole for one of those.
    pub fn is_storage_failure(&self) -> bool {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseCorrupt, DiskFull, NotADatabase, ReadOnly, SystemIoFailure,
        };
        match self {
            Self::Sqlite(err) if postgres::is_unavailable(err) => true,
            Self::Sqlite(err) => matches!(
                err.sqlite_error_code(),
                Some(
                    DiskFull
                        | SystemIoFailure
                        | ReadOnly
                        | CannotOpen
                        | DatabaseCorrupt
                        | NotADatabase
                )
            ),
            Self::RolledBack | Self::SyncFailed(_) | Self::NotRun | Self::Unavailable(_) => true,
            Self::Closed => false,
        }
    }
}

/// Locks the database file itself (an advisory `flock`, which SQLite's own locks ignore),
/// so that a second deployhook on the same database — an overlapping restart, a second
/// unit, or the same file reached through a symlink or a hard link — stops at start instead
/// of reporting the first one's running deploys as interrupted and running its queue
/// alongside it. The lock follows the file, not its name.
fn lock_exclusively(path: &str) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("could not open the database {path:?}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another deployhook is using the database {path:?} (through this path or another \
             link to the same file): stop it first, or give this one another DEPLOYHOOK_DATABASE"
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("could not lock the database {path:?}"))
        }
    }
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

impl SqliteStore {
    fn open(path: &str, sync: Sync, log_limit: u64) -> anyhow::Result<Self> {
        if path != IN_MEMORY {
            check_directory(Path::new(path))?;
        }
        let lock = if path == IN_MEMORY {
            None
        } else {
            Some(Arc::new(lock_exclusively(path)?))
        };
        let mut conn = if path == IN_MEMORY {
            rusqlite::Connection::open_in_memory()
        } else {
            rusqlite::Connection::open(Path::new(path))
        }
        .with_context(|| format!("could not open the database {path:?}"))?;
        let pipelined = configure(&conn, sync)
            .with_context(|| format!("could not configure the database {path:?}"))?;
        migrate(&mut conn).with_context(|| format!("could not migrate the database {path:?}"))?;
        let (requests, queue) = mpsc::channel();
        let alive = Arc::new(());
        let sync_failed = Arc::new(OnceLock::new());
        let syncer = if pipelined {
            Some(
                start_syncer(&conn, sync_failed.clone())
                    .context("could not start the database sync thread")?,
            )
        } else {
            None
        };
        let bound = if path == IN_MEMORY {
            None
        } else {
            let bound = LogBound::new(&conn, log_limit)?;
            start_checkpoints(&conn, path, Arc::downgrade(&alive), &bound)
                .context("could not start the database checkpoint thread")?;
            Some(bound)
        };
        let reader = if path == IN_MEMORY {
            None
        } else {
            let reader = rusqlite::Connection::open_with_flags(
                Path::new(path),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("could not open the database {path:?} for reading"))?;
            reader.busy_timeout(BUSY_TIMEOUT)?;
            Some(Arc::new(std::sync::Mutex::new(reader)))
        };
        std::thread::Builder::new()
            .name("deployhook-db".into())
            .spawn(move || write_loop(conn, &queue, syncer.as_ref(), bound.as_ref()))
            .context("could not start the database thread")?;
        Ok(Self {
            requests,
            _alive: alive,
            lock,
            sync_failed,
            reader,
            path: (path != IN_MEMORY).then(|| path.to_owned()),
            trouble: Arc::default(),
        })
    }
}

impl SqliteStore {
    /// Copies the write-ahead log back into the database file and truncates it to nothing,
    /// waiting (up to SQLite's busy timeout) for a batch in progress: at shutdown, so that a
    /// stopped server leaves one file behind, not a log as large as the limit.
    pub fn truncate_log(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let conn = rusqlite::Connection::open(Path::new(path))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // SQLite reports busy, without waiting, when the background checkpoint holds the
        // checkpoint lock at this moment: try again until it lets go, not just once.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        while !writer::checkpoint(&conn, "TRUNCATE")? {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the database stayed busy for {BUSY_TIMEOUT:?}; its log is left for the next start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Why the latest write failed, when it failed because the database could not store it
    /// (a full disk, say): `/readyz` reports it, since every delivery gets 503 meanwhile.
    fn write_trouble(&self) -> Option<String> {
        self.trouble.current()
    }

    /// Whether a sync to disk failed, after which every write is refused (see [`sync_loop`]).
    pub fn sync_failed(&self) -> Option<&StoreError> {
        self.sync_failed.get()
    }

    /// Runs read-only `work` on the reader connection, or on the writer for an in-memory
    /// database. Either way its queries share one transaction, so they see one snapshot of
    /// what was committed: a page read in one `work` never shows a deploy both running (in
    /// one table) and ended (in another).
    pub async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let Some(reader) = self.reader.clone() else {
            return self.write(work).await;
        };
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Without it, each query would run in its own transaction and see the commits
            // made between them. Read-only: dropped at the end, nothing to commit.
            let snapshot = conn.unchecked_transaction()?;
            work(&Connection::Sqlite(&snapshot)).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::NotRun)?
    }

    /// Queues `work` at once; the future resolves to its result once its transaction has
    /// committed. When `work` fails, its changes are rolled back and the others' kept.
    pub fn write<R, F>(&self, work: F) -> impl Future<Output = Result<R, StoreError>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let refused = self.sync_failed.get().cloned();
        let trouble = self.trouble.clone();
        let request: Request = Box::new(move |conn| {
            let result = in_savepoint(conn, |conn| work(&Connection::Sqlite(conn)));
            Box::new(move |commit_error: Option<&StoreError>| {
                let result = match commit_error {
                    None => result.map_err(StoreError::from),
                    Some(err) => Err(err.clone()),
                };
                trouble.note(&result);
                let _ = reply.send(result);
            })
        });
        let queued = match refused {
            Some(err) => Err(err),
            None => self.requests.send(request).map_err(|_| StoreError::Closed),
        };
        async move {
            queued?;
            // A dropped reply means the batch never ran (its BEGIN failed, logged there).
            answer.await.map_err(|_| StoreError::NotRun)?
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

/// A read-only connection to the database at `path`, for commands that run beside the
/// server (the server's lock is not needed to read).
pub fn open_read_only(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("could not open the database {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .with_context(|| format!("{} is not a deployhook database", path.display()))?;
    anyhow::ensure!(
        version > 0,
        "{} is not a deployhook database (no schema)",
        path.display()
    );
    Ok(conn)
}

/// The database's directory must exist: SQLite would say only "unable to open database
/// file" (or name the lock file beside it), which does not tell what to fix.
fn check_directory(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "the database's directory {} does not exist: create it (mkdir -p {}) or set \
             DEPLOYHOOK_DATABASE to a file in an existing directory",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
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
