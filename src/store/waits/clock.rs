//! The waits' clock, run by the gate worker: soaks that are over, and waits for checks whose
//! next read of GitHub is due.

use crate::model::{CommitSha, RepoName};
use crate::store::db::{Connection, params};
use crate::store::merges::marks;
use crate::store::outbox;

use super::order::newer_passed_than;
use super::settle::end;
use super::{Ended, short};

/// What the gate worker did in one pass.
#[derive(Debug, Default)]
pub struct Tick {
    /// Reads of checks queued in the outbox.
    pub reads: usize,
    /// Deployments queued in the outbox (soaks that ended).
    pub created: usize,
    pub ended: Vec<Ended>,
}

/// The periodic pass over the waits that are due: a soak that is over creates its
/// deployment; a merge still waiting has its checks read again (the backstop for a missed
/// check event, and past the deadline the read that decides `timed_out`).
pub fn tick(conn: &Connection, poll_ms: i64, now: i64, limit: usize) -> rusqlite::Result<Tick> {
    let due: Vec<(i64, String, String, String, Option<i64>, i64)> = conn
        .prepare_cached(
            "SELECT id, kind, repository, sha, installation_id, due_at FROM waits INDEXED BY waits_due
             WHERE state = 'waiting' AND next_poll_at <= ?1
             ORDER BY next_poll_at LIMIT ?2",
        )?
        .query_map(params![now, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut tick = Tick::default();
    for (id, kind, repository, sha, installation, due_at) in due {
        if kind == "soak" {
            // A newer success already promoted (delivered before this one's soak ended):
            // promoting this one now would deploy older code over it.
            let (outcome, reason) = match newer_passed_than(conn, id)? {
                Some(newer) => ("superseded", format!("superseded by {}", short(&newer))),
                None => ("passed", "soaked; deployment created".to_owned()),
            };
            let new = end(conn, id, outcome, &reason, now)?;
            if outcome == "passed" {
                marks::accept(conn, &new, now)?;
                tick.created += 1;
            }
            tick.ended.push(Ended {
                kind: "soak",
                outcome,
            });
            continue;
        }
        let next = if due_at > now {
            (now + poll_ms).min(due_at)
        } else {
            now + poll_ms
        };
        conn.prepare_cached("UPDATE waits SET next_poll_at = ?2 WHERE id = ?1")?
            .execute(params![id, next])?;
        let (Ok(repo), Ok(sha)) = (RepoName::parse(&repository), CommitSha::parse(&sha)) else {
            continue;
        };
        let installation = installation.map(i64::unsigned_abs);
        if outbox::enqueue_read_checks(conn, &repo, &sha, installation, now)? {
            tick.reads += 1;
        }
    }
    Ok(tick)
}

/// When the next wait falls due, if any waits.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(next_poll_at) FROM waits INDEXED BY waits_due WHERE state = 'waiting'",
    )?
    .query_row([], |row| row.get(0))
}
