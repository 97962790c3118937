//! Approvals before a deploy: a deployment into an environment that asks for them waits in
//! the `jobs` table in state `approval` — which no claim picks — with the number of people
//! it needs, its deadline and whether its author may approve it, fixed when it started
//! waiting. The `approvals` table keeps one verdict per person per deployment.
//!
//! - [`request`]: the job starts waiting; its `pending` status ("waiting for approval by
//!   …") and the `approval_requested` event are queued with it.
//! - [`approve`]: one more distinct person; at the count needed the job becomes `queued`
//!   — an ordinary queued job from then on, held by locks as any other, in its place in
//!   the policy's order (deployment ids order the queue) — with a `queued` status saying
//!   who approved.
//! - [`reject`], [`expire`]: the job ends `failure` without running, through the same
//!   finishing path as a deploy that failed (its status and its `deploy_failed` event).
//! - `lists`: what pages and the API show ([`waiting`], [`of_deployment`]).
//!
//! Every change first takes the queue's lock ([`jobs::lock_queue`], on PostgreSQL), then the
//! job's row (a conditional update on `state = 'approval'`): a second approval, a rejection,
//! the clock's expiry or a claim of the same deployment waits for the first to commit and
//! then sees it, so two approvals given at once both count, a deployment is never both
//! approved and expired, and none of them deadlocks with a claim (which takes job rows and
//! the outbox's lock in turn).

use std::time::Duration;

use crate::model::approval::Asked;
use crate::model::{DeployJob, DeploymentId, DeploymentState, Notification};
use crate::store::db::{Connection, OptionalExtension, Row, params};
use crate::store::jobs::{self, CLAIMED_COLUMNS, claimed_from_row, id_key};
use crate::store::outbox;

mod lists;

pub use lists::{Approvals, Awaiting, MAX_WAITING, of_deployment, waiting};

/// One person's verdict on a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub login: String,
    /// `true`: approved; `false`: rejected.
    pub approved: bool,
    /// A rejection's reason, as given.
    pub reason: Option<String>,
    /// When (Unix milliseconds).
    pub at: i64,
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// Whether the approvals are now complete: the job is queued to run.
    pub queued: bool,
    /// Who approved so far, in the order they did (this approval last).
    pub approvers: Vec<String>,
    /// How many distinct people it needs.
    pub needed: u32,
}

/// Why an approval or a rejection was not recorded. Each says so in a sentence
/// ([`std::fmt::Display`]) fit to answer the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    #[error(
        "deployhook has no deployment {0}: GitHub has not sent its deployment event (yet), \
         or it is for an environment or repository this server does not run"
    )]
    Unknown(DeploymentId),
    /// It is not waiting for approval: `state` as pages show it (`queued`, `running`, or
    /// its final state), `asked` whether it ever waited, `description` its latest word.
    #[error("{}", not_waiting_sentence(*id, state, *asked, description.as_deref()))]
    NotWaiting {
        id: DeploymentId,
        state: String,
        asked: bool,
        description: Option<String>,
    },
    #[error("{login} already approved deployment {id}")]
    AlreadyApproved { id: DeploymentId, login: String },
    #[error(
        "{login} made deployment {id}: the change's author may not approve it in this \
         environment (self_approval = false); someone else must"
    )]
    OwnChange { id: DeploymentId, login: String },
    /// A newer deployment ran while it waited: it ended, `inactive`, without running.
    #[error(
        "deployment {newer} ran while deployment {id} waited: approving {id} would put older \
         code back, so it ended (inactive); deploy again, or roll back, if that is what you \
         want"
    )]
    Superseded { id: DeploymentId, newer: u64 },
}

fn not_waiting_sentence(
    id: DeploymentId,
    state: &str,
    asked: bool,
    description: Option<&str>,
) -> String {
    let said = description
        .filter(|d| !d.is_empty())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    match (state, asked) {
        ("queued", true) => format!("deployment {id} is approved already and queued{said}"),
        ("running" | "verifying", true) => format!("deployment {id} was approved and is {state}"),
        ("queued" | "running" | "verifying", false) => {
            format!("deployment {id} needs no approval: it is {state}")
        }
        (ended, _) => format!("deployment {id} has ended, {ended}{said}: it waits for nothing"),
    }
}

/// `job` waits for the approvals `rule` asks for, until `now` plus its timeout: recorded
/// in state `approval`, with its `pending` status and the `approval_requested` event.
/// `false` when its deployment is already known (waiting, queued, running or run).
pub fn request(
    conn: &Connection,
    job: &DeployJob,
    delivery_id: &str,
    asked: &Asked,
    now: i64,
) -> rusqlite::Result<bool> {
    let rule = &asked.rule;
    if !jobs::enqueue_row(conn, job, delivery_id, now)? {
        return Ok(false);
    }
    let deadline = now.saturating_add(millis(rule.timeout));
    let waiting_for = rule.waiting_for();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'approval', approvals_needed = ?2, approval_deadline = ?3,
                         self_approval = ?4, description = ?5, approval_authors = ?6,
                         approval_reviewers = ?7
         WHERE deployment_id = ?1",
    )?
    .execute(params![
        id_key(job.id)?,
        rule.required,
        deadline,
        rule.self_approval,
        waiting_for,
        asked.authors.join(" "),
        rule.reviewers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    ])?;
    outbox::enqueue_status(conn, job, DeploymentState::Pending, &waiting_for, now)?;
    let event = Notification::approval_requested(job, &waiting_for, deadline, now);
    outbox::enqueue_notification(conn, &event, now).map(|()| true)
}

/// `login` approves deployment `id`. Refused when the deployment is unknown, no longer
/// waits (or its deadline passed: it ends then, as [`expire`] would have ended it), `login`
/// approved it already, or `login` is its author and its environment does not let
/// authors approve their own. At the count needed the job is queued (it keeps its
/// place: deployment ids order the queue) with a `queued` status `approved by a, b`;
/// wake the deploy worker after the commit.
pub fn approve(
    conn: &Connection,
    id: DeploymentId,
    login: &str,
    now: i64,
) -> rusqlite::Result<Result<Approved, ApprovalRefusal>> {
    let waiting = match still_waiting(conn, id, now)? {
        Ok(waiting) => waiting,
        Err(why) => return Ok(Err(why)),
    };
    let own = waiting
        .authors
        .iter()
        .any(|a| a.eq_ignore_ascii_case(login));
    if !waiting.self_approval && own {
        return Ok(Err(ApprovalRefusal::OwnChange {
            id,
            login: login.to_owned(),
        }));
    }
    let mut approvers = approvers(&reviews(conn, id)?);
    if approvers.iter().any(|a| a.eq_ignore_ascii_case(login)) {
        return Ok(Err(ApprovalRefusal::AlreadyApproved {
            id,
            login: login.to_owned(),
        }));
    }
    // A newer deployment ran while this one waited: approving it would put older code
    // back (under `queue`, which runs each in turn). It ends, superseded.
    if let Some(newer) = ran_since(conn, &waiting.job)? {
        let description = format!("superseded by deployment {newer}, which ran while it waited");
        jobs::finish_awaiting(
            conn,
            &waiting.job,
            DeploymentState::Inactive,
            &description,
            now,
        )?;
        return Ok(Err(ApprovalRefusal::Superseded { id, newer }));
    }
    conn.prepare_cached(
        "INSERT INTO approvals (deployment_id, login, verdict, reason, at)
         VALUES (?1, ?2, 'approve', NULL, ?3)",
    )?
    .execute(params![id_key(id)?, login, now])?;
    approvers.push(login.to_owned());
    let queued = approvers.len() >= waiting.needed as usize;
    if queued {
        let description = format!("approved by {}", approvers.join(", "));
        conn.prepare_cached(
            "UPDATE jobs SET state = 'queued', description = ?2 WHERE deployment_id = ?1",
        )?
        .execute(params![id_key(id)?, description])?;
        outbox::enqueue_status(
            conn,
            &waiting.job,
            DeploymentState::Queued,
            &description,
            now,
        )?;
    }
    Ok(Ok(Approved {
        queued,
        approvers,
        needed: waiting.needed,
    }))
}

/// `login` rejects deployment `id` because of `reason`: it ends `failure`, "rejected by
/// LOGIN: reason", without running. Anyone allowed to approve may reject, the author too
/// (withdrawing their own change). Returns the description it ended with; refused when the
/// deployment is unknown or no longer waits.
pub fn reject(
    conn: &Connection,
    id: DeploymentId,
    login: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<Result<String, ApprovalRefusal>> {
    let waiting = match still_waiting(conn, id, now)? {
        Ok(waiting) => waiting,
        Err(why) => return Ok(Err(why)),
    };
    let reason = reason.trim();
    conn.prepare_cached(
        "INSERT INTO approvals (deployment_id, login, verdict, reason, at)
         VALUES (?1, ?2, 'reject', ?3, ?4)
         ON CONFLICT (deployment_id, login)
         DO UPDATE SET verdict = 'reject', reason = excluded.reason, at = excluded.at",
    )?
    .execute(params![id_key(id)?, login, reason, now])?;
    let description = if reason.is_empty() {
        format!("rejected by {login}")
    } else {
        format!("rejected by {login}: {reason}")
    };
    jobs::finish_awaiting(
        conn,
        &waiting.job,
        DeploymentState::Failure,
        &description,
        now,
    )?;
    Ok(Ok(description))
}

/// Ends, at most `limit` of them, the deployments whose deadline passed by `now` without
/// their approvals: `failure`, "no approval within 4h (needed 2, had 1)". Returns how many
/// ended; their statuses and events are queued (wake the outbox).
pub fn expire(conn: &Connection, now: i64, limit: usize) -> rusqlite::Result<usize> {
    jobs::lock_queue(conn)?;
    let due: Vec<i64> = conn
        .prepare_cached(
            "SELECT deployment_id FROM jobs INDEXED BY jobs_awaiting
             WHERE state = 'approval' AND approval_deadline <= ?1
             ORDER BY approval_deadline, deployment_id LIMIT ?2",
        )?
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let mut ended = 0;
    for key in due {
        let id = DeploymentId::from(key.unsigned_abs());
        let Some(waiting) = take_waiting(conn, id)? else {
            continue;
        };
        if end_expired(conn, &waiting, now)? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Ends `waiting`, whose deadline passed: `failure`, saying how long it waited and how
/// many of the approvals it needed it had.
fn end_expired(conn: &Connection, waiting: &Waiting, now: i64) -> rusqlite::Result<bool> {
    let had = approvers(&reviews(conn, waiting.job.id)?).len();
    let waited =
        Duration::from_millis(u64::try_from(waiting.deadline - waiting.queued_at).unwrap_or(0));
    let description = format!(
        "no approval within {} (needed {}, had {had})",
        humantime::format_duration(waited),
        waiting.needed
    );
    jobs::finish_awaiting(
        conn,
        &waiting.job,
        DeploymentState::Failure,
        &description,
        now,
    )
}

/// The earliest deadline of a deployment awaiting approval, if any waits.
pub fn next_deadline(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(approval_deadline) FROM jobs INDEXED BY jobs_awaiting
         WHERE state = 'approval'",
    )?
    .query_row([], |row| row.get(0))
}

/// A job waiting for approval, with what it was asked.
struct Waiting {
    job: DeployJob,
    /// Whose own change it is (see [`Asked`]).
    authors: Vec<String>,
    needed: u32,
    self_approval: bool,
    queued_at: i64,
    deadline: i64,
}

/// Deployment `id`'s wait, taken (see [`take_waiting`]), if it still waits at `now`; one
/// whose deadline passed, though the clock has not come round to it yet, ends then, as
/// [`expire`] would have ended it.
fn still_waiting(
    conn: &Connection,
    id: DeploymentId,
    now: i64,
) -> rusqlite::Result<Result<Waiting, ApprovalRefusal>> {
    let Some(waiting) = take_waiting(conn, id)? else {
        return not_waiting(conn, id).map(Err);
    };
    if now >= waiting.deadline {
        end_expired(conn, &waiting, now)?;
        return not_waiting(conn, id).map(Err);
    }
    Ok(Ok(waiting))
}

/// Takes the row of deployment `id` if it waits for approval (see the module's note on
/// concurrent changes), and reads it; `None` when it does not wait.
fn take_waiting(conn: &Connection, id: DeploymentId) -> rusqlite::Result<Option<Waiting>> {
    jobs::lock_queue(conn)?;
    let key = id_key(id)?;
    let held = conn
        .prepare_cached(
            "UPDATE jobs SET approval_deadline = approval_deadline
             WHERE deployment_id = ?1 AND state = 'approval'",
        )?
        .execute([key])?;
    if held == 0 {
        return Ok(None);
    }
    conn.prepare_cached(&format!(
        "SELECT {CLAIMED_COLUMNS}, approvals_needed, self_approval, queued_at, approval_deadline,
                COALESCE(approval_authors, '')
         FROM jobs WHERE deployment_id = ?1"
    ))?
    .query_row([key], |row| {
        let job = claimed_from_row(row)?.job;
        let mut authors: Vec<String> = row
            .get::<_, String>(16)?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        // Rows from before the column: their deploy_user, as then.
        if authors.is_empty() {
            authors.push(job.deploy_user.to_ascii_lowercase());
        }
        Ok(Waiting {
            authors,
            job,
            needed: needed(row, 12)?,
            self_approval: row.get::<_, i64>(13)? != 0,
            queued_at: row.get(14)?,
            deadline: row.get::<_, Option<i64>>(15)?.unwrap_or(0),
        })
    })
    .optional()
}

/// The newest deployment of `job`'s repository and environment, newer than it, that is
/// running or succeeded.
fn ran_since(conn: &Connection, job: &DeployJob) -> rusqlite::Result<Option<u64>> {
    let newest: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(deployment_id) FROM jobs
             WHERE repository = ?1 AND environment = ?2 AND deployment_id > ?3
               AND (state IN ('running', 'verifying')
                    OR (state = 'finished' AND result = 'success'))",
        )?
        .query_row(
            params![job.repo.as_ref(), job.environment.as_ref(), id_key(job.id)?],
            |row| row.get(0),
        )?;
    Ok(newest.map(i64::unsigned_abs))
}

/// Why deployment `id` cannot be approved or rejected: unknown, or its state.
fn not_waiting(conn: &Connection, id: DeploymentId) -> rusqlite::Result<ApprovalRefusal> {
    let found: Option<(String, bool, Option<String>)> = conn
        .prepare_cached(
            "SELECT CASE WHEN state = 'finished' THEN COALESCE(result, 'finished') ELSE state END,
                    approvals_needed IS NOT NULL, description
             FROM jobs WHERE deployment_id = ?1",
        )?
        .query_row([id_key(id)?], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(match found {
        None => ApprovalRefusal::Unknown(id),
        Some((state, asked, description)) => ApprovalRefusal::NotWaiting {
            id,
            state,
            asked,
            description,
        },
    })
}

/// Every verdict on deployment `id`, in the order given.
fn reviews(conn: &Connection, id: DeploymentId) -> rusqlite::Result<Vec<Review>> {
    conn.prepare_cached(
        "SELECT login, verdict, reason, at FROM approvals WHERE deployment_id = ?1
         ORDER BY at, login",
    )?
    .query_map([id_key(id)?], |row| {
        Ok(Review {
            login: row.get(0)?,
            approved: row.get::<_, String>(1)? == "approve",
            reason: row.get(2)?,
            at: row.get(3)?,
        })
    })?
    .collect()
}

/// The logins that approved, in the order they did.
fn approvers(reviews: &[Review]) -> Vec<String> {
    reviews
        .iter()
        .filter(|r| r.approved)
        .map(|r| r.login.clone())
        .collect()
}

/// The count of approvals needed, as stored in column `index`.
fn needed(row: &Row<'_>, index: usize) -> rusqlite::Result<u32> {
    let stored: Option<i64> = row.get(index)?;
    Ok(u32::try_from(stored.unwrap_or(0)).unwrap_or(u32::MAX))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
