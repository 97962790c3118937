//! Claiming: which queued jobs start now, one running per repository and environment,
//! in each environment's policy order (`queue`: oldest first; `latest`: the newest, which
//! retires the older ones), locks holding all but forced jobs. Deployment ids order the
//! jobs: GitHub numbers deployments in the order it creates them, whatever order their
//! events arrive in. Jobs waiting for approval are not queued yet: no claim sees them, but
//! under `latest` a newer job that starts retires them as it retires older queued ones.
//!
//! Windows and freezes hold jobs the same way, by what each job is (`jobs.clearance`, see
//! [`crate::model::window`]): in a held environment only the jobs the hold lets through
//! are candidates, taken in the policy's order among themselves (one more step down an
//! index per kind, never a walk over the held ones); the held ones stay queued and start
//! in their policy's order once the hold ends — except that under `latest` a job that
//! starts retires every older one, held or not, which would otherwise deploy an older
//! commit over it when the hold ends.

use crate::model::{Clearance, DeployJob, DeploymentId, DeploymentState, Hold, Policy};
use crate::store::db::{Connection, Dialect, OptionalExtension, params};
use crate::store::merges::marks;
use crate::store::{changelogs, locks, outbox};

use super::{CLAIMED_COLUMNS, Claimed, claimed_from_row, finish, id_key, is_forced};

/// The transaction-level advisory lock that serialises claims (PostgreSQL).
const CLAIM_LOCK: i64 = 0x6465_706c_6f79_0003;

/// On PostgreSQL, waits until no other transaction claims or changes which jobs may start,
/// then holds that until the commit. One claim at a time across replicas: the leader's, and
/// for a moment after a lost lead its predecessor's; the later one waits, then sees what the
/// first started (a partial unique index also allows one running job per repository +
/// environment). Approvals take it too, first: a claim takes job rows and the outbox's lock
/// in turn, and an approval taking them in another order could deadlock with it.
pub(in crate::store) fn lock_queue(conn: &Connection) -> rusqlite::Result<()> {
    if conn.dialect() == Dialect::Postgres {
        conn.query_row("SELECT pg_advisory_xact_lock(?1)", [CLAIM_LOCK], |_| Ok(()))?;
    }
    Ok(())
}

/// Claims what may start now: per repository + environment with nothing running, the
/// oldest queued job (`Queue`) or the newest (`Latest`, which retires the older ones), while
/// fewer than `max_running` run in all. In a locked environment only forced jobs start
/// (oldest or newest the same way); the others stay queued, untouched, for the unlock.
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
    claim_with_holds(conn, owner, max_running, policy, |_| None, now)
}

/// [`claim`], with `hold` saying what holds each environment now (a window closed, a
/// freeze): there only the jobs the hold lets through start, in the policy's order among
/// them; the others wait, queued (under `latest`, the older ones are retired).
pub fn claim_with_holds(
    conn: &Connection,
    owner: &str,
    max_running: usize,
    policy: impl Fn(&str) -> Policy,
    hold: impl Fn(&str) -> Option<Hold>,
    now: i64,
) -> rusqlite::Result<Vec<Claimed>> {
    lock_queue(conn)?;
    // A verifying job holds its repository and environment (the next deploy must not
    // start under its check) but runs no deploy command: it does not count against
    // `max_running`, or one slow check would hold every other environment back.
    let held: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT repository, environment, CASE WHEN state = 'running' THEN 1 ELSE 0 END
             FROM jobs
             WHERE state IN ('running', 'verifying')",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let commands = held.iter().filter(|(_, _, command)| *command == 1).count();
    let running: Vec<(String, String)> = held.into_iter().map(|(r, e, _)| (r, e)).collect();
    let mut free = max_running.saturating_sub(commands);
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
                for older in queued_before(conn, &pair, forced.job.id, Clearance::Automatic)? {
                    if is_forced(&older.job.payload) {
                        supersede(conn, &older.job, forced.job.id, now)?;
                    }
                }
            }
            let mut forced = forced;
            forced.previous_sha = start(conn, &forced.job, owner, now)?;
            started.push(forced);
            free -= 1;
            continue;
        }
        // Forced jobs, above, pass every hold as well as locks.
        let least = hold(&pair.1).map_or(Clearance::Automatic, |h| h.least_passing());
        let Some(mut next) = next_in_order(conn, &pair, policy(&pair.1), least, now)? else {
            continue;
        };
        next.previous_sha = start(conn, &next.job, owner, now)?;
        started.push(next);
        free -= 1;
    }
    Ok(started)
}

/// The job of `pair` to start among those of clearance `least` or more: the oldest queued
/// (`Queue`) or the newest (`Latest`, which retires the older ones among them). One that
/// would deploy a merge older than what an automatic deploy already started there (a
/// `deployment` event delivered late) is not run: it ends `inactive`, saying why, and the
/// next in line is taken.
fn next_in_order(
    conn: &Connection,
    pair: &(String, String),
    policy: Policy,
    least: Clearance,
    now: i64,
) -> rusqlite::Result<Option<Claimed>> {
    let edge = match policy {
        Policy::Queue => "ASC",
        Policy::Latest => "DESC",
    };
    loop {
        let id = if least == Clearance::Automatic {
            edge_of_queue(conn, pair, edge).optional()?
        } else {
            edge_passing(conn, pair, edge, least)?
        };
        let Some(id) = id else {
            return Ok(None);
        };
        let next = queued_job(conn, id)?;
        if let Some(why) = marks::refuses_start(conn, &next.job)? {
            tracing::info!(deployment = next.job.id.get(), "{why}");
            finish(conn, &next.job, DeploymentState::Inactive, &why, now)?;
            continue;
        }
        if policy == Policy::Latest {
            // Older ones go too, held or not: one held by a window and started when it
            // opens would deploy an older commit over this newer one.
            for older in queued_before(conn, pair, next.job.id, Clearance::Automatic)? {
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

/// The oldest (`ASC`) or newest (`DESC`) queued deployment id of `pair` whose clearance is
/// `least` or more: one step down `jobs_by_clearance` per clearance, at most two, whatever
/// number of jobs the hold keeps behind.
fn edge_passing(
    conn: &Connection,
    pair: &(String, String),
    order: &str,
    least: Clearance,
) -> rusqlite::Result<Option<i64>> {
    let sql = format!(
        "SELECT deployment_id FROM jobs INDEXED BY jobs_by_clearance
         WHERE state = 'queued' AND repository = ?1 AND environment = ?2 AND clearance = ?3
         ORDER BY deployment_id {order} LIMIT 1"
    );
    let mut edge: Option<i64> = None;
    for clearance in [Clearance::Deliberate, Clearance::Urgent] {
        if clearance < least {
            continue;
        }
        let found: Option<i64> = conn
            .prepare_cached(&sql)?
            .query_row(params![pair.0, pair.1, clearance.as_i64()], |row| {
                row.get(0)
            })
            .optional()?;
        edge = match (edge, found) {
            (Some(a), Some(b)) if order == "ASC" => Some(a.min(b)),
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(edge)
}

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

/// The jobs of `pair` queued before `newest`, which supersedes them, with those still
/// waiting for approval: approved later, they would deploy what is older than what runs.
/// Only those of clearance `least` or more: a hold keeps the others for its end.
fn queued_before(
    conn: &Connection,
    pair: &(String, String),
    newest: DeploymentId,
    least: Clearance,
) -> rusqlite::Result<Vec<Claimed>> {
    conn.prepare_cached(&format!(
        "SELECT {CLAIMED_COLUMNS} FROM jobs
         WHERE state IN ('queued', 'approval') AND repository = ?1 AND environment = ?2
           AND deployment_id < ?3 AND clearance >= ?4
         ORDER BY deployment_id"
    ))?
    .query_map(
        params![pair.0, pair.1, id_key(newest)?, least.as_i64()],
        claimed_from_row,
    )?
    .collect()
}

/// Marks `job` running, with what it follows (see [`changelogs::on_claim`]): returns the
/// commit of the environment's previous success, if one is known.
fn start(
    conn: &Connection,
    job: &DeployJob,
    owner: &str,
    now: i64,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "UPDATE jobs SET state = 'running', started_at = ?2, owner = ?3 WHERE deployment_id = ?1",
    )?
    .execute(params![id_key(job.id)?, now, owner])?;
    marks::started(conn, job, now)?;
    let follows = changelogs::on_claim(conn, job, now)?;
    if let Some(base) = &follows.read_from
        && !outbox::changelog_queued(conn, job.id)?
    {
        outbox::enqueue_changelog(conn, job, base, now)?;
    }
    Ok(follows.previous_sha)
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
