//! The `deliveries` table, and recording a delivery together with what it set in motion,
//! in one transaction: a delivery is never acknowledged without its work being queued,
//! and a redelivery finds its row and does nothing.

use rusqlite::{Connection, params};

use crate::model::{Effect, NewDeployment, Outcome};
use crate::store::{int_key, jobs, outbox};

/// A delivery as recorded.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// 0 when GitHub sent no `X-GitHub-Hook-ID`.
    pub hook_id: u64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub received_at: i64,
    pub outcome: Outcome,
    pub message: String,
}

/// What recording found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// New: recorded, and its effect queued.
    New,
    /// This hook already delivered this delivery id: nothing was done.
    DuplicateDelivery,
    /// A new delivery of work already done (a deployment already queued or run, a merge
    /// that already asked for its deployment), through another hook or a new delivery of
    /// the same event: recorded as ignored with this message, nothing queued.
    AlreadyDone(String),
}

/// Records `delivery` and queues `effect`, unless this is a redelivery.
pub fn record(
    conn: &Connection,
    delivery: &DeliveryRecord,
    effect: &Effect,
) -> rusqlite::Result<Recorded> {
    let hook_id = int_key(delivery.hook_id)?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO deliveries
                 (hook_id, delivery_id, event, action, repository, received_at, outcome, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            hook_id,
            delivery.delivery_id,
            delivery.event,
            delivery.action,
            delivery.repository,
            delivery.received_at,
            delivery.outcome.as_str(),
            delivery.message,
        ])?;
    if inserted == 0 {
        return Ok(Recorded::DuplicateDelivery);
    }
    let already_done = match effect {
        Effect::None => None,
        Effect::CreateDeployment(deployments) => {
            let mut created = false;
            for new in deployments {
                if record_merge(conn, new, delivery.received_at)? {
                    outbox::enqueue_create_deployment(conn, new, delivery.received_at)?;
                    created = true;
                }
            }
            match deployments.first() {
                Some(new) if !created => Some(format!(
                    "pull request #{} of {} already asked for its deployment",
                    new.pull_request, new.repo
                )),
                _ => None,
            }
        }
        Effect::Refuse(job, reason) => {
            if jobs::refuse(
                conn,
                job,
                &delivery.delivery_id,
                reason,
                delivery.received_at,
            )? {
                None
            } else {
                Some(format!("deployment {} was already received", job.id))
            }
        }
        Effect::Deploy(job) => {
            if jobs::enqueue(conn, job, &delivery.delivery_id, delivery.received_at)? {
                None
            } else {
                Some(format!(
                    "deployment {} was already received; not run again",
                    job.id
                ))
            }
        }
    };
    let Some(message) = already_done else {
        return Ok(Recorded::New);
    };
    conn.prepare_cached(
        "UPDATE deliveries SET outcome = ?3, message = ?4 WHERE hook_id = ?1 AND delivery_id = ?2",
    )?
    .execute(params![
        hook_id,
        delivery.delivery_id,
        Outcome::Ignored.as_str(),
        message
    ])?;
    Ok(Recorded::AlreadyDone(message))
}

/// Records that a merged pull request asked for its deployment; `false` if it already had.
/// A merge recorded before environments were (environment `''`) counts for all of them.
fn record_merge(conn: &Connection, new: &NewDeployment, now: i64) -> rusqlite::Result<bool> {
    let recorded_before_environments: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM merges
                            WHERE repository = ?1 AND pull_request = ?2 AND environment = '')",
        )?
        .query_row(
            params![new.repo.as_ref(), int_key(new.pull_request)?],
            |row| row.get(0),
        )?;
    if recorded_before_environments {
        return Ok(false);
    }
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO merges (repository, pull_request, environment, sha, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            new.repo.as_ref(),
            int_key(new.pull_request)?,
            new.request.environment.as_ref(),
            new.request.git_ref.as_ref(),
            now
        ])?;
    Ok(inserted == 1)
}

/// Forgets that a merged pull request asked for its deployment (its creation was given
/// up), so a redelivery of the merge asks again.
pub fn forget_merge(
    conn: &Connection,
    repository: &str,
    pull_request: u64,
    environment: &crate::model::Environment,
) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM merges
         WHERE repository = ?1 AND pull_request = ?2 AND environment IN (?3, '')",
        params![repository, int_key(pull_request)?, environment.as_ref()],
    )?;
    Ok(())
}

/// Whether deployhook recorded delivery `delivery_id` (through hook `hook_id`, when given).
pub fn is_recorded(
    conn: &Connection,
    delivery_id: &str,
    hook_id: Option<u64>,
) -> rusqlite::Result<bool> {
    let hook = hook_id.map(int_key).transpose()?;
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM deliveries
                        WHERE delivery_id = ?1 AND (?2 IS NULL OR hook_id = ?2))",
    )?
    .query_row(params![delivery_id, hook], |row| row.get(0))
}
