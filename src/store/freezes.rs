//! The `freeze_notices` table: which starts and ends of freezes were announced. The
//! leader's clock inserts an edge's row and queues its notification in one transaction,
//! and only if the row is new, so each edge is told once — across restarts, and when two
//! replicas' clocks overlap for a moment after a change of leader.

use crate::model::Notification;
use crate::store::db::{Connection, params};
use crate::store::outbox;

/// How long a row is kept: longer than any edge is announced after it passed.
const KEPT_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// A freeze's start (`"start"`) or end (`"end"`) in `environment`, told as `notification`;
/// `false` (and nothing queued) when it was told before.
pub fn announce(
    conn: &Connection,
    environment: &str,
    (from, until): (i64, i64),
    edge: &str,
    notification: &Notification,
    now: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("DELETE FROM freeze_notices WHERE sent_at < ?1")?
        .execute(params![now.saturating_sub(KEPT_MS)])?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO freeze_notices (environment, freeze_from, freeze_until, edge, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (environment, freeze_from, freeze_until, edge) DO NOTHING",
        )?
        .execute(params![environment, from, until, edge, now])?;
    if inserted == 0 {
        return Ok(false);
    }
    outbox::enqueue_notification(conn, notification, now)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    #[test]
    fn an_edge_is_announced_once() {
        each_engine(|conn| {
            let told = Notification::freeze(
                &"production".parse().unwrap(),
                true,
                "frozen until 2027-01-04 09:00 UTC: holidays".into(),
                1_000,
            );
            let edge = (1_000, 2_000);
            assert!(announce(conn, "production", edge, "start", &told, 1_000).unwrap());
            assert!(!announce(conn, "production", edge, "start", &told, 1_001).unwrap());
            assert!(announce(conn, "production", edge, "end", &told, 2_000).unwrap());
            assert!(announce(conn, "staging", edge, "start", &told, 2_000).unwrap());
        });
    }
}
