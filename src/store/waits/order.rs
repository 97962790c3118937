//! The order between the waits of one repository and environment: under `latest` the newest
//! supersedes the rest and nothing deploys over a newer one that passed; under `queue` a green
//! wait passes only once no older one waits.

use crate::model::Policy;
use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::merges::marks;

use super::record::Target;
use super::settle::{OpenGate, end, forget_merge};
use super::{Ended, short};

/// Under `latest`, one wait of a kind per repository and environment: the newest. Ends the
/// older ones, or the new one itself when a newer one already waits or already passed (a
/// late delivery, or a redelivery of one that ended).
pub(super) fn supersede(
    conn: &Connection,
    target: &Target<'_>,
    id: i64,
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    if target.policy != Policy::Latest {
        return Ok(vec![]);
    }
    // A newer one already passed (a late delivery, a redelivery of a merge that failed or
    // was superseded, a late success): this one must not deploy over it.
    if let Some(newer_sha) = newer_passed_than(conn, id)? {
        let reason = format!("superseded by {}", short(&newer_sha));
        let new = end(conn, id, "superseded", &reason, now)?;
        if target.kind == "checks" {
            forget_merge(conn, &new)?;
        }
        return Ok(vec![Ended {
            kind: target.kind,
            outcome: "superseded",
        }]);
    }
    let others: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT id, sort_key, sha FROM waits INDEXED BY waits_open_by_target
             WHERE state = 'waiting' AND repository = ?1 AND environment = ?2 AND kind = ?3
               AND id != ?4",
        )?
        .query_map(
            params![
                target.new.repo.as_ref(),
                target.new.request.environment.as_ref(),
                target.kind,
                id
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut ended = Vec::new();
    for (other, sort_key, sha) in others {
        let (older, newer_sha) = if sort_key.as_str() <= target.sort_key {
            (other, target.new.request.git_ref.to_string())
        } else {
            (id, sha)
        };
        let reason = format!("superseded by {}", short(&newer_sha));
        let new = end(conn, older, "superseded", &reason, now)?;
        if target.kind == "checks" {
            forget_merge(conn, &new)?;
        }
        ended.push(Ended {
            kind: target.kind,
            outcome: "superseded",
        });
        if older == id {
            break;
        }
    }
    Ok(ended)
}

/// The commit of what wait `id` must not deploy over: a newer wait of its kind, repository
/// and environment that already passed (under `latest`), or, in any policy, a newer merge
/// already accepted there (see `merges::marks`).
pub(super) fn newer_passed_than(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    match newer_wait_passed(conn, id)? {
        Some(sha) => Ok(Some(sha)),
        None => marks::newer_than_wait(conn, id),
    }
}

/// The commit of a wait for the same kind, repository and environment as wait `id` that is
/// newer and already passed, if any: `id` must not deploy over it (under `latest`).
fn newer_wait_passed(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT newer.sha FROM waits AS this, waits AS newer INDEXED BY waits_passed
         WHERE this.id = ?1 AND this.policy = 'latest'
           AND newer.state = 'passed' AND newer.kind = this.kind
           AND newer.repository = this.repository AND newer.environment = this.environment
           AND newer.sort_key > this.sort_key
         ORDER BY newer.sort_key DESC LIMIT 1",
    )?
    .query_row([id], |row| row.get(0))
    .optional()
}

/// Under `queue`: whether a merge older than `gate`'s still waits for the same environment.
pub(super) fn older_waiting(
    conn: &Connection,
    repo: &str,
    gate: &OpenGate,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM waits INDEXED BY waits_open_by_target
                        WHERE state = 'waiting' AND repository = ?1 AND environment = ?2
                          AND kind = 'checks' AND sort_key < ?3)",
    )?
    .query_row(params![repo, gate.environment, gate.sort_key], |row| {
        row.get(0)
    })
}

/// The commit of the oldest merge waiting for `environment`'s checks, if any.
pub(super) fn oldest_waiting(
    conn: &Connection,
    repo: &str,
    environment: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT sha FROM waits INDEXED BY waits_open_by_target
         WHERE state = 'waiting' AND repository = ?1 AND environment = ?2 AND kind = 'checks'
         ORDER BY sort_key LIMIT 1",
    )?
    .query_row(params![repo, environment], |row| row.get(0))
    .optional()
}
