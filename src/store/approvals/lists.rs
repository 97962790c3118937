//! What pages and the API show of approvals: the deployments awaiting them ([`waiting`]),
//! and one deployment's verdicts ([`of_deployment`]).

use super::{Review, approvers, needed, reviews};
use crate::model::DeploymentId;
use crate::store::db::{Connection, OptionalExtension};
use crate::store::jobs::id_key;

/// Deployments awaiting approval that [`waiting`] lists at most.
pub const MAX_WAITING: i64 = 500;

/// A deployment awaiting approval, as pages and the API list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaiting {
    pub deployment_id: u64,
    pub repository: String,
    pub environment: String,
    pub sha: String,
    pub git_ref: String,
    pub task: String,
    /// The change's author (`deploy_user`).
    pub author: String,
    pub needed: u32,
    /// Who approved so far, in the order they did.
    pub approvers: Vec<String>,
    pub self_approval: bool,
    /// When it started waiting, and until when it waits (Unix milliseconds).
    pub queued_at: i64,
    pub deadline: i64,
    /// What it waits for, as its `pending` status said: `waiting for approval by …`.
    pub waiting_for: String,
    /// Forced through locks once approved (`"force": true` in its payload).
    pub forced: bool,
}

/// One deployment's approvals, awaited or over, for its page and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    pub deployment_id: u64,
    /// `approval` while it waits; then `queued`, `running` or its final state.
    pub state: String,
    pub author: String,
    pub needed: u32,
    pub self_approval: bool,
    pub deadline: i64,
    /// Who may approve, as the environment said when the wait began (`octocat`,
    /// `@acme/sre`); empty: anyone whose role allows it.
    pub reviewers: Vec<String>,
    /// Every verdict, in the order given.
    pub reviews: Vec<Review>,
}

/// The deployments awaiting approval, soonest deadline first, at most [`MAX_WAITING`].
pub fn waiting(conn: &Connection) -> rusqlite::Result<Vec<Awaiting>> {
    let rows: Vec<Awaiting> = conn
        .prepare_cached(
            "SELECT deployment_id, repository, environment, sha, git_ref, task, deploy_user,
                    approvals_needed, self_approval, queued_at, approval_deadline,
                    COALESCE(description, ''), forced
             FROM jobs INDEXED BY jobs_awaiting WHERE state = 'approval'
             ORDER BY approval_deadline, deployment_id LIMIT ?1",
        )?
        .query_map([MAX_WAITING], |row| {
            Ok(Awaiting {
                deployment_id: row.get::<_, i64>(0)?.unsigned_abs(),
                repository: row.get(1)?,
                environment: row.get(2)?,
                sha: row.get(3)?,
                git_ref: row.get(4)?,
                task: row.get(5)?,
                author: row.get(6)?,
                needed: needed(row, 7)?,
                approvers: vec![],
                self_approval: row.get::<_, i64>(8)? != 0,
                queued_at: row.get(9)?,
                deadline: row.get(10)?,
                waiting_for: row.get(11)?,
                forced: row.get::<_, i64>(12)? != 0,
            })
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|mut awaiting| {
            let id = DeploymentId::from(awaiting.deployment_id);
            awaiting.approvers = approvers(&reviews(conn, id)?);
            Ok(awaiting)
        })
        .collect()
}

/// Deployment `id`'s approvals; `None` when it is unknown or never asked for any.
pub fn of_deployment(conn: &Connection, id: DeploymentId) -> rusqlite::Result<Option<Approvals>> {
    let found = conn
        .prepare_cached(
            "SELECT CASE WHEN state = 'finished' THEN COALESCE(result, 'finished') ELSE state END,
                    deploy_user, approvals_needed, self_approval, approval_deadline,
                    COALESCE(approval_reviewers, '')
             FROM jobs WHERE deployment_id = ?1 AND approvals_needed IS NOT NULL",
        )?
        .query_row([id_key(id)?], |row| {
            Ok(Approvals {
                deployment_id: id.get(),
                state: row.get(0)?,
                author: row.get(1)?,
                needed: needed(row, 2)?,
                self_approval: row.get::<_, i64>(3)? != 0,
                deadline: row.get::<_, Option<i64>>(4)?.unwrap_or(0),
                reviewers: row
                    .get::<_, String>(5)?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                reviews: vec![],
            })
        })
        .optional()?;
    found
        .map(|mut approvals| {
            approvals.reviews = reviews(conn, id)?;
            Ok(approvals)
        })
        .transpose()
}
