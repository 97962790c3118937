//! Settling a commit's waits for checks against the results known: `passed` queues the
//! deployment's creation, `failed` and `timed_out` forget the merge; a failed wait whose check
//! was re-run opens again.

use crate::model::{CommitSha, DeploymentRequest, NewDeployment, RepoName, Required, Verdict};
use crate::store::db::{Connection, params};
use crate::store::merges::marks;
use crate::store::{merges, outbox};

use super::order::{newer_passed_than, older_waiting, oldest_waiting};
use super::results::results;
use super::{Ended, json_error, json_error_text, short};

/// What the settling of a commit's waits may decide, by what it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// A check event, or nothing from GitHub: no timeout, and `"all"` cannot pass.
    None,
    /// GitHub refused or failed the read: past the deadline, pending is `timed_out`.
    Refused,
    /// GitHub told every check: `"all"` may pass, and pending past the deadline times out.
    Read,
}

/// A wait for checks, as settling reads it.
pub(super) struct OpenGate {
    pub(super) id: i64,
    pub(super) environment: String,
    pub(super) required: Required,
    pub(super) policy: String,
    pub(super) sort_key: String,
    pub(super) due_at: i64,
    pub(super) read_error: Option<String>,
    pub(super) installation: Option<i64>,
}

/// Applies each waiting gate on `repo`@`sha` to the results known; `answer` says what GitHub
/// just told (see [`Answer`]). Under `queue`, a wait that ends lets the next one of its environment
/// be settled in turn.
pub(super) fn settle(
    conn: &Connection,
    repo: &str,
    sha: &str,
    answer: Answer,
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    let waiting: Vec<OpenGate> = conn
        .prepare_cached(
            "SELECT id, environment, required, policy, sort_key, due_at, read_error,
                    installation_id
             FROM waits INDEXED BY waits_by_commit
             WHERE repository = ?1 AND sha = ?2 AND state = 'waiting' AND kind = 'checks'",
        )?
        .query_map(params![repo, sha], |row| {
            let required: String = row.get(2)?;
            Ok(OpenGate {
                id: row.get(0)?,
                environment: row.get(1)?,
                required: serde_json::from_str(&required).map_err(json_error)?,
                policy: row.get(3)?,
                sort_key: row.get(4)?,
                due_at: row.get(5)?,
                read_error: row.get(6)?,
                installation: row.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    if waiting.is_empty() {
        return Ok(vec![]);
    }
    let results = results(conn, repo, sha)?;
    let mut ended = Vec::new();
    let mut next_in_line = Vec::new();
    for gate in waiting {
        let required = &gate.required;
        // "all" means all the checks GitHub has for the commit: the events seen so far may
        // be only the first to finish, so only a read of GitHub can make it green.
        let verdict = match required.verdict(&results) {
            Verdict::Green if *required == Required::All && answer != Answer::Read => continue,
            verdict => verdict,
        };
        let (outcome, reason) = match verdict {
            Verdict::Green => match newer_passed_than(conn, gate.id)? {
                Some(newer) => ("superseded", format!("superseded by {}", short(&newer))),
                None if gate.policy == "queue" && older_waiting(conn, repo, &gate)? => continue,
                None => ("passed", format!("{required} passed; deployment created")),
            },
            Verdict::Failed(check) => {
                let link = check.url.map(|u| format!(": {u}")).unwrap_or_default();
                (
                    "failed",
                    format!("check {} {}{link}", check.name, check.detail),
                )
            }
            Verdict::Pending(pending) if answer != Answer::None && now >= gate.due_at => {
                let mut reason = format!("timed out waiting for {}", pending.join(", "));
                if let Some(error) = &gate.read_error {
                    reason.push_str(&format!(" (GitHub: {error})"));
                }
                ("timed_out", reason)
            }
            Verdict::Pending(_) => continue,
        };
        let new = end(conn, gate.id, outcome, &reason, now)?;
        if outcome == "passed" {
            marks::accept(conn, &new, now)?;
        } else {
            forget_merge(conn, &new)?;
            outbox::notify_checks_ended(conn, &new, outcome, &reason, now)?;
        }
        ended.push(Ended {
            kind: "checks",
            outcome,
        });
        if gate.policy == "queue" {
            next_in_line.push(gate);
        }
    }
    // The next merge in line may have been green, waiting only for this one.
    for gate in next_in_line {
        let Some(next) = oldest_waiting(conn, repo, &gate.environment)? else {
            continue;
        };
        ended.extend(settle(conn, repo, &next, Answer::None, now)?);
        let (Ok(repo), Ok(sha)) = (RepoName::parse(repo), CommitSha::parse(&next)) else {
            continue;
        };
        // "all" passes only on a read: ask now rather than at the next poll.
        let installation = gate.installation.map(i64::unsigned_abs);
        if any_waiting(conn, repo.as_ref(), sha.as_ref())? {
            outbox::enqueue_read_checks(conn, &repo, &sha, installation, now)?;
        }
    }
    Ok(ended)
}

/// A failed wait opens again when the check that failed it was re-run: with the results
/// known now, its gate no longer fails. It waits afresh, with a new deadline — unless a
/// newer merge for its environment waits or passed meanwhile (under `latest`).
pub(super) fn reopen_failed(
    conn: &Connection,
    repo: &str,
    sha: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let failed: Vec<(i64, String, String, i64)> = conn
        .prepare_cached(
            "SELECT id, required, environment, due_at - created_at
             FROM waits INDEXED BY waits_by_commit
             WHERE repository = ?1 AND sha = ?2 AND state = 'failed' AND kind = 'checks'",
        )?
        .query_map(params![repo, sha], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    if failed.is_empty() {
        return Ok(());
    }
    let results = results(conn, repo, sha)?;
    for (id, required, environment, timeout) in failed {
        let required: Required = serde_json::from_str(&required).map_err(json_error)?;
        if matches!(required.verdict(&results), Verdict::Failed(_)) {
            continue;
        }
        let newer: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM waits AS this, waits AS newer
                                WHERE this.id = ?1 AND this.policy = 'latest'
                                  AND newer.kind = 'checks' AND newer.repository = ?2
                                  AND newer.environment = ?3 AND newer.sort_key > this.sort_key
                                  AND newer.state IN ('waiting', 'passed'))",
            )?
            .query_row(params![id, repo, environment], |row| row.get(0))?;
        if newer {
            continue;
        }
        let (pull_request, git_ref): (i64, String) = conn
            .prepare_cached(
                "UPDATE waits SET state = 'waiting', reason = NULL, ended_at = NULL,
                     created_at = ?2, due_at = CAST(?2 AS BIGINT) + CAST(?3 AS BIGINT),
                     next_poll_at = ?2, read_at = NULL, read_error = NULL
                 WHERE id = ?1 RETURNING pull_request, sha",
            )?
            .query_row(params![id, now, timeout], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        merges::remember(conn, repo, pull_request, &environment, &git_ref, now)?;
        tracing::info!(
            repo,
            environment = environment.as_str(),
            "the failed check of {repo}@{} was re-run: its merge waits for checks again",
            short(&git_ref)
        );
    }
    Ok(())
}

/// Ends wait `id` and returns the deployment it was waiting to create.
pub(super) fn end(
    conn: &Connection,
    id: i64,
    outcome: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<NewDeployment> {
    let (repository, pull_request, installation, request): (String, i64, Option<i64>, String) =
        conn.prepare_cached(
            "UPDATE waits SET state = ?2, reason = ?3, ended_at = ?4 WHERE id = ?1
             RETURNING repository, pull_request, installation_id, request",
        )?
        .query_row(params![id, outcome, reason, now], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    let request: DeploymentRequest = serde_json::from_str(&request).map_err(json_error)?;
    let repo = RepoName::parse(&repository).map_err(|e| json_error_text(&e.to_string()))?;
    tracing::info!(
        repo = repo.as_ref(),
        environment = request.environment.as_ref(),
        reason,
        "wait for {}@{} ended {outcome}",
        request.environment,
        request.git_ref.short()
    );
    Ok(NewDeployment {
        repo,
        pull_request: pull_request.unsigned_abs(),
        installation: installation.map(i64::unsigned_abs),
        request,
        gate: None,
    })
}

/// A merge whose wait ended without a deployment may ask again: GitHub's Redeliver then
/// starts a new wait, instead of meeting "already asked for its deployment".
pub(super) fn forget_merge(conn: &Connection, new: &NewDeployment) -> rusqlite::Result<()> {
    if new.pull_request == 0 {
        return Ok(());
    }
    merges::forget_merge(
        conn,
        new.repo.as_ref(),
        new.pull_request,
        &new.request.environment,
    )
}

pub(super) fn any_waiting(conn: &Connection, repo: &str, sha: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM waits INDEXED BY waits_by_commit
                        WHERE repository = ?1 AND sha = ?2 AND state = 'waiting'
                          AND kind = 'checks')",
    )?
    .query_row(params![repo, sha], |row| row.get(0))
}

pub(super) fn is_waiting(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT state = 'waiting' FROM waits WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
}
