//! The `previews` table: each pull request's preview in each preview environment, and the
//! state machine it goes through — `waiting` (no room under `preview_limit`), `live` (its
//! head's deployments are created and run), `closing` (its pull request closed; its
//! `destroy` runs), `closed` (destroyed; its deployments marked `inactive`).
//!
//! Every change is made in the transaction of what caused it: a delivery ([`apply`], from
//! `deliveries::record`), the end of a destroy ([`destroyed`], from the deploy worker), the
//! periodic check that found a pull request closed ([`apply`] again). So a preview is never
//! left half-opened or half-closed by a crash.
//!
//! Room is counted per environment table (`config`) over `live` previews only: a closing
//! preview's destroy is queued, and the preview waiting longest starts at once rather than
//! after it. A pull request that reopens starts again, at the back of the line.

use crate::store::db::{Connection, OptionalExtension, params};

use crate::model::preview::state::{CLOSED, CLOSING, LIVE, WAITING};
use crate::model::{
    DeployJob, DeploymentRequest, DeploymentState, NewDeployment, PreviewChange, PreviewSlot,
    RepoName,
};
use crate::store::merges::marks;
use crate::store::waits::{self, Ended};
use crate::store::{int_key, outbox};

mod reads;

pub use reads::{OpenPull, PreviewRow, checked, due_for_check, list, oldest_check};

/// The task a preview's teardown runs (the config's `DESTROY_TASK`, which the store cannot
/// name).
const DESTROY: &str = "destroy";

/// What [`apply`] did, for the delivery's answer and the metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One sentence per preview that changed, for the delivery's record.
    pub notes: Vec<String>,
    /// Waits for checks that ended (a gated preview's head was green already).
    pub ended: Vec<Ended>,
}

/// Carries out `changes` at `now`. A gated preview's head waits for its checks, read again
/// every `checks_poll_ms`.
pub fn apply(
    conn: &Connection,
    changes: &[PreviewChange],
    checks_poll_ms: i64,
    now: i64,
) -> rusqlite::Result<Applied> {
    let mut applied = Applied::default();
    for change in changes {
        match change {
            PreviewChange::Open { new, slot } => {
                open(conn, new, slot, checks_poll_ms, now, &mut applied)?;
            }
            PreviewChange::Close {
                repo,
                pull_request,
                slots,
            } => close(
                conn,
                repo,
                *pull_request,
                slots,
                checks_poll_ms,
                now,
                &mut applied,
            )?,
        }
    }
    Ok(applied)
}

fn open(
    conn: &Connection,
    new: &NewDeployment,
    slot: &PreviewSlot,
    poll: i64,
    now: i64,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    let (repo, number) = (new.repo.as_ref(), int_key(new.pull_request)?);
    let environment = new.request.environment.as_ref();
    let request = serde_json::to_string(&new.request).map_err(json_error)?;
    let sha = new.request.git_ref.as_ref();
    let state: Option<String> = conn
        .prepare_cached(
            "SELECT state FROM previews
             WHERE repository = ?1 AND pull_request = ?2 AND environment = ?3",
        )?
        .query_row(params![repo, number, environment], |row| row.get(0))
        .optional()?;
    if let Some(state @ (LIVE | WAITING)) = state.as_deref() {
        conn.prepare_cached(
            "UPDATE previews SET head_sha = ?4, request = ?5, updated_at = ?6, checked_at = ?6
             WHERE repository = ?1 AND pull_request = ?2 AND environment = ?3",
        )?
        .execute(params![repo, number, environment, sha, request, now])?;
        if state == LIVE {
            create(conn, new, poll, now, applied)?;
            applied.notes.push(format!(
                "{environment} moves to {}",
                new.request.git_ref.short()
            ));
        } else {
            applied
                .notes
                .push(format!("{environment} still waits for room"));
        }
        return Ok(());
    }
    let alive = live_count(conn, slot.config.as_ref())?;
    let has_room = alive < slot.limit;
    let (state, note) = if has_room {
        (LIVE, None)
    } else {
        let note = format!(
            "waits for room: {alive} of {} previews of {} alive",
            slot.limit, slot.config
        );
        (WAITING, Some(note))
    };
    conn.prepare_cached(
        "INSERT INTO previews (repository, pull_request, environment, config, head_sha, state,
                               request, installation_id, opened_at, updated_at, checked_at,
                               note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9, ?10)
         ON CONFLICT (repository, pull_request, environment) DO UPDATE SET
             config = excluded.config, head_sha = excluded.head_sha, state = excluded.state,
             request = excluded.request, installation_id = excluded.installation_id,
             opened_at = excluded.opened_at, updated_at = excluded.updated_at,
             checked_at = excluded.checked_at, note = excluded.note",
    )?
    .execute(params![
        repo,
        number,
        environment,
        slot.config.as_ref(),
        sha,
        state,
        request,
        new.installation.map(int_key).transpose()?,
        now,
        note
    ])?;
    match note {
        None => {
            create(conn, new, poll, now, applied)?;
            applied.notes.push(format!("{environment} opened"));
        }
        Some(note) => applied.notes.push(format!("{environment} {note}")),
    }
    Ok(())
}

/// Asks for the deployment of `new`: at once, or once its gate's checks are green.
fn create(
    conn: &Connection,
    new: &NewDeployment,
    poll: i64,
    now: i64,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    match &new.gate {
        // No merge in its payload: no mark moves; its creation is queued.
        None => marks::accept(conn, new, now),
        Some(gate) => {
            if let Some(ended) = waits::wait_for_checks(conn, new, gate, poll, now)? {
                applied.ended.extend(ended);
            }
            Ok(())
        }
    }
}

fn live_count(conn: &Connection, config: &str) -> rusqlite::Result<usize> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM previews WHERE config = ?1 AND state = ?2")?
        .query_row(params![config, LIVE], |row| row.get(0))?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// Closes the previews of a pull request: a waiting one at once, a live one through its
/// `destroy`; then starts waiting previews where room was made.
fn close(
    conn: &Connection,
    repo: &RepoName,
    pull_request: u64,
    slots: &[PreviewSlot],
    poll: i64,
    now: i64,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    let number = int_key(pull_request)?;
    let open: Vec<(String, String, String, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT environment, config, state, request, installation_id FROM previews
             WHERE repository = ?1 AND pull_request = ?2 AND state IN (?3, ?4)",
        )?
        .query_map(params![repo.as_ref(), number, LIVE, WAITING], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    if open.is_empty() {
        applied.notes.push(format!(
            "pull request #{pull_request} of {repo} has no open preview"
        ));
    }
    let mut freed = Vec::new();
    for (environment, config, state, request, installation) in open {
        // A head still waiting for its checks must not deploy after the teardown.
        conn.prepare_cached(
            "UPDATE waits SET state = 'superseded', reason = 'its pull request closed',
                              ended_at = ?3
             WHERE repository = ?1 AND environment = ?2 AND state = 'waiting'",
        )?
        .execute(params![repo.as_ref(), environment, now])?;
        let (next, note) = if state == WAITING {
            (CLOSED, "closed before it had room: nothing to destroy")
        } else {
            let request: DeploymentRequest = serde_json::from_str(&request).map_err(json_error)?;
            let destroy = NewDeployment {
                repo: repo.clone(),
                pull_request,
                installation: installation.map(i64::unsigned_abs),
                request: destroy_request(request, pull_request),
                gate: None,
            };
            outbox::enqueue_create_deployment(conn, &destroy, now)?;
            freed.push(config);
            (CLOSING, "its pull request closed: destroy queued")
        };
        conn.prepare_cached(
            "UPDATE previews SET state = ?4, note = ?5, updated_at = ?6
             WHERE repository = ?1 AND pull_request = ?2 AND environment = ?3",
        )?
        .execute(params![repo.as_ref(), number, environment, next, note, now])?;
        applied.notes.push(format!("{environment} {note}"));
    }
    for slot in slots
        .iter()
        .filter(|s| freed.contains(&s.config.to_string()))
    {
        start_waiting(conn, slot, poll, now, applied)?;
    }
    Ok(())
}

/// The `destroy` deployment of a preview whose head's deployment was `request`: the same
/// commit and environment, checks not required (a red head must still be torn down).
fn destroy_request(mut request: DeploymentRequest, pull_request: u64) -> DeploymentRequest {
    request.task = DESTROY.to_owned();
    request.required_contexts = vec![];
    request.description = format!("Destroy the preview of PR #{pull_request}");
    request
}

/// Starts the oldest waiting previews of `slot` while it has room.
fn start_waiting(
    conn: &Connection,
    slot: &PreviewSlot,
    poll: i64,
    now: i64,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    while live_count(conn, slot.config.as_ref())? < slot.limit {
        let next: Option<(String, i64, String, String, Option<i64>)> = conn
            .prepare_cached(
                "SELECT repository, pull_request, environment, request, installation_id
                 FROM previews WHERE config = ?1 AND state = ?2
                 ORDER BY opened_at, repository, pull_request LIMIT 1",
            )?
            .query_row(params![slot.config.as_ref(), WAITING], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .optional()?;
        let Some((repository, number, environment, request, installation)) = next else {
            return Ok(());
        };
        conn.prepare_cached(
            "UPDATE previews SET state = ?4, note = NULL, updated_at = ?5
             WHERE repository = ?1 AND pull_request = ?2 AND environment = ?3",
        )?
        .execute(params![repository, number, environment, LIVE, now])?;
        let new = NewDeployment {
            repo: RepoName::parse(&repository).map_err(|e| json_text(&e.to_string()))?,
            pull_request: number.unsigned_abs(),
            installation: installation.map(i64::unsigned_abs),
            request: serde_json::from_str(&request).map_err(json_error)?,
            gate: slot.gate.clone(),
        };
        create(conn, &new, poll, now, applied)?;
        applied
            .notes
            .push(format!("{environment} starts: a preview closed"));
    }
    Ok(())
}

/// Whether `payload` (a deployment's, as JSON text) marks a preview.
fn is_preview(payload: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .is_some_and(|p| p.get("preview").is_some_and(|v| v.is_object()))
}

/// A preview's deploy was queued: the deployment its end marks `inactive`, and the URL the
/// dashboard links to. Nothing for other jobs.
pub fn deployment_queued(conn: &Connection, job: &DeployJob, now: i64) -> rusqlite::Result<()> {
    if job.task == DESTROY || !is_preview(&job.payload) {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE previews SET last_deployment = ?3, environment_url = ?4, updated_at = ?5
         WHERE repository = ?1 AND environment = ?2 AND state = ?6",
    )?
    .execute(params![
        job.repo.as_ref(),
        job.environment.as_ref(),
        int_key(job.id.get())?,
        job.environment_url,
        now,
        LIVE
    ])?;
    Ok(())
}

/// A job ended in `state`. When it is a preview's `destroy` that succeeded, the preview is
/// closed and its deployments (every deploy that ran, and the destroy itself) are marked
/// `inactive`, after the statuses already queued. A destroy that failed leaves the preview
/// `closing`, saying so: its resources may still be up, for an operator to look at (a
/// `destroy` deployment made by hand runs it again). `true` when it closed a preview.
pub fn destroyed(
    conn: &Connection,
    job: &DeployJob,
    state: DeploymentState,
    now: i64,
) -> rusqlite::Result<bool> {
    if job.task != DESTROY || !is_preview(&job.payload) {
        return Ok(false);
    }
    let key = (job.repo.as_ref(), job.environment.as_ref());
    if state != DeploymentState::Success {
        let note = format!("destroy {} ended {}: see its log", job.id, state.as_str());
        conn.prepare_cached(
            "UPDATE previews SET note = ?3, updated_at = ?4
             WHERE repository = ?1 AND environment = ?2 AND state = ?5",
        )?
        .execute(params![key.0, key.1, note, now, CLOSING])?;
        return Ok(false);
    }
    let last: Option<Option<i64>> = conn
        .prepare_cached(
            "UPDATE previews SET state = ?3, note = ?4, updated_at = ?5
             WHERE repository = ?1 AND environment = ?2 AND state = ?6
             RETURNING last_deployment",
        )?
        .query_row(
            params![key.0, key.1, CLOSED, "destroyed", now, CLOSING],
            |row| row.get(0),
        )
        .optional()?;
    let Some(last) = last else {
        // Reopened meanwhile, or a destroy run by hand: nothing to mark.
        return Ok(false);
    };
    // GitHub marks older deployments inactive by itself only when they are not transient:
    // a preview's are, so each one that ended is marked here, with the destroy itself.
    let mut ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT deployment_id FROM jobs
             WHERE repository = ?1 AND environment = ?2 AND state = 'finished'
               AND result != 'inactive' AND deployment_id != ?3
             ORDER BY deployment_id",
        )?
        .query_map(params![key.0, key.1, int_key(job.id.get())?], |row| {
            row.get(0)
        })?
        .collect::<Result<_, _>>()?;
    if let Some(last) = last.filter(|l| !ids.contains(l)) {
        ids.push(last);
    }
    let description = "Preview destroyed: its pull request closed";
    let ended: Vec<DeployJob> = ids
        .into_iter()
        .map(|id| DeployJob {
            id: id.unsigned_abs().into(),
            log_url: None,
            environment_url: None,
            ..job.clone()
        })
        .collect();
    for deployment in ended.iter().chain(std::iter::once(job)) {
        outbox::enqueue_status(
            conn,
            deployment,
            DeploymentState::Inactive,
            description,
            now,
        )?;
    }
    Ok(true)
}

fn json_error(err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(err))
}

fn json_text(message: &str) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(message.to_owned().into())
}

#[cfg(test)]
mod tests;
