//! The `jobs` table: the deploy queue. A job is `queued` when its deployment event is
//! recorded (or, in an environment that asks for approvals, `approval` until they are
//! given: see [`crate::store::approvals`]), `running` once claimed (`claim`), `verifying`
//! after a command that succeeded in an environment with `verify` (see [`verify`]), and
//! `finished` with the state of its final status. Claiming and finishing also queue the
//! statuses that report them, in the same transaction, so what GitHub is told always
//! matches the queue.

use crate::store::db::{Connection, Row, params};

use crate::model::{Clearance, DeployJob, DeploymentId, DeploymentState, OnInterrupt};
use crate::store::{int_key, outbox};

mod claim;
pub mod verify;

pub(in crate::store) use claim::lock_queue;
pub use claim::{claim, claim_with_holds};

/// The commit of the newest successful deploy of `repository` to `environment`, if one is
/// still kept: what a merge's changed files are compared with for the environment's
/// `paths`. Newest by when it finished (`jobs_history`), not by id: a rollback's success
/// is what the environment runs.
pub fn last_success(
    conn: &Connection,
    repository: &str,
    environment: &str,
) -> rusqlite::Result<Option<String>> {
    use crate::store::db::OptionalExtension;
    conn.prepare_cached(
        "SELECT sha FROM jobs
         WHERE repository = ?1 AND environment = ?2 AND state = 'finished'
           AND task = 'deploy' AND result = 'success'
         ORDER BY finished_at DESC, deployment_id DESC LIMIT 1",
    )?
    .query_row(params![repository, environment], |row| row.get(0))
    .optional()
}

/// The description of a job that was running when deployhook stopped.
pub const INTERRUPTED: &str = "interrupted: deployhook restarted during the deploy";

/// Queues `job`; `false` when its deployment is already known (queued, running or run).
pub fn enqueue(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    enqueue_saying(conn, job, delivery_id, None, now)
}

/// [`enqueue`], its `queued` status saying `why` it waits (a window, a freeze) when given.
pub fn enqueue_saying(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    why: Option<&str>,
    now: i64,
) -> rusqlite::Result<bool> {
    if !enqueue_row(conn, job, delivery_id, now)? {
        return Ok(false);
    }
    let mut description = format!(
        "queued to deploy {} to {}",
        job.sha.short(),
        job.environment
    );
    if let Some(why) = why {
        description = crate::model::text::description(&format!("{description}; {why}"));
    }
    outbox::enqueue_status(conn, job, DeploymentState::Queued, &description, now)?;
    Ok(true)
}

/// Inserts `job` as `queued`, reporting nothing; `false` when its deployment is known.
pub(in crate::store) fn enqueue_row(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO jobs (deployment_id, repository, environment, sha, git_ref,
                 task, deploy_user, payload, delivery_id, state, queued_at, log_url,
                 environment_url, installation_id, forced, clearance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, ?12, ?13, ?14,
                     ?15)
             ON CONFLICT (deployment_id) DO NOTHING",
        )?
        .execute(params![
            id_key(job.id)?,
            job.repo.as_ref(),
            job.environment.as_ref(),
            job.sha.as_ref(),
            job.git_ref,
            job.task,
            job.deploy_user,
            job.payload,
            delivery_id,
            now,
            job.log_url,
            job.environment_url,
            job.installation.map(int_key).transpose()?,
            is_forced(&job.payload),
            Clearance::of(&job.payload).as_i64(),
        ])?;
    Ok(inserted == 1)
}

/// Migration 20: the clearance of each deployment still waiting (queued, or for its
/// approvals), read from its payload as [`enqueue`] reads it now.
pub(in crate::store) fn classify_waiting(conn: &Connection) -> rusqlite::Result<()> {
    let waiting: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT deployment_id, payload FROM jobs WHERE state IN ('queued', 'approval')",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, payload) in waiting {
        conn.prepare_cached("UPDATE jobs SET clearance = ?2 WHERE deployment_id = ?1")?
            .execute(params![id, Clearance::of(&payload).as_i64()])?;
    }
    Ok(())
}

/// Whether a deployment's payload forces it through a lock (`"force": true`: `deployhook
/// deploy --force`, a rollback).
pub fn is_forced(payload: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(payload)
        .is_ok_and(|p| p.get("force") == Some(&serde_json::Value::Bool(true)))
}

/// Records `job` as refused without running it (an unknown task) and queues its `error`
/// status; `false` when its deployment is already known.
pub fn refuse(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    end_unrun(conn, job, delivery_id, DeploymentState::Error, reason, now)
}

/// Records `job` as not run — it would deploy a merge older than what its environment
/// already runs (see [`marks`]) — and queues its `inactive` status saying `reason`;
/// `false` when its deployment is already known.
pub fn skip(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    end_unrun(
        conn,
        job,
        delivery_id,
        DeploymentState::Inactive,
        reason,
        now,
    )
}

/// Queues `job` and finishes it at once in `state`, so the queue's one-row-per-deployment
/// rule holds for deployments never run; `false` when its deployment is already known.
fn end_unrun(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    state: DeploymentState,
    reason: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let mut job = job.clone();
    job.log_url = None;
    if !enqueue_row(conn, &job, delivery_id, now)? {
        return Ok(false);
    }
    finish(conn, &job, state, reason, now)?;
    Ok(true)
}

/// A claimed job, with the delivery that queued it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: DeployJob,
    pub delivery_id: String,
    /// Set by the claim: the commit of the environment's previous successful deploy of
    /// the repository (`DEPLOYHOOK_PREVIOUS_SHA`), `None` when none is known.
    pub previous_sha: Option<String>,
}

pub(in crate::store) const CLAIMED_COLUMNS: &str =
    "deployment_id, repository, environment, sha, git_ref, task,
    deploy_user, payload, delivery_id, environment_url, log_url, installation_id";

pub(in crate::store) fn claimed_from_row(row: &Row<'_>) -> rusqlite::Result<Claimed> {
    let text = |i: usize| row.get::<_, String>(i);
    let parse_err = |i: usize, e: crate::model::InvalidId| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let id: i64 = row.get(0)?;
    Ok(Claimed {
        job: DeployJob {
            id: DeploymentId::from(id.unsigned_abs()),
            repo: text(1)?.parse().map_err(|e| parse_err(1, e))?,
            environment: text(2)?.parse().map_err(|e| parse_err(2, e))?,
            sha: text(3)?.parse().map_err(|e| parse_err(3, e))?,
            git_ref: text(4)?,
            task: text(5)?,
            deploy_user: text(6)?,
            payload: text(7)?,
            environment_url: row.get(9)?,
            log_url: row.get(10)?,
            installation: row.get::<_, Option<i64>>(11)?.map(i64::unsigned_abs),
        },
        delivery_id: text(8)?,
        previous_sha: None,
    })
}

/// Marks `job` finished and queues the status that reports it.
pub fn finish(
    conn: &Connection,
    job: &DeployJob,
    state: DeploymentState,
    description: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET state = 'finished', result = ?2, description = ?3, finished_at = ?4
         WHERE deployment_id = ?1",
    )?
    .execute(params![id_key(job.id)?, state.as_str(), description, now])?;
    outbox::notify_deploy(conn, job, state, description, now)?;
    outbox::enqueue_status(conn, job, state, description, now)
}

/// Marks `job`, run by `owner`, finished and queues the status that reports it; `false`
/// (nothing recorded, nothing queued) when `owner` no longer holds it: another replica
/// took over after this one lost the lead, and reported or re-ran the job itself.
pub fn finish_run(
    conn: &Connection,
    job: &DeployJob,
    owner: &str,
    state: DeploymentState,
    description: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'finished', result = ?2, description = ?3, finished_at = ?4
             WHERE deployment_id = ?1 AND state = 'running' AND owner = ?5",
        )?
        .execute(params![
            id_key(job.id)?,
            state.as_str(),
            description,
            now,
            owner
        ])?;
    if changed == 0 {
        return Ok(false);
    }
    outbox::notify_deploy(conn, job, state, description, now)?;
    outbox::enqueue_status(conn, job, state, description, now)?;
    Ok(true)
}

/// Marks `job`, still waiting for approval, finished in `state` without running it, and
/// queues the status and the event that report it, as [`finish`] does; `false` (nothing
/// recorded, nothing queued) when it no longer waits (approved, rejected or expired by a
/// transaction that committed first).
pub fn finish_awaiting(
    conn: &Connection,
    job: &DeployJob,
    state: DeploymentState,
    description: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'finished', result = ?2, description = ?3, finished_at = ?4
             WHERE deployment_id = ?1 AND state = 'approval'",
        )?
        .execute(params![id_key(job.id)?, state.as_str(), description, now])?;
    if changed == 0 {
        return Ok(false);
    }
    // It never ran: its statuses and its event point at no log.
    let job = DeployJob {
        log_url: None,
        ..job.clone()
    };
    outbox::notify_deploy(conn, &job, state, description, now)?;
    outbox::enqueue_status(conn, &job, state, description, now)?;
    Ok(true)
}

/// Queues the `in_progress` status of a claimed job.
pub fn report_started(
    conn: &Connection,
    job: &DeployJob,
    description: &str,
    now: i64,
) -> rusqlite::Result<()> {
    outbox::notify_deploy(conn, job, DeploymentState::InProgress, description, now)?;
    outbox::enqueue_status(conn, job, DeploymentState::InProgress, description, now)
}

/// At start: settles the jobs that were running when the process stopped. Returns how
/// many there were.
pub fn recover_interrupted(
    conn: &Connection,
    on_interrupt: impl Fn(&str) -> OnInterrupt,
    now: i64,
) -> rusqlite::Result<usize> {
    let interrupted: Vec<Claimed> = conn
        .prepare(
            "SELECT deployment_id, repository, environment, sha, git_ref, task, deploy_user,
                    payload, delivery_id, environment_url, log_url, installation_id
             FROM jobs WHERE state = 'running'",
        )?
        .query_map([], claimed_from_row)?
        .collect::<Result<_, _>>()?;
    for claimed in &interrupted {
        match on_interrupt(claimed.job.environment.as_ref()) {
            OnInterrupt::Error => {
                finish(conn, &claimed.job, DeploymentState::Error, INTERRUPTED, now)?;
            }
            OnInterrupt::Retry => {
                conn.execute(
                    "UPDATE jobs SET state = 'queued', started_at = NULL, owner = NULL
                     WHERE deployment_id = ?1",
                    [id_key(claimed.job.id)?],
                )?;
            }
        }
    }
    Ok(interrupted.len())
}

/// Records the process group of a running job's command, with the leader's identity, so a
/// later start can tell a leftover command from an unrelated process that reused the id.
pub fn record_process(
    conn: &Connection,
    id: DeploymentId,
    owner: &str,
    pgid: u32,
    identity: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET pgid = ?2, process = ?3
         WHERE deployment_id = ?1 AND state = 'running' AND owner = ?4",
    )?
    .execute(params![id_key(id)?, pgid, identity, owner])?;
    Ok(())
}

/// The process groups recorded for jobs still marked running: `(deployment, pgid, identity)`.
pub fn running_processes(conn: &Connection) -> rusqlite::Result<Vec<(u64, u32, String)>> {
    conn.prepare(
        "SELECT deployment_id, pgid, process FROM jobs
         WHERE state = 'running' AND pgid IS NOT NULL AND process IS NOT NULL",
    )?
    .query_map([], |row| {
        let id: i64 = row.get(0)?;
        Ok((id.unsigned_abs(), row.get(1)?, row.get(2)?))
    })?
    .collect()
}

pub(in crate::store) fn id_key(id: DeploymentId) -> rusqlite::Result<i64> {
    int_key(id.get())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_properties;
