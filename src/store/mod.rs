//! The embedded SQLite database: deliveries, the deploy queue and the GitHub outbox.
//!
//! One connection, owned by one writer thread, does all the work. Requests queue up on a
//! channel; the thread takes every request waiting, runs each in its own savepoint inside
//! one transaction, commits once, and only then answers them all (group commit). So a
//! delivery is acknowledged only after its commit, yet concurrent deliveries share the
//! cost of one commit. SQL lives in this module's submodules and nowhere else.

pub mod deliveries;
pub mod jobs;
pub mod outbox;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// The schema, one script per version; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_initial.sql")];
/// Requests one transaction takes at most, so one batch cannot hold the others up for long.
const MAX_BATCH: usize = 512;
/// Requests that may wait for the writer before callers wait to queue more.
const QUEUE_DEPTH: usize = 4096;
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
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, then starts its
    /// writer thread. [`IN_MEMORY`] opens a database that lives as long as the process.
    pub fn open(path: &str) -> anyhow::Result<Self> {
        let mut conn = if path == IN_MEMORY {
            Connection::open_in_memory()
        } else {
            Connection::open(Path::new(path))
        }
        .with_context(|| format!("could not open the database {path:?}"))?;
        configure(&conn).with_context(|| format!("could not configure the database {path:?}"))?;
        migrate(&mut conn).with_context(|| format!("could not migrate the database {path:?}"))?;
        let (requests, queue) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("deployhook-db".into())
            .spawn(move || write_loop(conn, queue))
            .context("could not start the database thread")?;
        Ok(Self { requests })
    }

    /// Runs `work` in a transaction and returns its result once that transaction has
    /// committed. When `work` fails, its changes are rolled back and the others' kept.
    pub async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
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
        self.requests
            .send(request)
            .await
            .map_err(|_| StoreError::Closed)?;
        // A dropped reply means the batch never ran (its BEGIN failed, logged there).
        answer.await.map_err(|_| StoreError::NotRun)?
    }
}

/// Runs `work` in a savepoint: rolled back alone if it fails.
fn in_savepoint<R>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    conn.execute_batch("SAVEPOINT request")?;
    match work(conn) {
        Ok(result) => {
            conn.execute_batch("RELEASE request")?;
            Ok(result)
        }
        Err(err) => {
            conn.execute_batch("ROLLBACK TO request; RELEASE request")?;
            Err(err)
        }
    }
}

/// The writer thread: batch, commit, answer, until every [`Store`] handle is gone.
fn write_loop(conn: Connection, mut queue: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let commit_error = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                let replies: Vec<Reply> = batch.drain(..).map(|request| request(&conn)).collect();
                let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
                if committed.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                answer(replies, committed.err())
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

fn answer(replies: Vec<Reply>, error: Option<StoreError>) -> Option<StoreError> {
    for reply in replies {
        reply(error.as_ref());
    }
    error
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL: readers (a backup, the sqlite3 shell) never block the writer. synchronous=FULL
    // syncs the log at every commit, so an acknowledged delivery survives a power cut too,
    // not only a crash of the process; group commit pays that sync once per batch.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if mode != "wal" && mode != "memory" {
        tracing::warn!("the database could not switch to WAL mode (it is in {mode} mode)");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
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
    Ok(())
}

/// Now, as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
