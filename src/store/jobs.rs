//! The `jobs` table: the deploy queue. A job is `queued` when its deployment event is
//! recorded, `running` once claimed, and `finished` with the state of its final status.
//! Claiming and finishing also queue the statuses that report them, in the same
//! transaction, so what GitHub is told always matches the queue.

use crate::store::db::{Connection, Dialect, OptionalExtension, Row, params};

use crate::model::{DeployJob, DeploymentId, DeploymentState, OnInterrupt, Policy};
use crate::store::merges::marks;
use crate::store::{int_key, locks, outbox};

/// The transaction-level advisory lock that serialises claims (PostgreSQL).
const CLAIM_LOCK: i64 = 0x6465_706c_6f79_0003;

/// The description of a job that was running when deployhook stopped.
pub const INTERRUPTED: &str = "interrupted: deployhook restarted during the deploy";

/// Queues `job`; `false` when its deployment is already known (queued, running or run).
pub fn enqueue(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    if !enqueue_row(conn, job, delivery_id, now)? {
        return Ok(false);
    }
    let description = format!(
        "queued to deploy {} to {}",
        job.sha.short(),
        job.environment
    );
    outbox::enqueue_status(conn, job, DeploymentState::Queued, &description, now)?;
    Ok(true)
}

fn enqueue_row(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO jobs (deployment_id, repository, environment, sha, git_ref,
                 task, deploy_user, payload, delivery_id, state, queued_at, log_url,
                 environment_url, installation_id, forced)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, ?12, ?13, ?14)
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
        ])?;
    Ok(inserted == 1)
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
}

/// Claims what may start now: per repository + environment with nothing running, the
/// oldest queued job (`Queue`) or the newest (`Latest`, which retires the older ones), while
/// fewer than `max_running` run in all. In a locked environment only forced jobs start
/// (oldest or newest the same way); the others stay queued, untouched, for the unlock. Deployment ids order the jobs: GitHub numbers
/// deployments in the order it creates them, whatever order their events arrive in.
///
/// It reads one row per waiting pair, never the whole queue: ten thousand deployments
/// queued for one environment cost a claim what one does.
pub fn claim(
    conn: &Connection,
    owner: &str,
    max_running: usize,
    policy: impl Fn(&str) -> Policy,
    now: i64,
) -> rusqlite::Result<Vec<Claimed>> {
    if conn.dialect() == Dialect::Postgres {
        // One claim at a time across replicas: the leader's, and for a moment after a lost
        // lead its predecessor's. The later one waits, then sees what the first started (a
        // partial unique index also allows one running job per repository + environment).
        conn.query_row("SELECT pg_advisory_xact_lock(?1)", [CLAIM_LOCK], |_| Ok(()))?;
    }
    let running: Vec<(String, String)> = conn
        .prepare_cached("SELECT repository, environment FROM jobs WHERE state = 'running'")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut free = max_running.saturating_sub(running.len());
    if free == 0 {
        return Ok(vec![]);
    }
    // Pairs take turns by their oldest waiting deployment, so no repository waits forever
    // behind busier ones when all slots are taken.
    let mut waiting: Vec<(i64, (String, String))> = Vec::new();
    for pair in waiting_pairs(conn)? {
        if !running.contains(&pair) {
            let oldest = edge_of_queue(conn, &pair, "ASC")?;
            waiting.push((oldest, pair));
        }
    }
    waiting.sort();
    let mut started = Vec::new();
    for (_, pair) in waiting {
        if free == 0 {
            break;
        }
        if locks::holding(conn, &pair.1, now)?.is_some() {
            let Some(forced) = forced_job(conn, &pair, policy(&pair.1))? else {
                continue;
            };
            // Under `latest` the newest forced one wins over older forced ones, as
            // anywhere; the others wait for the unlock, untouched.
            if policy(&pair.1) == Policy::Latest {
                for older in queued_before(conn, &pair, forced.job.id)? {
                    if is_forced(&older.job.payload) {
                        supersede(conn, &older.job, forced.job.id, now)?;
                    }
                }
            }
            start(conn, &forced.job, owner, now)?;
            started.push(forced);
            free -= 1;
            continue;
        }
        let Some(next) = next_in_order(conn, &pair, policy(&pair.1), now)? else {
            continue;
        };
        start(conn, &next.job, owner, now)?;
        started.push(next);
        free -= 1;
    }
    Ok(started)
}

/// The job of `pair` to start: the oldest queued (`Queue`) or the newest (`Latest`, which
/// retires the older ones). One that would deploy a merge older than what an automatic
/// deploy already started there (a `deployment` event delivered late) is not run: it ends
/// `inactive`, saying why, and the next in line is taken.
fn next_in_order(
    conn: &Connection,
    pair: &(String, String),
    policy: Policy,
    now: i64,
) -> rusqlite::Result<Option<Claimed>> {
    let edge = match policy {
        Policy::Queue => "ASC",
        Policy::Latest => "DESC",
    };
    loop {
        let Some(id) = edge_of_queue(conn, pair, edge).optional()? else {
            return Ok(None);
        };
        let next = queued_job(conn, id)?;
        if let Some(why) = marks::refuses_start(conn, &next.job)? {
            tracing::info!(deployment = next.job.id.get(), "{why}");
            finish(conn, &next.job, DeploymentState::Inactive, &why, now)?;
            continue;
        }
        if policy == Policy::Latest {
            for older in queued_before(conn, pair, next.job.id)? {
                supersede(conn, &older.job, next.job.id, now)?;
            }
        }
        return Ok(Some(next));
    }
}

/// The repository + environment pairs with queued jobs, read by stepping through the
/// `jobs_by_state` index one repository, then one environment, at a time. (A row-value
/// bound on both columns would be read as a bound on the repository alone, walking every
/// job of the repository.)
fn waiting_pairs(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut next_repository = conn.prepare_cached(
        "SELECT repository FROM jobs WHERE state = 'queued' AND repository > ?1
         ORDER BY repository LIMIT 1",
    )?;
    let mut next_environment = conn.prepare_cached(
        "SELECT environment FROM jobs
         WHERE state = 'queued' AND repository = ?1 AND environment > ?2
         ORDER BY environment LIMIT 1",
    )?;
    let mut pairs = Vec::new();
    let mut repository = String::new();
    while let Some(next) = next_repository
        .query_row([&repository], |row| row.get::<_, String>(0))
        .optional()?
    {
        repository = next;
        let mut environment = String::new();
        while let Some(next) = next_environment
            .query_row(params![repository, environment], |row| {
                row.get::<_, String>(0)
            })
            .optional()?
        {
            environment = next;
            pairs.push((repository.clone(), environment.clone()));
        }
    }
    Ok(pairs)
}

/// The oldest (`ASC`) or newest (`DESC`) queued deployment id of `pair`: one step down
/// `jobs_by_state`, whose entries end with the deployment id.
fn edge_of_queue(conn: &Connection, pair: &(String, String), order: &str) -> rusqlite::Result<i64> {
    let sql = format!(
        "SELECT deployment_id FROM jobs
         WHERE state = 'queued' AND repository = ?1 AND environment = ?2
         ORDER BY deployment_id {order} LIMIT 1"
    );
    conn.prepare_cached(&sql)?
        .query_row(params![pair.0, pair.1], |row| row.get(0))
}

const CLAIMED_COLUMNS: &str = "deployment_id, repository, environment, sha, git_ref, task,
    deploy_user, payload, delivery_id, environment_url, log_url, installation_id";

fn queued_job(conn: &Connection, id: i64) -> rusqlite::Result<Claimed> {
    conn.prepare_cached(&format!(
        "SELECT {CLAIMED_COLUMNS} FROM jobs WHERE deployment_id = ?1"
    ))?
    .query_row([id], claimed_from_row)
}

/// The oldest (`Queue`) or newest (`Latest`) forced job queued for `pair`, if any.
fn forced_job(
    conn: &Connection,
    pair: &(String, String),
    policy: Policy,
) -> rusqlite::Result<Option<Claimed>> {
    let order = match policy {
        Policy::Queue => "ASC",
        Policy::Latest => "DESC",
    };
    conn.prepare_cached(&format!(
        "SELECT {CLAIMED_COLUMNS} FROM jobs INDEXED BY jobs_forced
         WHERE state = 'queued' AND forced = 1 AND repository = ?1 AND environment = ?2
         ORDER BY deployment_id {order} LIMIT 1"
    ))?
    .query_row(params![pair.0, pair.1], claimed_from_row)
    .optional()
}

/// The jobs of `pair` queued before `newest`, which supersedes them.
fn queued_before(
    conn: &Connection,
    pair: &(String, String),
    newest: DeploymentId,
) -> rusqlite::Result<Vec<Claimed>> {
    conn.prepare_cached(&format!(
        "SELECT {CLAIMED_COLUMNS} FROM jobs
         WHERE state = 'queued' AND repository = ?1 AND environment = ?2
           AND deployment_id < ?3
         ORDER BY deployment_id"
    ))?
    .query_map(params![pair.0, pair.1, id_key(newest)?], claimed_from_row)?
    .collect()
}

fn claimed_from_row(row: &Row<'_>) -> rusqlite::Result<Claimed> {
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
    })
}

fn start(conn: &Connection, job: &DeployJob, owner: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET state = 'running', started_at = ?2, owner = ?3 WHERE deployment_id = ?1",
    )?
    .execute(params![id_key(job.id)?, now, owner])?;
    marks::started(conn, job, now)
}

fn supersede(
    conn: &Connection,
    job: &DeployJob,
    newest: DeploymentId,
    now: i64,
) -> rusqlite::Result<()> {
    let description = format!("superseded by deployment {newest}; not deployed");
    finish(conn, job, DeploymentState::Inactive, &description, now)
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

fn id_key(id: DeploymentId) -> rusqlite::Result<i64> {
    int_key(id.get())
}
