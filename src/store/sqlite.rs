//! The embedded SQLite engine (the default): its writer thread, reader connection, and
//! the threads that sync and checkpoint its log.
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
//! database file keeps a second deployhook off it.
//!

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tokio::sync::oneshot;

use super::schema::migrate;
use super::writer::{
    self, BUSY_TIMEOUT, LogBound, Request, configure, in_savepoint, start_checkpoints,
    start_syncer, write_loop,
};
use super::{Connection, IN_MEMORY, StoreError, Trouble};
use crate::model::Sync;

/// The embedded SQLite database: its writer thread, reader and background threads.
#[derive(Debug, Clone)]
pub(super) struct SqliteStore {
    pub(super) requests: mpsc::Sender<Request>,
    /// The checkpoint thread stops once every handle (and so this) is gone.
    _alive: Arc<()>,
    /// Held while any handle lives, or until [`Store::close`]: see [`lock_exclusively`].
    pub(super) lock: Option<Arc<std::fs::File>>,
    /// Set for good once a sync to disk failed: see [`sync_loop`].
    pub(super) sync_failed: Arc<OnceLock<StoreError>>,
    /// A read-only connection for pages and scrapes, so they never queue behind (or hold
    /// up) the writer; `None` for an in-memory database, which only the writer can see.
    reader: Option<Arc<std::sync::Mutex<rusqlite::Connection>>>,
    /// The database file; `None` in memory.
    path: Option<String>,
    /// Set while writes fail for want of storage: see [`Store::write_trouble`].
    trouble: Arc<Trouble>,
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

impl SqliteStore {
    pub(super) fn open(path: &str, sync: Sync, log_limit: u64) -> anyhow::Result<Self> {
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
    pub(super) fn write_trouble(&self) -> Option<String> {
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
pub(super) fn check_directory(path: &Path) -> anyhow::Result<()> {
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
