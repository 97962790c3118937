//! The writer thread and its helpers: the one connection that does all the work, its
//! batches (each request in its own savepoint, one commit for all), the sync thread that
//! puts committed batches on disk before they are answered, and the checkpoint thread.
//! The module doc of [`crate::store`] says why it is built this way.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

use crate::model::Sync;
use crate::store::StoreError;

/// Requests one transaction takes at most, so one batch cannot hold the others up for long.
pub(super) const MAX_BATCH: usize = 512;
/// How often the log is copied back into the database file, off the commit path.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// How often the checkpoint thread looks at the log's length (a number the writer keeps).
pub(super) const LOG_SIZE_CHECK: Duration = Duration::from_millis(100);
/// How long SQLite waits for a lock held by another process (a backup, the sqlite3 shell).
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends a request's result once its transaction has committed (or failed to).
pub(super) type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A request: runs inside the batch's transaction and returns how to answer it.
pub(super) type Request = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// Runs `work` in a savepoint: rolled back alone if it fails.
pub(super) fn in_savepoint<R>(
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
pub(super) fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The writer thread: batch, commit, answer (or have `syncer` answer once the commit is on
/// disk), until every [`Store`] handle is gone.
pub(super) fn write_loop(
    mut conn: Connection,
    queue: &mpsc::Receiver<Request>,
    syncer: Option<&Syncer>,
    bound: Option<&LogBound>,
) {
    if let Some(bound) = bound
        && let Err(err) = bound.watch(&mut conn)
    {
        tracing::warn!("cannot watch the database log's size: {err}");
    }
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
        if let Some(bound) = bound {
            bound.keep(&conn);
        }
    }
}

/// Keeps the write-ahead log under its limit, from the writer thread, between batches.
///
/// The checkpoint thread's passive checkpoints copy the log back into the database without
/// blocking anyone, but they never make the writer start over at the log's beginning: under
/// sustained writes (a flood of deliveries, a deploy printing gigabytes) the log grows for
/// as long as they last. So once the log passes a quarter of the limit, the writer itself,
/// between two batches, runs a restarting checkpoint: it copies back only what the passive
/// ones have not yet, syncs, and the next batch starts at the beginning of the same file.
/// Done here, it costs the writer that copy and nothing else; from another thread it made
/// both sides wait on each other through SQLite's busy handler, which sleeps in steps of
/// milliseconds, and cost the intake benchmark a third of its durable throughput. The
/// file is reused, not truncated: a log that grows again after each truncation costs every
/// commit a change of file size to sync.
#[derive(Debug)]
pub(super) struct LogBound {
    /// The limit, in bytes.
    pub(super) limit: u64,
    /// Frames in the log after the latest commit, as SQLite reports them. The file's size
    /// says nothing once the log restarts: the file is reused from its beginning.
    pub(super) frames: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes a frame takes: a page and its header.
    pub(super) frame_bytes: u64,
}

impl LogBound {
    pub(super) fn new(conn: &Connection, limit: u64) -> rusqlite::Result<Self> {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        Ok(Self {
            limit,
            frames: Arc::default(),
            frame_bytes: page.unsigned_abs() + 24,
        })
    }

    /// Has SQLite report the log's length after each commit (after `wal_autocheckpoint`
    /// was set, which would replace the hook).
    fn watch(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        let frames = self.frames.clone();
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                frames.store(
                    u64::try_from(pages).unwrap_or(0),
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok(())
            },
        ))
    }

    fn keep(&self, conn: &Connection) {
        let used = self.frames.load(std::sync::atomic::Ordering::Relaxed) * self.frame_bytes;
        if used <= self.limit / 4 {
            return;
        }
        // Past half the limit, wait a little for a passive checkpoint or a reader in the
        // way; below it, try again after the next batch rather than wait at all.
        let patience = if used > self.limit / 2 {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let restarted = conn
            .busy_timeout(patience)
            .and_then(|()| checkpoint(conn, "RESTART"));
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        match restarted {
            // The next commit starts over; until then, count nothing left to restart.
            Ok(true) => self.frames.store(0, std::sync::atomic::Ordering::Relaxed),
            Ok(false) => {} // busy: after the next batch
            Err(err) => tracing::warn!("could not restart the database log (will retry): {err}"),
        }
    }
}

/// Starts the thread that syncs the write-ahead log of `writer`'s database (see
/// [`sync_loop`]); the writer hands it committed batches through the returned [`Syncer`].
pub(super) fn start_syncer(
    writer: &Connection,
    failed: Arc<OnceLock<StoreError>>,
) -> anyhow::Result<Syncer> {
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
pub(super) fn wal_path(conn: &Connection) -> anyhow::Result<String> {
    let database = conn
        .path()
        .filter(|p| !p.is_empty())
        .context("the database has no file name")?;
    Ok(format!("{database}-wal"))
}

/// Where the writer hands committed batches, for the sync thread to answer.
pub(super) struct Syncer {
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
pub(super) fn sync_loop(
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

pub(super) fn answer(replies: Vec<Reply>, error: Option<StoreError>) -> Option<StoreError> {
    for reply in replies {
        reply(error.as_ref());
    }
    error
}

/// Configures the writer's connection; `true` when [`Sync::Full`] is to be kept by the sync
/// thread (see [`sync_loop`]) rather than by SQLite inside each commit.
pub(super) fn configure(conn: &Connection, sync: Sync) -> rusqlite::Result<bool> {
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
///
/// Once the log passes an eighth of `log_limit` it checkpoints every [`LOG_SIZE_CHECK`], so
/// that the writer's restarting checkpoint ([`LogBound`]) has little left to copy.
/// `journal_size_limit` trims the log to the limit whenever SQLite restarts it.
pub(super) fn start_checkpoints(
    writer: &Connection,
    path: &str,
    alive: Weak<()>,
    bound: &LogBound,
) -> anyhow::Result<()> {
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    let log_limit = bound.limit;
    writer.pragma_update(None, "journal_size_limit", i64::try_from(log_limit)?)?;
    let conn = Connection::open(Path::new(path))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let (frames, frame_bytes) = (bound.frames.clone(), bound.frame_bytes);
    std::thread::Builder::new()
        .name("deployhook-checkpoint".into())
        .spawn(move || {
            let mut last_checkpoint = std::time::Instant::now();
            while alive.strong_count() > 0 {
                std::thread::sleep(LOG_SIZE_CHECK);
                // Under a flood, copy back as the log grows, so that the writer's
                // restarting checkpoint (see [`LogBound`]) finds little left to copy.
                let used = frames.load(std::sync::atomic::Ordering::Relaxed) * frame_bytes;
                if used <= log_limit / 8 && last_checkpoint.elapsed() < CHECKPOINT_INTERVAL {
                    continue;
                }
                if let Err(err) = checkpoint(&conn, "PASSIVE") {
                    tracing::warn!("database checkpoint failed (will retry): {err}");
                }
                last_checkpoint = std::time::Instant::now();
            }
        })?;
    Ok(())
}

/// Runs a checkpoint in `mode` (`PASSIVE`, `RESTART`, `TRUNCATE`); whether it did all it
/// was asked (SQLite reports a checkpoint kept from it by a lock as busy, not an error).
pub(super) fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<bool> {
    let (busy, _log, _copied): (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok(busy == 0)
}

#[cfg(test)]
mod tests;
