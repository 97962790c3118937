//! Read-only views for operators: the dashboard's tables and the gauges of `/metrics`.
//! Every query here is bounded (a `LIMIT`, or an aggregate) and runs on the reader
//! connection, off the write path.

use crate::model::rollback;
use crate::store::db::{Connection, Dialect, Row, params};

pub mod delivery;
pub mod waiting;

/// Deliveries the dashboard shows.
const RECENT_DELIVERIES: i64 = 50;
/// Deployments the dashboard shows.
const RECENT_JOBS: i64 = 100;
/// Running and queued deployments the dashboard shows at most.
const MAX_ACTIVE_JOBS: i64 = 500;

/// What waits: deploys per environment, and GitHub calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// `(environment, queued, running)`.
    pub jobs: Vec<(String, i64, i64)>,
    pub outbox_pending: i64,
    pub outbox_failed: i64,
    /// Age of the oldest pending call; 0 when none.
    pub outbox_oldest_seconds: i64,
    /// Merges waiting for their checks now.
    pub waiting_for_checks: u64,
    /// Promotions soaking now.
    pub soaking: u64,
    /// Deployments waiting for approval now (not counted in `jobs`: no claim sees them).
    pub awaiting_approval: u64,
    /// The environments locked now.
    pub locked: Vec<String>,
    /// Notifications still to send (not counted in `outbox_pending`).
    pub notifications_pending: i64,
}

pub fn backlog(conn: &Connection, now: i64) -> rusqlite::Result<Backlog> {
    let jobs = conn
        .prepare_cached(
            "SELECT environment,
                    COUNT(CASE WHEN state = 'queued' THEN 1 END),
                    COUNT(CASE WHEN state IN ('running', 'verifying') THEN 1 END)
             FROM jobs WHERE state IN ('queued', 'running', 'verifying')
             GROUP BY environment ORDER BY environment",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    // Notifications apart: a chat receiver's outage must not look like GitHub's.
    let (pending, failed, oldest, notifications): (i64, i64, Option<i64>, i64) = conn
        .prepare_cached(
            "SELECT COUNT(CASE WHEN state = 'pending' AND kind NOT IN ('notify', 'notification')
                               THEN 1 END),
                    COUNT(CASE WHEN state = 'failed' THEN 1 END),
                    MIN(CASE WHEN state = 'pending' AND kind NOT IN ('notify', 'notification')
                             THEN created_at END),
                    COUNT(CASE WHEN state = 'pending' AND kind IN ('notify', 'notification')
                               THEN 1 END)
             FROM outbox",
        )?
        .query_row([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    let (waiting_for_checks, soaking) = crate::store::waits::waiting_counts(conn)?;
    let awaiting_approval: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM jobs INDEXED BY jobs_awaiting WHERE state = 'approval'",
        )?
        .query_row([], |row| row.get(0))?;
    let locked = crate::store::locks::holding_all(conn, now)?
        .into_iter()
        .map(|lock| lock.environment)
        .collect();
    Ok(Backlog {
        awaiting_approval: awaiting_approval.unsigned_abs(),
        notifications_pending: notifications,
        locked,
        waiting_for_checks,
        soaking,
        jobs,
        outbox_pending: pending,
        outbox_failed: failed,
        outbox_oldest_seconds: oldest.map_or(0, |at| (now - at).max(0) / 1000),
    })
}

/// A delivery as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub hook_id: i64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub received_at: i64,
    pub outcome: String,
    pub message: String,
}

pub fn recent_deliveries(conn: &Connection) -> rusqlite::Result<Vec<DeliveryRow>> {
    delivery::newest(conn, RECENT_DELIVERIES)
}

/// A deployment as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub deployment_id: u64,
    pub repository: String,
    pub environment: String,
    pub sha: String,
    pub git_ref: String,
    pub task: String,
    pub deploy_user: String,
    /// `approval` (waiting for people to approve it: see [`crate::store::approvals`]),
    /// `queued`, `running`, or the final state (`success`, `failure`, `error`, `inactive`).
    pub state: String,
    pub description: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Forced through a lock (`"force": true` in its payload).
    pub forced: bool,
    /// A rollback (`"rollback": true` in its payload, as `guide::rollback` makes them).
    pub rollback: bool,
    /// For a rollback: the commit it rolled back from (`rolled_back` of its payload).
    pub rolled_back: Option<String>,
    /// What windows and freezes make of it (from its payload).
    pub clearance: crate::model::Clearance,
}

impl JobRow {
    /// Its task as pages show it: a rollback says so, and which commit it replaced
    /// (`rollback from 6f1e3c9`), rather than the `deploy` it runs as.
    pub fn task_shown(&self) -> String {
        match (self.rollback, &self.rolled_back) {
            (true, Some(from)) => {
                format!("rollback from {}", from.chars().take(7).collect::<String>())
            }
            (true, None) => "rollback".to_owned(),
            (false, _) => self.task.clone(),
        }
    }
}

/// The newest deployments, finished or not.
pub fn recent_jobs(conn: &Connection) -> rusqlite::Result<Vec<JobRow>> {
    jobs(
        conn,
        "SELECT deployment_id, repository, environment, sha, git_ref, task, deploy_user,
                CASE WHEN state = 'finished' THEN COALESCE(result, 'finished') ELSE state END,
                description, queued_at, started_at, finished_at, forced, payload
         FROM jobs ORDER BY deployment_id DESC LIMIT ?1",
        RECENT_JOBS,
    )
}

/// The deployments running or queued, however old (few: the queue drains). Those waiting
/// for approval are not queued yet: [`crate::store::approvals::waiting`] lists them.
pub fn active_jobs(conn: &Connection) -> rusqlite::Result<Vec<JobRow>> {
    jobs(
        conn,
        "SELECT deployment_id, repository, environment, sha, git_ref, task, deploy_user,
                state, description, queued_at, started_at, finished_at, forced, payload
         FROM jobs WHERE state IN ('queued', 'running', 'verifying')
         ORDER BY deployment_id LIMIT ?1",
        MAX_ACTIVE_JOBS,
    )
}

/// One deployment, as [`recent_jobs`] shows it; `None` when deployhook has no job for it
/// (its deployment event has not arrived, or it was pruned).
pub fn job(conn: &Connection, id: u64) -> rusqlite::Result<Option<JobRow>> {
    let found = jobs(
        conn,
        // `?1` is the id here: the helper binds one parameter, a limit elsewhere.
        "SELECT deployment_id, repository, environment, sha, git_ref, task, deploy_user,
                CASE WHEN state = 'finished' THEN COALESCE(result, 'finished') ELSE state END,
                description, queued_at, started_at, finished_at, forced, payload
         FROM jobs WHERE deployment_id = ?1",
        crate::store::int_key(id)?,
    )?;
    Ok(found.into_iter().next())
}

/// The payload of deployment `id`'s job (JSON text), if deployhook has the job: what says
/// how the deployment came about (a merge, a promotion, a rollback…).
pub fn job_payload(conn: &Connection, id: u64) -> rusqlite::Result<Option<String>> {
    use crate::store::db::OptionalExtension;
    conn.prepare_cached("SELECT payload FROM jobs WHERE deployment_id = ?1")?
        .query_row([crate::store::int_key(id)?], |row| row.get(0))
        .optional()
}

fn jobs(conn: &Connection, sql: &str, limit: i64) -> rusqlite::Result<Vec<JobRow>> {
    conn.prepare_cached(sql)?
        .query_map(params![limit], job_from_row)?
        .collect()
}

/// A [`JobRow`] from the columns `recent_jobs` selects, in its order.
fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRow> {
    // Read here rather than in SQL (the engines share no JSON path); a payload that is not
    // JSON marks nothing.
    let text = row.get::<_, String>(13)?;
    let payload = serde_json::from_str::<serde_json::Value>(&text).ok();
    Ok(JobRow {
        deployment_id: row.get::<_, i64>(0)?.unsigned_abs(),
        repository: row.get(1)?,
        environment: row.get(2)?,
        sha: row.get(3)?,
        git_ref: row.get(4)?,
        task: row.get(5)?,
        deploy_user: row.get(6)?,
        state: row.get(7)?,
        description: row.get(8)?,
        queued_at: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        forced: row.get::<_, i64>(12)? != 0,
        rollback: payload.as_ref().is_some_and(rollback::is_rollback),
        rolled_back: payload.as_ref().and_then(rollback::rolled_back),
        clearance: crate::model::Clearance::of(&text),
    })
}

/// Whether the database answers and its schema is this release's: `(version, expected)`.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    match conn.dialect() {
        Dialect::Sqlite => conn.query_row("PRAGMA user_version", [], |row| row.get(0)),
        Dialect::Postgres => {
            conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        }
    }
}

/// How many past deploys a rollback looks back over.
const ROLLBACK_HISTORY: i64 = 50;

/// A deploy that ran, as a rollback looks back on it.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub sha: String,
    /// `success`, `failure` or `error`.
    pub result: String,
    /// The payload's `rolled_back`: the commit a rollback replaced.
    pub rolled_back: Option<String>,
    pub installation: Option<u64>,
}

/// The deploys (task `deploy`) of `repository` to `environment` that ran, newest first.
/// For a rollback, an operator's rare action.
pub fn deploy_history(
    conn: &Connection,
    repository: &str,
    environment: &str,
) -> rusqlite::Result<Vec<HistoryRow>> {
    conn.prepare_cached(
        "SELECT sha, result, payload, installation_id
         FROM jobs INDEXED BY jobs_history
         WHERE state = 'finished' AND repository = ?1 AND environment = ?2
           AND task = 'deploy' AND result IN ('success', 'failure', 'error')
         ORDER BY finished_at DESC NULLS LAST LIMIT ?3",
    )?
    .query_map(params![repository, environment, ROLLBACK_HISTORY], |row| {
        // Read here rather than in SQL (the engines share no JSON path); only a string
        // counts, and a payload that is not JSON has none.
        let payload: String = row.get(2)?;
        let rolled_back = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|p| rollback::rolled_back(&p));
        Ok(HistoryRow {
            sha: row.get(0)?,
            result: row.get(1)?,
            rolled_back,
            installation: row.get::<_, Option<i64>>(3)?.map(i64::unsigned_abs),
        })
    })?
    .collect()
}

/// The repositories with deploys on record (in `environment`, or anywhere), at most
/// `limit`, by name: whom a person's permissions are asked about. Read on every dashboard
/// refresh, so it skips from one repository to the next on an index (`jobs_by_commit`,
/// then `jobs_by_state` for the environment) instead of reading every job: its cost follows
/// the number of repositories, not of deploys kept.
pub fn known_repositories(
    conn: &Connection,
    environment: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    /// Repositories stepped over at most, whatever the limit: a bound on one read.
    const MAX_STEPS: usize = 10_000;
    let mut next = conn.prepare_cached("SELECT MIN(repository) FROM jobs WHERE repository > ?1")?;
    let mut deploys_here = conn.prepare_cached(
        "SELECT 1 FROM jobs
         WHERE state IN ('queued', 'running', 'verifying', 'finished', 'approval')
           AND repository = ?1 AND environment = ?2 LIMIT 1",
    )?;
    let (mut found, mut last) = (Vec::new(), String::new());
    for _ in 0..MAX_STEPS {
        if found.len() >= limit {
            break;
        }
        let Some(repository) = next.query_row([&last], |row| row.get::<_, Option<String>>(0))?
        else {
            break;
        };
        let here = match environment {
            None => true,
            Some(environment) => deploys_here.exists(params![repository, environment])?,
        };
        if here {
            found.push(repository.clone());
        }
        last = repository;
    }
    Ok(found)
}
