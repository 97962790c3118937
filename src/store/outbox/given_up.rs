//! Given-up calls, as an operator resolves them: listed, retried (back to `pending`, sent
//! again in their turn) or dismissed (kept, marked with who and when, no longer counted by
//! `deployhook_outbox_failed`). Dismissed rows go with the deliveries' retention (see
//! `store::retention`): long enough to tell who dismissed what, short enough not to pile up.
//!
//! Order still holds on a retry. The row keeps its id, so among the calls of its ordering
//! key still pending it goes in its original place; it becomes the key's head only when
//! none of them is pending (a head may be in flight, and is never taken from it). A status
//! is resent only while it is still its deployment's latest word: once a later status of
//! the same deployment was queued (pending, failed, or sent, which the job's state tells),
//! resending the older one would set the deployment back on GitHub (`queued` after
//! `success`), so it is refused and can only be dismissed.

use crate::store::db::{Connection, OptionalExtension, Row, params};

use crate::store::merges;

/// Given-up calls listed at most, of each kind (unresolved, dismissed).
pub const LISTED: i64 = 100;

/// A given-up call, unresolved or dismissed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    pub id: i64,
    pub kind: String,
    pub repository: String,
    pub deployment_id: Option<i64>,
    pub created_at: i64,
    pub attempts: i64,
    pub last_error: String,
    /// `failed` (unresolved) or `dismissed`.
    pub state: String,
    pub dismissed_by: Option<String>,
    pub dismissed_at: Option<i64>,
}

/// Why a retry or a dismissal was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotDone {
    /// No call has this id (sent calls are deleted).
    Unknown,
    /// The call is not given up (pending, or dismissed already): its state.
    NotFailed(String),
    /// A later status of the same deployment was queued since: resending this one would
    /// set the deployment back on GitHub.
    Superseded(String),
}

const COLUMNS: &str = "id, kind, repository, deployment_id, created_at, attempts,
                       COALESCE(last_error, ''), state, dismissed_by, dismissed_at";

fn given_up_from_row(row: &Row<'_>) -> rusqlite::Result<GivenUp> {
    Ok(GivenUp {
        id: row.get(0)?,
        kind: row.get(1)?,
        repository: row.get(2)?,
        deployment_id: row.get(3)?,
        created_at: row.get(4)?,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        state: row.get(7)?,
        dismissed_by: row.get(8)?,
        dismissed_at: row.get(9)?,
    })
}

/// The calls given up in `state` (`failed` or `dismissed`), newest first, at most `limit`.
pub fn list(conn: &Connection, state: &str, limit: i64) -> rusqlite::Result<Vec<GivenUp>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE state = ?1
         ORDER BY id DESC LIMIT ?2"
    ))?
    .query_map(params![state, limit], given_up_from_row)?
    .collect()
}

/// The call `id`, whatever its state, if it still exists.
pub fn find(conn: &Connection, id: i64) -> rusqlite::Result<Option<GivenUp>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?
        .query_row([id], given_up_from_row)
        .optional()
}

/// The given-up call `id`, or why it cannot be acted on.
fn failed(conn: &Connection, id: i64) -> rusqlite::Result<Result<GivenUp, NotDone>> {
    Ok(match find(conn, id)? {
        None => Err(NotDone::Unknown),
        Some(call) if call.state != "failed" => Err(NotDone::NotFailed(call.state)),
        Some(call) => Ok(call),
    })
}

/// Queues the given-up call `id` again, due now, as if new: its age restarts (else the
/// first failure would give it up again at once) and so do its attempts — except that a
/// deployment creation keeps one, so the worker first asks GitHub whether an earlier attempt
/// created it (a timeout may have hidden a success). A creation records its merge again, as
/// its queuing did, since giving up had forgotten it.
pub fn retry(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<Result<GivenUp, NotDone>> {
    let call = match failed(conn, id)? {
        Ok(call) => call,
        Err(not) => return Ok(Err(not)),
    };
    if call.kind == "deployment_status"
        && let Some(why) = superseded(conn, id)?
    {
        return Ok(Err(NotDone::Superseded(why)));
    }
    super::lock_heads(conn)?;
    conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', in_flight = 0, next_attempt_at = ?2,
                           created_at = ?2,
                           attempts = CASE WHEN kind = 'create_deployment' AND attempts > 0
                                           THEN 1 ELSE 0 END,
                           head = CASE WHEN EXISTS (SELECT 1 FROM outbox o
                                                    WHERE o.state = 'pending'
                                                      AND o.ordering_key = outbox.ordering_key)
                                       THEN 0 ELSE 1 END
         WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    if call.kind == "create_deployment" {
        // When the creation was first queued, not now: for a merge that is the moment its
        // delivery was recorded (the same transaction), which Insights' lead time starts at.
        remember_merge(conn, id, call.created_at)?;
    }
    Ok(find(conn, id)?.ok_or(NotDone::Unknown))
}

/// Marks the given-up call `id` dismissed by `by`: kept, no longer counted.
pub fn dismiss(
    conn: &Connection,
    id: i64,
    by: &str,
    now: i64,
) -> rusqlite::Result<Result<GivenUp, NotDone>> {
    if let Err(not) = failed(conn, id)? {
        return Ok(Err(not));
    }
    conn.prepare_cached(
        "UPDATE outbox SET state = 'dismissed', dismissed_by = ?2, dismissed_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![id, by, now])?;
    Ok(find(conn, id)?.ok_or(NotDone::Unknown))
}

/// Why status `id` is no longer its deployment's latest, if it is not: a later status of
/// the deployment is queued or given up, or its job moved past the state this one reports.
fn superseded(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    let (body, deployment, later, job, newer): (String, i64, bool, Option<String>, Option<i64>) =
        conn.prepare_cached(
            "SELECT o.body, o.deployment_id,
                    EXISTS (SELECT 1 FROM outbox l WHERE l.ordering_key = o.ordering_key
                                 AND l.id > o.id AND l.state IN ('pending', 'failed')),
                    (SELECT j.state FROM jobs j WHERE j.deployment_id = o.deployment_id),
                    (SELECT MAX(n.deployment_id) FROM jobs j JOIN jobs n
                         ON n.repository = j.repository AND n.environment = j.environment
                     WHERE j.deployment_id = o.deployment_id
                       AND n.deployment_id > j.deployment_id AND n.started_at IS NOT NULL)
             FROM outbox o WHERE o.id = ?1",
        )?
        .query_row([id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
    // The status it reports, read here rather than in SQL: the engines share no JSON path.
    let state = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default();
    // GitHub's `auto_inactive` (on by default) marks the environment's other deployments
    // inactive when one reports success: an old success sent late would mark the newer
    // deployment that really runs there inactive.
    if let ("success", Some(newer)) = (state.as_str(), newer) {
        return Ok(Some(format!(
            "deployment {newer} has run in the same environment since: resending `success` \
             for {deployment} now would mark {newer} inactive on GitHub; dismiss it instead"
        )));
    }
    let moved_on = match (state.as_str(), job.as_deref()) {
        ("pending", Some(job)) => job != "approval",
        ("queued", Some(job)) => job != "queued",
        ("in_progress", Some(job)) => job == "finished",
        _ => false,
    };
    Ok((later || moved_on).then(|| {
        format!(
            "a later status of deployment {deployment} was queued since: resending \
             `{state}` now would set the deployment back on GitHub; dismiss it instead"
        )
    }))
}

/// Records again the merge of creation `id` (not a promotion's: it recorded none), as
/// recorded at `recorded_at`.
fn remember_merge(conn: &Connection, id: i64, recorded_at: i64) -> rusqlite::Result<()> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT repository, body FROM outbox WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    // The body's fields are read here rather than in SQL: the engines share no JSON path.
    let merge = row.map(|(repository, body)| {
        let body = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default();
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        let request = &body["request"];
        (
            repository,
            body["pull_request"]
                .as_u64()
                .and_then(|n| i64::try_from(n).ok())
                .unwrap_or(0),
            text(&request["environment"]),
            text(&request["ref"]),
            !request["payload"]["promoted_from"].is_null(),
        )
    });
    match merge {
        Some((repository, pull_request, environment, sha, false)) if !sha.is_empty() => {
            merges::remember(
                conn,
                &repository,
                pull_request,
                &environment,
                &sha,
                recorded_at,
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeploymentState;
    use crate::store::outbox::{complete, enqueue_status, give_up, take_due};
    use crate::store::tests::{each_engine, job};

    fn state_of(conn: &Connection, id: i64) -> (String, i64, i64) {
        conn.query_row(
            "SELECT state, attempts, head FROM outbox WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    #[test]
    fn a_retried_call_is_pending_again_due_now_with_its_attempts_reset() {
        each_engine(|conn| {
            enqueue_status(conn, &job(1, None), DeploymentState::Success, "ok", 0).unwrap();
            let taken = take_due(conn, 0, 8).unwrap();
            give_up(conn, taken[0].id, "GitHub said 500").unwrap();
            let retried = retry(conn, taken[0].id, 5_000).unwrap().unwrap();
            assert_eq!(retried.state, "pending");
            assert_eq!(state_of(conn, taken[0].id), ("pending".into(), 0, 1));
            let again = take_due(conn, 5_000, 8).unwrap();
            assert_eq!(again.len(), 1, "due now");
            assert_eq!(again[0].created_at, 5_000, "its age restarts");
            // Not failed any more: a second retry, or a dismissal, is refused.
            assert_eq!(
                retry(conn, taken[0].id, 6_000).unwrap(),
                Err(NotDone::NotFailed("pending".into()))
            );
            assert_eq!(retry(conn, 999, 6_000).unwrap(), Err(NotDone::Unknown));
        });
    }

    #[test]
    fn a_retried_call_waits_behind_the_pending_head_of_its_key() {
        each_engine(|conn| {
            let deployment = job(1, None);
            enqueue_status(conn, &deployment, DeploymentState::Success, "ok", 0).unwrap();
            let first = take_due(conn, 0, 8).unwrap()[0].id;
            give_up(conn, first, "500").unwrap();
            enqueue_status(conn, &deployment, DeploymentState::Inactive, "old", 0).unwrap();
            let head = take_due(conn, 0, 8).unwrap()[0].id;
            // `success` then `inactive`: a later status is pending, so the older one is refused.
            assert!(matches!(
                retry(conn, first, 1_000).unwrap(),
                Err(NotDone::Superseded(_))
            ));
            complete(conn, head).unwrap();
            // Another deployment's given-up call goes back as its key's head.
            enqueue_status(conn, &job(2, None), DeploymentState::Failure, "no", 0).unwrap();
            let other = take_due(conn, 0, 8).unwrap()[0].id;
            give_up(conn, other, "500").unwrap();
            retry(conn, other, 1_000).unwrap().unwrap();
            assert_eq!(state_of(conn, other).2, 1);
        });
    }

    #[test]
    fn a_dismissed_call_is_kept_with_who_and_when_and_no_longer_counted() {
        each_engine(|conn| {
            enqueue_status(conn, &job(1, None), DeploymentState::Success, "ok", 0).unwrap();
            let id = take_due(conn, 0, 8).unwrap()[0].id;
            give_up(conn, id, "422").unwrap();
            assert_eq!(list(conn, "failed", 10).unwrap().len(), 1);
            let dismissed = dismiss(conn, id, "maria", 7_000).unwrap().unwrap();
            assert_eq!(dismissed.dismissed_by.as_deref(), Some("maria"));
            assert_eq!(dismissed.dismissed_at, Some(7_000));
            assert!(list(conn, "failed", 10).unwrap().is_empty());
            assert_eq!(list(conn, "dismissed", 10).unwrap()[0].id, id);
            let backlog = crate::store::views::backlog(conn, 7_000).unwrap();
            assert_eq!(backlog.outbox_failed, 0);
            assert_eq!(
                dismiss(conn, id, "maria", 8_000).unwrap(),
                Err(NotDone::NotFailed("dismissed".into()))
            );
        });
    }

    #[test]
    fn an_old_success_is_not_resent_once_a_newer_deployment_ran_there() {
        each_engine(|conn| {
            let (old, newer) = (job(1, None), job(2, None));
            let queue = |_: &str| crate::model::Policy::Queue;
            crate::store::jobs::enqueue(conn, &old, "d1", 0).unwrap();
            crate::store::jobs::claim(conn, "test", 8, queue, 100).unwrap();
            crate::store::jobs::finish(conn, &old, DeploymentState::Success, "ok", 200).unwrap();
            // The job's own statuses (queued, in_progress, success) go out in order; the last
            // one, success, is given up.
            let id = loop {
                let due = take_due(conn, 500, 8).unwrap();
                let call = &due[0];
                if format!("{:?}", call.call)
                    .to_lowercase()
                    .contains("success")
                {
                    break call.id;
                }
                complete(conn, call.id).unwrap();
            };
            give_up(conn, id, "GitHub said 502").unwrap();
            // Before the newer one runs, the retry is fine; afterwards, it would make GitHub
            // mark the newer deployment inactive (auto_inactive).
            crate::store::jobs::enqueue(conn, &newer, "d2", 0).unwrap();
            let started =
                crate::store::jobs::claim(conn, "test", 8, |_| crate::model::Policy::Queue, 1_000)
                    .unwrap();
            assert!(
                started.iter().any(|c| c.job.id == newer.id),
                "the newer job runs"
            );
            let refused = retry(conn, id, 2_000).unwrap();
            let Err(NotDone::Superseded(why)) = refused else {
                panic!("{refused:?}");
            };
            assert!(why.contains("would mark 2 inactive on GitHub"), "{why}");
            // Dismissing stays possible.
            assert!(dismiss(conn, id, "maria", 3_000).unwrap().is_ok());
        });
    }

    #[test]
    fn a_retried_creation_records_its_merge_as_of_when_it_was_first_queued() {
        use crate::model::{CommitSha, DeploymentRequest, Environment, NewDeployment, RepoName};
        each_engine(|conn| {
            let sha = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
            let new = NewDeployment {
                repo: RepoName::parse("acme/widgets").unwrap(),
                pull_request: 42,
                installation: None,
                request: DeploymentRequest {
                    git_ref: CommitSha::parse(sha).unwrap(),
                    task: "deploy".into(),
                    auto_merge: false,
                    required_contexts: vec![],
                    environment: Environment::parse("production").unwrap(),
                    payload: serde_json::json!({ "pull_request": 42 }),
                    description: "d".into(),
                    production_environment: None,
                    transient_environment: None,
                },
                gate: None,
            };
            crate::store::outbox::enqueue_create_deployment(conn, &new, 1_000).unwrap();
            let id = take_due(conn, 1_000, 8).unwrap()[0].id;
            give_up(conn, id, "GitHub said 422").unwrap();
            // Giving up forgot the merge (so that a new delivery of it may ask again).
            conn.execute("DELETE FROM merges", []).unwrap();
            retry(conn, id, 9_000).unwrap().unwrap();
            let recorded: i64 = conn
                .query_row(
                    "SELECT recorded_at FROM merges WHERE repository = 'acme/widgets' AND sha = ?1",
                    [sha],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(recorded, 1_000, "as of the merge, not of the retry");
        });
    }
}
