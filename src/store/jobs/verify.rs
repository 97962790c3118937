//! Verification in the `jobs` table: a job whose command succeeded in an environment with
//! `verify` goes from `running` to `verifying` (holding its repository and environment, as
//! a running job does) until its check held or failed. Every transition is conditional on
//! the state and the owner, so that a replica that lost the lead never reports a job
//! another one took over: each job reports exactly one final status.

use crate::model::{DeployJob, DeploymentState};
use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::outbox;

use super::{CLAIMED_COLUMNS, Claimed, claimed_from_row, id_key};

/// A job being verified, as a restart or a new leader finds it.
#[derive(Debug, Clone)]
pub struct Verifying {
    pub claimed: Claimed,
    /// When its verification began (Unix ms): its timeout counts from there.
    pub started_at: i64,
}

/// Moves `job`, run by `owner`, from `running` to `verifying` and queues the `in_progress`
/// status saying `description`; `false` (nothing recorded) when `owner` no longer holds it.
pub fn begin(
    conn: &Connection,
    job: &DeployJob,
    owner: &str,
    description: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'verifying', description = ?2, verify_started_at = ?3,
                 verify_held_since = NULL, pgid = NULL, process = NULL
             WHERE deployment_id = ?1 AND state = 'running' AND owner = ?4",
        )?
        .execute(params![id_key(job.id)?, description, now, owner])?;
    if changed == 0 {
        return Ok(false);
    }
    outbox::enqueue_status(conn, job, DeploymentState::InProgress, description, now)?;
    Ok(true)
}

/// Records since when `job`'s check has passed (`None`: it just failed); `false` when
/// `owner` no longer verifies it.
pub fn record_hold(
    conn: &Connection,
    job: &DeployJob,
    owner: &str,
    held_since: Option<i64>,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET verify_held_since = ?2
             WHERE deployment_id = ?1 AND state = 'verifying' AND owner = ?3",
        )?
        .execute(params![id_key(job.id)?, held_since, owner])?;
    Ok(changed == 1)
}

/// Ends `job`'s verification in `state` — if `owner` still verifies it: `false` (nothing
/// recorded, nothing queued) otherwise. `describe` runs in the same transaction once the
/// job is marked finished, and returns the description: a rollback it records there sees
/// this job as the newest deploy, and is recorded only with this end.
pub fn finish(
    conn: &Connection,
    job: &DeployJob,
    owner: &str,
    state: DeploymentState,
    now: i64,
    describe: impl FnOnce(&Connection) -> rusqlite::Result<String>,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'finished', result = ?2, finished_at = ?3
             WHERE deployment_id = ?1 AND state = 'verifying' AND owner = ?4",
        )?
        .execute(params![id_key(job.id)?, state.as_str(), now, owner])?;
    if changed == 0 {
        return Ok(false);
    }
    let description = describe(conn)?;
    conn.prepare_cached("UPDATE jobs SET description = ?2 WHERE deployment_id = ?1")?
        .execute(params![id_key(job.id)?, description])?;
    outbox::notify_deploy(conn, job, state, &description, now)?;
    outbox::enqueue_status(conn, job, state, &description, now)?;
    Ok(true)
}

/// At start, or on taking the lead: takes over every verifying job as `owner` (the hold
/// clock restarts: nobody watched the check meanwhile) and returns them, oldest first.
pub fn take_over(conn: &Connection, owner: &str) -> rusqlite::Result<Vec<Verifying>> {
    let found: Vec<Verifying> = conn
        .prepare(&format!(
            "SELECT {CLAIMED_COLUMNS}, verify_started_at FROM jobs
             WHERE state = 'verifying' ORDER BY deployment_id"
        ))?
        .query_map([], |row| {
            Ok(Verifying {
                claimed: claimed_from_row(row)?,
                started_at: row.get::<_, Option<i64>>(12)?.unwrap_or(0),
            })
        })?
        .collect::<Result<_, _>>()?;
    conn.prepare_cached(
        "UPDATE jobs SET owner = ?1, verify_held_since = NULL WHERE state = 'verifying'",
    )?
    .execute([owner])?;
    Ok(found)
}

/// The deployment of `repository` verifying in `environment` now, if any: an operator's
/// rollback waits for its verdict (see `web::admin::actions::roll_back`).
pub fn verifying_in(
    conn: &Connection,
    repository: &str,
    environment: &str,
) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached(
        "SELECT deployment_id FROM jobs
         WHERE state = 'verifying' AND repository = ?1 AND environment = ?2",
    )?
    .query_row(params![repository, environment], |row| row.get::<_, i64>(0))
    .optional()
    .map(|id| id.map(i64::unsigned_abs))
}
