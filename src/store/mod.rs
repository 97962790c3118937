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
//! the sync. A third thread checkpoints the log in the background, and a lock file keeps a
//! second deployhook off the same database. SQL lives in this module's submodules and
//! nowhere else.

pub mod deliveries;
pub mod jobs;
pub mod logs;
pub mod outbox;
pub mod views;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::model::Sync;

/// The schema, one script per version; `PRAGMA user_version` records how many have run.
/// The schema version this release migrates to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_environments_and_logs.sql"),
    include_str!("migrations/0003_installations.sql"),
    include_str!("migrations/0004_deliveries_by_time.sql"),
    include_str!("migrations/0005_deliveries_in_arrival_order.sql"),
];
/// Requests one transaction takes at most, so one batch cannot hold the others up for long.
const MAX_BATCH: usize = 512;
/// How often the log is copied back into the database file, off the commit path.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// How long SQLite waits for a lock held by another process (a backup, the sqlite3 shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The path that opens a private in-memory database (for benchmarks and experiments).
pub const IN_MEMORY: &str = ":memory:";

/// A database request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("the database writer has stopped")]
    Closed,
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

/// Sends a request's result once its transaction has committed (or failed to).
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A request: runs inside the batch's transaction and returns how to answer it.
type Request = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// A handle to the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    requests: mpsc::Sender<Request>,
    /// The checkpoint thread stops once every handle (and so this) is gone.
    _alive: Arc<()>,
    /// Held while any handle lives: see [`lock_exclusively`].
    _lock: Option<Arc<std::fs::File>>,
    /// Set for good once a sync to disk failed: see [`sync_loop`].
    sync_failed: Arc<OnceLock<StoreError>>,
    /// A read-only connection for pages and scrapes, so they never queue behind (or hold
    /// up) the writer; `None` for an in-memory database, which only the writer can see.
    reader: Option<Arc<std::sync::Mutex<Connection>>>,
}

/// Takes `<database>.lock`, so a second deployhook on the same database (an overlapping
/// restart, a second unit) stops at start instead of reporting the first one's running
/// deploys as interrupted and running its queue alongside it.
fn lock_exclusively(path: &str) -> anyhow::Result<std::fs::File> {
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("could not open the lock file {lock_path:?}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another deployhook is using the database {path:?} (it holds {lock_path:?}): \
             stop it first, or give this one another DEPLOYHOOK_DATABASE"
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("could not lock {lock_path:?}"))
        }
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, then starts its
    /// writer thread. [`IN_MEMORY`] opens a database that lives as long as the process.
    pub fn open(path: &str, sync: Sync) -> anyhow::Result<Self> {
        let lock = if path == IN_MEMORY {
            None
        } else {
            Some(Arc::new(lock_exclusively(path)?))
        };
        let mut conn = if path == IN_MEMORY {
            Connection::open_in_memory()
        } else {
            Connection::open(Path::new(path))
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
        if path != IN_MEMORY {
            start_checkpoints(&conn, path, Arc::downgrade(&alive))
                .context("could not start the database checkpoint thread")?;
        }
        let reader = if path == IN_MEMORY {
            None
        } else {
            let reader = Connection::open_with_flags(
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
            .spawn(move || write_loop(conn, &queue, syncer.as_ref()))
            .context("could not start the database thread")?;
        Ok(Self {
            requests,
            _alive: alive,
            _lock: lock,
            sync_failed,
            reader,
        })
    }

    /// Whether a sync to disk failed, after which every write is refused (see [`sync_loop`]).
    pub fn sync_failed(&self) -> Option<&StoreError> {
        self.sync_failed.get()
    }

    /// Runs read-only `work` on the reader connection (a snapshot of what was committed), or
    /// on the writer for an in-memory database.
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
            work(&conn).map_err(StoreError::from)
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
        let request: Request = Box::new(move |conn| {
            let result = in_savepoint(conn, work);
            Box::new(move |commit_error: Option<&StoreError>| {
                let result = match commit_error {
                    None => result.map_err(StoreError::from),
                    Some(err) => Err(err.clone()),
                };
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

/// Runs `work` in a savepoint: rolled back alone if it fails.
fn in_savepoint<R>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    execute(conn, "SAVEPOINT request")?;
    match work(conn) {
        Ok(result) => {
            execute(conn, "RELEASE request")?;
            Ok(result)
        }
        Err(err) => {
            execute(conn, "ROLLBACK TO request")?;
            execute(conn, "RELEASE request")?;
            Err(err)
        }
    }
}

/// Runs a statement that takes no parameters, prepared once per connection.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The writer thread: batch, commit, answer (or have `syncer` answer once the commit is on
/// disk), until every [`Store`] handle is gone.
fn write_loop(conn: Connection, queue: &mpsc::Receiver<Request>, syncer: Option<&Syncer>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        let commit_error = match execute(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
                for request in batch.drain(..) {
                    replies.push(request(&conn));
                    // Some errors (disk full, I/O) make SQLite roll the whole transaction
                    // back. What follows would run outside any transaction: stop, and drop
                    // the rest unanswered (their callers see `NotRun`).
                    if conn.is_autocommit() {
                        break; // the drain drops the requests left
                    }
                }
                if conn.is_autocommit() {
                    answer(replies, Some(StoreError::RolledBack))
                } else {
                    match (execute(&conn, "COMMIT"), syncer) {
                        (Ok(()), Some(Syncer { batches, failed })) => {
                            // Should the sync thread be gone (it cannot panic today), the
                            // dropped answers tell their callers `NotRun`, and the store
                            // refuses writes from then on: nothing could be synced.
                            if batches.send(replies).is_err() {
                                let stopped = std::io::Error::other("the sync thread stopped");
                                let _ = failed.set(StoreError::SyncFailed(Arc::new(stopped)));
                            }
                            None
                        }
                        (Ok(()), None) => answer(replies, None),
                        (Err(err), _) => {
                            let _ = execute(&conn, "ROLLBACK");
                            answer(replies, Some(StoreError::from(err)))
                        }
                    }
                }
            }
            Err(err) => {
                // Dropping the requests unanswered tells their callers `NotRun`.
                batch.clear();
                Some(StoreError::from(err))
            }
        };
        if let Some(err) = commit_error {
            tracing::error!("database transaction failed: {err}");
        }
    }
}

/// Starts the thread that syncs the write-ahead log of `writer`'s database (see
/// [`sync_loop`]); the writer hands it committed batches through the returned [`Syncer`].
fn start_syncer(writer: &Connection, failed: Arc<OnceLock<StoreError>>) -> anyhow::Result<Syncer> {
    // The log exists from the first transaction in WAL mode (migrating ran one), and SQLite
    // deletes it only when the last connection closes: the writer's lives as long as this
    // thread does, so one descriptor serves for the whole run. Syncing any descriptor of a
    // file flushes what every descriptor wrote to it.
    let wal_path = wal_path(writer)?;
    let wal = std::fs::File::open(&wal_path)
        .with_context(|| format!("could not open the database log {wal_path:?}"))?;
    let (batches, committed) = mpsc::channel();
    let failed_here = failed.clone();
    std::thread::Builder::new()
        .name("deployhook-sync".into())
        .spawn(move || sync_loop(|| wal.sync_data(), &committed, &failed_here))?;
    Ok(Syncer { batches, failed })
}

/// The log SQLite writes for `conn`'s database. It sits beside the database file as SQLite
/// resolved it (through symlinks), so SQLite is asked for that name rather than trusting
/// the configured path.
fn wal_path(conn: &Connection) -> anyhow::Result<String> {
    let database = conn
        .path()
        .filter(|p| !p.is_empty())
        .context("the database has no file name")?;
    Ok(format!("{database}-wal"))
}

/// Where the writer hands committed batches, for the sync thread to answer.
struct Syncer {
    batches: mpsc::Sender<Vec<Reply>>,
    /// The store's failure, which the writer sets too should the sync thread be gone.
    failed: Arc<OnceLock<StoreError>>,
}

/// The sync thread: takes every batch committed since its last sync, syncs the log once
/// (which puts all of them on disk: they were written before the sync began), then answers
/// them. SQLite runs with `synchronous = NORMAL` here, so this sync is the one that
/// `synchronous = FULL` would make inside each commit, while the writer waited.
///
/// A failed sync is final: the kernel may have dropped the pages it could not write, so a
/// later sync that succeeds proves nothing. Every batch from then on is answered with the
/// error (never acknowledged), and the store refuses new writes until a restart, when SQLite
/// recovers from what reached the disk.
fn sync_loop(
    mut sync: impl FnMut() -> std::io::Result<()>,
    batches: &mpsc::Receiver<Vec<Reply>>,
    failed: &OnceLock<StoreError>,
) {
    let mut waiting: Vec<Vec<Reply>> = Vec::new();
    while let Ok(first) = batches.recv() {
        waiting.push(first);
        waiting.extend(batches.try_iter());
        if failed.get().is_none()
            && let Err(err) = sync()
        {
            tracing::error!(
                "could not sync the database log to disk ({err}): the latest commits may not \
                 survive a power cut; refusing every write until deployhook is restarted"
            );
            let _ = failed.set(StoreError::SyncFailed(Arc::new(err)));
        }
        for replies in waiting.drain(..) {
            answer(replies, failed.get().cloned());
        }
    }
}

fn answer(replies: Vec<Reply>, error: Option<StoreError>) -> Option<StoreError> {
    for reply in replies {
        reply(error.as_ref());
    }
    error
}

/// Configures the writer's connection; `true` when [`Sync::Full`] is to be kept by the sync
/// thread (see [`sync_loop`]) rather than by SQLite inside each commit.
fn configure(conn: &Connection, sync: Sync) -> rusqlite::Result<bool> {
    // WAL: readers (a backup, the sqlite3 shell) never block the writer.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    let wal = mode == "wal";
    if !wal && mode != "memory" {
        tracing::warn!("the database could not switch to WAL mode (it is in {mode} mode)");
    }
    // With a log, both modes commit at NORMAL and `Full` adds the sync thread's sync.
    // Without one, only SQLite itself can sync at the right moments.
    let pipelined = wal && sync == Sync::Full;
    let level = if sync == Sync::Full && !wal {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", level)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(pipelined)
}

/// Moves checkpoints (copying the log back into the database file) off the commit path: by
/// default SQLite runs one inside whichever commit fills the log, holding up every delivery
/// waiting on that commit. A thread of its own, with its own connection, checkpoints every
/// [`CHECKPOINT_INTERVAL`] instead, without blocking the writer. It stops with the store.
fn start_checkpoints(writer: &Connection, path: &str, alive: Weak<()>) -> anyhow::Result<()> {
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    let conn = Connection::open(Path::new(path))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    std::thread::Builder::new()
        .name("deployhook-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                let result: rusqlite::Result<(i64, i64, i64)> =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    });
                if let Err(err) = result {
                    tracing::warn!("database checkpoint failed (will retry): {err}");
                }
            }
        })?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let version = usize::try_from(version).context("negative schema version")?;
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "the database is at schema version {version}, newer than this deployhook knows \
         ({}): it was written by a newer release",
        MIGRATIONS.len()
    );
    for (index, script) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(script)
            .with_context(|| format!("migration {} failed", index + 1))?;
        tx.pragma_update(None, "user_version", i64::try_from(index + 1)?)?;
        tx.commit()?;
    }
    if version < MIGRATIONS.len() {
        // A migration that rebuilt a table left a log as large as the table: copy it back
        // and empty it now, rather than keep that file for the life of the database.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// A read-only connection to the database at `path`, for commands that run beside the
/// server (the server's lock is not needed to read).
pub fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
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

/// Now, as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sync_tests;
