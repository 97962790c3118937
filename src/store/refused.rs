//! The `refused_deliveries` table: deliveries intake refused (a bad signature, a body too
//! large, a wrong content type…), the newest [`KEEP`] only, so that an operator sees who
//! sends what without reading logs — and a flood of bad requests grows neither the disk
//! nor the work of the deliveries that count.
//!
//! Refusals reach the table through a [`RefusalLog`]: a bounded queue that one task drains
//! in batches, each one request to the writer thread (a savepoint in whatever group commit
//! is next), one batch at a time and at most one every [`PACE`]: however fast they come,
//! refusals add at most ten commits (and syncs) a second to the writer's work. A full queue
//! drops the refusal rather than wait: [`RefusalLog::record`] says so, and the caller counts
//! it. The request path pays a `try_send`, never a wait on the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::db::{Connection, OptionalExtension, Row, params};
use tokio::sync::mpsc;

use crate::store::Store;

/// Refused deliveries kept: older ones are deleted as new ones come.
pub const KEEP: i64 = 1000;
/// Refusals waiting to be written at most; past it they are dropped (and counted).
const QUEUE: usize = 1024;
/// Refusals one write takes at most.
const BATCH: usize = 512;
/// The least time between two writes of refusals: up to [`BATCH`] of them every 100 ms are
/// kept, more are dropped (and counted).
const PACE: std::time::Duration = std::time::Duration::from_millis(100);
/// The least time between two lines saying refusals could not be written: while the
/// database fails, a flood would otherwise write ten a second.
const FAILURE_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A refused delivery, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub received_at: i64,
    pub status: u16,
    /// The short name metrics count it by (`bad_signature`).
    pub reason: String,
    /// What the client was told.
    pub message: String,
    pub client: String,
    pub event: Option<String>,
    pub delivery_id: Option<String>,
    pub hook_id: Option<String>,
    /// JSON `[[name, value], …]` of the headers kept (see `webhook::intake::kept_headers`).
    pub headers: String,
}

/// A refused delivery as listed: its row id, and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRow {
    pub id: i64,
    pub refusal: Refusal,
}

/// Inserts `batch`, then deletes all but the newest [`KEEP`] rows.
pub fn insert(conn: &Connection, batch: &[Refusal]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO refused_deliveries (received_at, status, reason, message, client, event,
                                         delivery_id, hook_id, headers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for r in batch {
        insert.execute(params![
            r.received_at,
            r.status,
            r.reason,
            r.message,
            r.client,
            r.event,
            r.delivery_id,
            r.hook_id,
            r.headers
        ])?;
    }
    // Ids only grow (the newest row keeps the largest), so this is a range of the oldest.
    conn.prepare_cached(
        "DELETE FROM refused_deliveries
         WHERE id <= (SELECT MAX(id) FROM refused_deliveries) - ?1",
    )?
    .execute([KEEP])?;
    Ok(())
}

const COLUMNS: &str = "id, received_at, status, reason, message, client, event, delivery_id,
                       hook_id, headers";

fn row_from(row: &Row<'_>) -> rusqlite::Result<RefusedRow> {
    Ok(RefusedRow {
        id: row.get(0)?,
        refusal: Refusal {
            received_at: row.get(1)?,
            status: row.get(2)?,
            reason: row.get(3)?,
            message: row.get(4)?,
            client: row.get(5)?,
            event: row.get(6)?,
            delivery_id: row.get(7)?,
            hook_id: row.get(8)?,
            headers: row.get(9)?,
        },
    })
}

/// The newest refused deliveries, at most `limit`.
pub fn recent(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<RefusedRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM refused_deliveries ORDER BY id DESC LIMIT ?1"
    ))?
    .query_map([limit], row_from)?
    .collect()
}

/// The refused delivery `id`, if still kept.
pub fn find(conn: &Connection, id: i64) -> rusqlite::Result<Option<RefusedRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM refused_deliveries WHERE id = ?1"
    ))?
    .query_row([id], row_from)
    .optional()
}

/// Where refusals are handed to be written. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    queue: mpsc::Sender<Refusal>,
    /// Refusals written so far, for tests and benchmarks that wait for them.
    written: Arc<AtomicU64>,
}

impl RefusalLog {
    /// Starts the task that writes refusals into `store`; it ends once every handle is gone.
    pub fn start(store: Store) -> Self {
        let (queue, mut waiting) = mpsc::channel::<Refusal>(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let count = written.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            // Lost since the last line saying so, and when that line was written.
            let (mut lost, mut warned) = (0u64, None::<std::time::Instant>);
            while waiting.recv_many(&mut batch, BATCH).await > 0 {
                let rows = std::mem::take(&mut batch);
                let n = rows.len() as u64;
                match store.write(move |c| insert(c, &rows)).await {
                    Ok(()) => {
                        count.fetch_add(n, Ordering::Relaxed);
                    }
                    // A diagnostic only: lost, never retried, said at most once per interval.
                    Err(err) => {
                        lost += n;
                        if warned.is_none_or(|at| at.elapsed() >= FAILURE_LOG_INTERVAL) {
                            tracing::warn!(
                                lost,
                                "could not record {lost} refused deliveries: {err}"
                            );
                            (lost, warned) = (0, Some(std::time::Instant::now()));
                        }
                    }
                }
                tokio::time::sleep(PACE).await;
            }
        });
        Self { queue, written }
    }

    /// Hands `refusal` to be written; `false` when it was dropped, the queue being full.
    pub fn record(&self, refusal: Refusal) -> bool {
        self.queue.try_send(refusal).is_ok()
    }

    /// Refusals written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    fn refusal(n: i64) -> Refusal {
        Refusal {
            received_at: n,
            status: 401,
            reason: "bad_signature".into(),
            message: "signature mismatch".into(),
            client: "192.0.2.7".into(),
            event: Some("push".into()),
            delivery_id: None,
            hook_id: None,
            headers: "[]".into(),
        }
    }

    #[test]
    fn only_the_newest_refusals_are_kept() {
        each_engine(|conn| {
            let batch: Vec<Refusal> = (0..KEEP + 250).map(refusal).collect();
            for chunk in batch.chunks(100) {
                insert(conn, chunk).unwrap();
            }
            let count: i64 = conn
                .query_row("SELECT COUNT(*) FROM refused_deliveries", [], |r| r.get(0))
                .unwrap();
            assert_eq!(count, KEEP);
            let newest = recent(conn, 1).unwrap();
            assert_eq!(newest[0].refusal.received_at, KEEP + 249);
            let oldest: i64 = conn
                .query_row("SELECT MIN(received_at) FROM refused_deliveries", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(oldest, 250);
        });
    }
}
