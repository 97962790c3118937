//! Recording what a wait learns: a merge that waits for checks, a promotion that soaks, a check
//! event, GitHub's answer to a read (or its refusal), and a deployment GitHub would not create.

use crate::model::{
    CheckKind, CheckReport, CheckResult, CheckState, DeploymentRequest, Gate, MergedAt,
    NewDeployment, Policy, Promotion, Required,
};
use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::{int_key, outbox};

use super::order::supersede;
use super::results::upsert_result;
use super::settle::{Answer, any_waiting, is_waiting, reopen_failed, settle};
use super::{Ended, json_error, millis};

/// Records that `new` waits for its merge commit's checks, and settles it at once against
/// what is already known (a check may have finished before the merge's delivery came).
/// A newer merge's wait supersedes this environment's older ones under `latest`. `None`
/// when this commit already waits, or passed, for this environment.
pub fn wait_for_checks(
    conn: &Connection,
    new: &NewDeployment,
    gate: &Gate,
    poll_ms: i64,
    now: i64,
) -> rusqlite::Result<Option<Vec<Ended>>> {
    let sort_key = gate
        .merged_at
        .unwrap_or(MergedAt::from_millis(now))
        .sort_key();
    let due_at = now.saturating_add(millis(gate.timeout));
    let target = Target {
        kind: "checks",
        new,
        required: Some(&gate.required),
        policy: gate.policy,
        sort_key: &sort_key,
        from_deployment: None,
        due_at,
        next_poll_at: now.saturating_add(poll_ms).min(due_at),
    };
    let Some(id) = insert(conn, &target, now)? else {
        return Ok(None);
    };
    let mut ended = supersede(conn, &target, id, now)?;
    ended.extend(settle(
        conn,
        new.repo.as_ref(),
        new.request.git_ref.as_ref(),
        Answer::None,
        now,
    )?);
    if is_waiting(conn, id)? {
        outbox::enqueue_read_checks(conn, &new.repo, &new.request.git_ref, new.installation, now)?;
    }
    Ok(Some(ended))
}

/// Records that `promotion` soaks: its deployment is created once the soak is over (see
/// [`tick`](super::tick)). `None` when this commit already soaks, or was promoted, to that
/// environment.
pub fn soak(
    conn: &Connection,
    promotion: &Promotion,
    now: i64,
) -> rusqlite::Result<Option<Vec<Ended>>> {
    let sort_key = format!("{:020}", promotion.from_deployment.get());
    let due_at = now.saturating_add(millis(promotion.soak));
    let target = Target {
        kind: "soak",
        new: &promotion.new,
        required: None,
        policy: promotion.policy,
        sort_key: &sort_key,
        from_deployment: Some(int_key(promotion.from_deployment.get())?),
        due_at,
        next_poll_at: due_at,
    };
    let Some(id) = insert(conn, &target, now)? else {
        return Ok(None);
    };
    supersede(conn, &target, id, now).map(Some)
}

/// A check event: records its result (unless its source has a newer one) and, when merges
/// wait on the commit, settles them and asks GitHub for the commit's other checks.
pub fn record_check(
    conn: &Connection,
    report: &CheckReport,
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    if let Some(result) = &report.result {
        upsert_result(conn, report.repo.as_ref(), report.sha.as_ref(), result, now)?;
        reopen_failed(conn, report.repo.as_ref(), report.sha.as_ref(), now)?;
    }
    if !any_waiting(conn, report.repo.as_ref(), report.sha.as_ref())? {
        return Ok(vec![]);
    }
    let ended = settle(
        conn,
        report.repo.as_ref(),
        report.sha.as_ref(),
        Answer::None,
        now,
    )?;
    if needs_read(conn, report)? {
        outbox::enqueue_read_checks(conn, &report.repo, &report.sha, report.installation, now)?;
    }
    Ok(ended)
}

/// Whether a check event calls for a read of the commit's checks from GitHub. A named gate
/// is settled by its checks' own events; a read adds what no event says: the runs of a
/// suite (a `check_suite` event, for hooks not subscribed to check runs), and, for `"all"`,
/// whether other checks are still running once one finishes. A check that merely started
/// changes nothing a read would tell. (CI sends three events per check — created,
/// in progress, completed — and reading on each would spend the rate limit on nothing.)
fn needs_read(conn: &Connection, report: &CheckReport) -> rusqlite::Result<bool> {
    let finished = match &report.result {
        Some(result) if result.kind != CheckKind::Suite => result.state != CheckState::Pending,
        _ => return any_waiting(conn, report.repo.as_ref(), report.sha.as_ref()),
    };
    if !finished {
        return Ok(false);
    }
    let all = serde_json::to_string(&Required::All).map_err(json_error)?;
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM waits INDEXED BY waits_by_commit
                        WHERE state = 'waiting' AND repository = ?1 AND sha = ?2
                          AND kind = 'checks' AND required = ?3)",
    )?
    .query_row(
        params![report.repo.as_ref(), report.sha.as_ref(), all],
        |row| row.get(0),
    )
}

/// GitHub answered a read of the commit's checks: record every result, then settle the
/// waits on it — past their deadline, one still pending has now timed out.
pub fn record_read(
    conn: &Connection,
    repo: &str,
    sha: &str,
    results: &[CheckResult],
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    // Runs of one name from other sources (another workflow, another app) are kept beside
    // each other; within a source the newest is kept, whatever order they are listed in.
    for result in results {
        upsert_result(conn, repo, sha, result, now)?;
    }
    reopen_failed(conn, repo, sha, now)?;
    conn.prepare_cached(
        "UPDATE waits SET read_at = ?3, read_error = NULL
         WHERE state = 'waiting' AND repository = ?1 AND sha = ?2",
    )?
    .execute(params![repo, sha, now])?;
    settle(conn, repo, sha, Answer::Read, now)
}

/// GitHub refused to tell the commit's checks (no permission, no such repository) or did not
/// answer for longer than the outbox retries: say so on the waits, and let those past their
/// deadline time out with the reason. `read_at` stays as it was: GitHub told nothing of the
/// checks, so "all" cannot pass on the events seen so far.
pub fn read_failed(
    conn: &Connection,
    repo: &str,
    sha: &str,
    error: &str,
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    conn.prepare_cached(
        "UPDATE waits SET read_error = ?3
         WHERE state = 'waiting' AND repository = ?1 AND sha = ?2",
    )?
    .execute(params![repo, sha, error])?;
    settle(conn, repo, sha, Answer::Refused, now)
}

/// GitHub refused to create the deployment a wait passed for: the wait ends `given_up`, so
/// a new delivery of its merge (or a new success of its commit) may try again.
pub fn creation_given_up(
    conn: &Connection,
    repo: &str,
    request: &DeploymentRequest,
    error: &str,
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    let reason = format!("the deployment could not be created: {error}");
    let kinds: Vec<String> = conn
        .prepare_cached(
            "UPDATE waits SET state = 'given_up', reason = ?4, ended_at = ?5
             WHERE repository = ?1 AND environment = ?2 AND sha = ?3 AND state = 'passed'
             RETURNING kind",
        )?
        .query_map(
            params![
                repo,
                request.environment.as_ref(),
                request.git_ref.as_ref(),
                reason,
                now
            ],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    Ok(kinds
        .iter()
        .map(|kind| Ended {
            kind: if kind == "soak" { "soak" } else { "checks" },
            outcome: "given_up",
        })
        .collect())
}

/// A wait to record.
pub(super) struct Target<'a> {
    pub(super) kind: &'static str,
    pub(super) new: &'a NewDeployment,
    pub(super) required: Option<&'a Required>,
    pub(super) policy: Policy,
    pub(super) sort_key: &'a str,
    pub(super) from_deployment: Option<i64>,
    pub(super) due_at: i64,
    pub(super) next_poll_at: i64,
}

/// Inserts the wait, or starts again one that ended without passing (a merge redelivered
/// once CI was fixed; a commit that succeeds again after being superseded). `None` when the
/// commit waits already, or passed, for this environment.
fn insert(conn: &Connection, target: &Target<'_>, now: i64) -> rusqlite::Result<Option<i64>> {
    let new = target.new;
    let request = serde_json::to_string(&new.request).map_err(json_error)?;
    let required = target
        .required
        .map(serde_json::to_string)
        .transpose()
        .map_err(json_error)?;
    let policy = match target.policy {
        Policy::Latest => "latest",
        Policy::Queue => "queue",
    };
    conn.prepare_cached(
        "INSERT INTO waits (kind, repository, environment, sha, pull_request, installation_id,
                            request, required, policy, sort_key, from_deployment, state,
                            created_at, due_at, next_poll_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'waiting', ?12, ?13, ?14)
         ON CONFLICT (kind, repository, environment, sha) DO UPDATE SET
             pull_request = excluded.pull_request, installation_id = excluded.installation_id,
             request = excluded.request, required = excluded.required,
             policy = excluded.policy, sort_key = excluded.sort_key,
             from_deployment = excluded.from_deployment, state = 'waiting', reason = NULL,
             created_at = excluded.created_at, due_at = excluded.due_at,
             next_poll_at = excluded.next_poll_at, read_at = NULL, read_error = NULL,
             ended_at = NULL
         WHERE waits.state NOT IN ('waiting', 'passed')
         RETURNING id",
    )?
    .query_row(
        params![
            target.kind,
            new.repo.as_ref(),
            new.request.environment.as_ref(),
            new.request.git_ref.as_ref(),
            int_key(new.pull_request)?,
            new.installation.map(int_key).transpose()?,
            request,
            required,
            policy,
            target.sort_key,
            target.from_deployment,
            now,
            target.due_at,
            target.next_poll_at,
        ],
        |row| row.get(0),
    )
    .optional()
}
