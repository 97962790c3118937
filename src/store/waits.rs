//! The `waits` and `check_results` tables: deployments that wait before they are created —
//! a merge for its commit's checks, a promotion for its soak — and the check results they
//! wait on. A wait ends in the transaction that learns its fate: `passed` queues the
//! deployment's creation in the outbox; `failed` and `timed_out` forget the merge, so a new
//! delivery of it starts a new wait; `superseded` when a newer merge or success replaced it
//! under the `latest` policy; `given_up` when GitHub refused to create its deployment.
//!
//! A wait decides `timed_out` only on an answer from GitHub: past its deadline it asks for
//! the checks once more, and while GitHub does not answer (an outage, retried through the
//! outbox) it keeps waiting. A wait never fails because GitHub was unreachable. A wait that
//! `failed` opens again when its failed check is re-run (a newer result that is not a
//! failure): re-running flaky CI deploys the merge without anyone redelivering it.
//!
//! Order: under `latest`, a wait never passes once a newer one (by merge time, or by the
//! deployment promoted from) has passed — it would deploy older code over newer. Under
//! `queue`, a green wait passes only when no older one for its environment still waits, so
//! deployments are created, and run, in merge order.

use crate::store::db::{Connection, OptionalExtension, Row, params};

use crate::model::{
    CheckKind, CheckReport, CheckResult, CheckState, CommitSha, DeploymentRequest, Gate,
    NewDeployment, Policy, Promotion, RepoName, Required, Verdict,
};
use crate::store::{int_key, merges, outbox};

/// A wait that ended, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// `checks` or `soak`.
    pub kind: &'static str,
    /// `passed`, `failed`, `timed_out`, `superseded` or `given_up`.
    pub outcome: &'static str,
}

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
    let sort_key = gate.merged_at.clone().unwrap_or_else(|| timestamp(now));
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
/// [`tick`]). `None` when this commit already soaks, or was promoted, to that environment.
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

/// A check event: records its result (unless a newer one is known) and, when merges wait
/// on the commit, settles them and asks GitHub for the commit's other checks.
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

/// A few words on waits that ended at once, for the answer to the delivery that ended them.
pub fn summary(ended: &[Ended]) -> Option<String> {
    if ended.is_empty() {
        return None;
    }
    let parts: Vec<String> = ended
        .iter()
        .map(|e| {
            let what = if e.kind == "soak" {
                "promotion"
            } else {
                "wait for checks"
            };
            format!("{what} {}", e.outcome.replace('_', " "))
        })
        .collect();
    Some(format!("then at once: {}", parts.join(", ")))
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
    for result in worst_per_check(results) {
        upsert_result(conn, repo, sha, &result, now)?;
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

/// What the gate worker did in one pass.
#[derive(Debug, Default)]
pub struct Tick {
    /// Reads of checks queued in the outbox.
    pub reads: usize,
    /// Deployments queued in the outbox (soaks that ended).
    pub created: usize,
    pub ended: Vec<Ended>,
}

/// The periodic pass over the waits that are due: a soak that is over creates its
/// deployment; a merge still waiting has its checks read again (the backstop for a missed
/// check event, and past the deadline the read that decides `timed_out`).
pub fn tick(conn: &Connection, poll_ms: i64, now: i64, limit: usize) -> rusqlite::Result<Tick> {
    let due: Vec<(i64, String, String, String, Option<i64>, i64)> = conn
        .prepare_cached(
            "SELECT id, kind, repository, sha, installation_id, due_at FROM waits INDEXED BY waits_due
             WHERE state = 'waiting' AND next_poll_at <= ?1
             ORDER BY next_poll_at LIMIT ?2",
        )?
        .query_map(params![now, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut tick = Tick::default();
    for (id, kind, repository, sha, installation, due_at) in due {
        if kind == "soak" {
            // A newer success already promoted (delivered before this one's soak ended):
            // promoting this one now would deploy older code over it.
            let (outcome, reason) = match newer_passed_than(conn, id)? {
                Some(newer) => ("superseded", format!("superseded by {}", short(&newer))),
                None => ("passed", "soaked; deployment created".to_owned()),
            };
            let new = end(conn, id, outcome, &reason, now)?;
            if outcome == "passed" {
                outbox::enqueue_create_deployment(conn, &new, now)?;
                tick.created += 1;
            }
            tick.ended.push(Ended {
                kind: "soak",
                outcome,
            });
            continue;
        }
        let next = if due_at > now {
            (now + poll_ms).min(due_at)
        } else {
            now + poll_ms
        };
        conn.prepare_cached("UPDATE waits SET next_poll_at = ?2 WHERE id = ?1")?
            .execute(params![id, next])?;
        let (Ok(repo), Ok(sha)) = (RepoName::parse(&repository), CommitSha::parse(&sha)) else {
            continue;
        };
        let installation = installation.map(i64::unsigned_abs);
        if outbox::enqueue_read_checks(conn, &repo, &sha, installation, now)? {
            tick.reads += 1;
        }
    }
    Ok(tick)
}

/// When the next wait falls due, if any waits.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(next_poll_at) FROM waits INDEXED BY waits_due WHERE state = 'waiting'",
    )?
    .query_row([], |row| row.get(0))
}

/// A wait as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct WaitRow {
    pub kind: String,
    pub repository: String,
    pub environment: String,
    pub sha: String,
    pub pull_request: u64,
    /// The gate (checks).
    pub required: Option<Required>,
    pub created_at: i64,
    pub due_at: i64,
    pub from_deployment: Option<u64>,
    pub read_error: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub ended_at: Option<i64>,
    /// The results known for the commit (checks).
    pub results: Vec<CheckResult>,
}

impl WaitRow {
    /// The required checks that passed and those still pending (checks).
    pub fn progress(&self) -> (Vec<String>, Vec<String>) {
        let Some(required) = &self.required else {
            return (vec![], vec![]);
        };
        let passed: Vec<String> = self
            .results
            .iter()
            .filter(|r| r.state == CheckState::Passed)
            .filter(|r| match required {
                Required::All => true,
                Required::Named(names) => names.contains(&r.name),
            })
            .map(|r| r.name.clone())
            .collect();
        let pending = match required.verdict(&self.results) {
            Verdict::Pending(names) => names,
            Verdict::Green | Verdict::Failed(_) => vec![],
        };
        (passed, pending)
    }
}

/// Waiting waits the dashboard shows at most (the gauge counts them all).
const MAX_WAITING_SHOWN: i64 = 200;

/// The waits still waiting, oldest first, and the most recently ended ones.
pub fn waits(conn: &Connection, ended_limit: usize) -> rusqlite::Result<Vec<WaitRow>> {
    let columns = "kind, repository, environment, sha, pull_request, required, created_at,
                   due_at, from_deployment, read_error, state, reason, ended_at";
    let mut rows: Vec<WaitRow> = conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM waits INDEXED BY waits_waiting_by_age WHERE state = 'waiting'
             ORDER BY created_at, id LIMIT ?1"
        ))?
        .query_map([MAX_WAITING_SHOWN], wait_row)?
        .collect::<Result<_, _>>()?;
    let ended: Vec<WaitRow> = conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM waits INDEXED BY waits_ended WHERE state != 'waiting'
             ORDER BY ended_at DESC NULLS LAST LIMIT ?1"
        ))?
        .query_map([i64::try_from(ended_limit).unwrap_or(i64::MAX)], wait_row)?
        .collect::<Result<_, _>>()?;
    rows.extend(ended);
    for row in &mut rows {
        if row.kind == "checks" && row.state == "waiting" {
            row.results = results(conn, &row.repository, &row.sha)?;
        }
    }
    Ok(rows)
}

/// How many waits wait now: `(checks, soak)`.
pub fn waiting_counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.prepare_cached(
        "SELECT COUNT(CASE WHEN kind = 'checks' THEN 1 END),
                COUNT(CASE WHEN kind = 'soak' THEN 1 END)
         FROM waits INDEXED BY waits_due WHERE state = 'waiting'",
    )?
    .query_row([], |row| {
        let count = |i| row.get::<_, i64>(i).map(i64::unsigned_abs);
        Ok((count(0)?, count(1)?))
    })
}

fn wait_row(row: &Row<'_>) -> rusqlite::Result<WaitRow> {
    let required: Option<String> = row.get(5)?;
    Ok(WaitRow {
        kind: row.get(0)?,
        repository: row.get(1)?,
        environment: row.get(2)?,
        sha: row.get(3)?,
        pull_request: row.get::<_, i64>(4)?.unsigned_abs(),
        required: required.and_then(|r| serde_json::from_str(&r).ok()),
        created_at: row.get(6)?,
        due_at: row.get(7)?,
        from_deployment: row.get::<_, Option<i64>>(8)?.map(i64::unsigned_abs),
        read_error: row.get(9)?,
        state: row.get(10)?,
        reason: row.get(11)?,
        ended_at: row.get(12)?,
        results: vec![],
    })
}

/// A wait to record.
struct Target<'a> {
    kind: &'static str,
    new: &'a NewDeployment,
    required: Option<&'a Required>,
    policy: Policy,
    sort_key: &'a str,
    from_deployment: Option<i64>,
    due_at: i64,
    next_poll_at: i64,
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

/// Under `latest`, one wait of a kind per repository and environment: the newest. Ends the
/// older ones, or the new one itself when a newer one already waits or already passed (a
/// late delivery, or a redelivery of one that ended).
fn supersede(
    conn: &Connection,
    target: &Target<'_>,
    id: i64,
    now: i64,
) -> rusqlite::Result<Vec<Ended>> {
    if target.policy != Policy::Latest {
        return Ok(vec![]);
    }
    // A newer one already passed (a late delivery, a redelivery of a merge that failed or
    // was superseded, a late success): this one must not deploy over it.
    if let Some(newer_sha) = newer_passed_than(conn, id)? {
        let reason = format!("superseded by {}", short(&newer_sha));
        let new = end(conn, id, "superseded", &reason, now)?;
        if target.kind == "checks" {
            forget_merge(conn, &new)?;
        }
        return Ok(vec![Ended {
            kind: target.kind,
            outcome: "superseded",
        }]);
    }
    let others: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT id, sort_key, sha FROM waits INDEXED BY waits_open_by_target
             WHERE state = 'waiting' AND repository = ?1 AND environment = ?2 AND kind = ?3
               AND id != ?4",
        )?
        .query_map(
            params![
                target.new.repo.as_ref(),
                target.new.request.environment.as_ref(),
                target.kind,
                id
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut ended = Vec::new();
    for (other, sort_key, sha) in others {
        let (older, newer_sha) = if sort_key.as_str() <= target.sort_key {
            (other, target.new.request.git_ref.to_string())
        } else {
            (id, sha)
        };
        let reason = format!("superseded by {}", short(&newer_sha));
        let new = end(conn, older, "superseded", &reason, now)?;
        if target.kind == "checks" {
            forget_merge(conn, &new)?;
        }
        ended.push(Ended {
            kind: target.kind,
            outcome: "superseded",
        });
        if older == id {
            break;
        }
    }
    Ok(ended)
}

/// What the settling of a commit's waits may decide, by what it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A check event, or nothing from GitHub: no timeout, and `"all"` cannot pass.
    None,
    /// GitHub refused or failed the read: past the deadline, pending is `timed_out`.
    Refused,
    /// GitHub told every check: `"all"` may pass, and pending past the deadline times out.
    Read,
}

/// A wait for checks, as settling reads it.
struct OpenGate {
    id: i64,
    environment: String,
    required: Required,
    policy: String,
    sort_key: String,
    due_at: i64,
    read_error: Option<String>,
    installation: Option<i64>,
}

/// Applies each waiting gate on `repo`@`sha` to the results known; `answer` says what GitHub
/// just told (see [`Answer`]). Under `queue`, a wait that ends lets the next one of its environment
/// be settled in turn.
fn settle(
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
            outbox::enqueue_create_deployment(conn, &new, now)?;
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

/// Under `queue`: whether a merge older than `gate`'s still waits for the same environment.
fn older_waiting(conn: &Connection, repo: &str, gate: &OpenGate) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM waits INDEXED BY waits_open_by_target
                        WHERE state = 'waiting' AND repository = ?1 AND environment = ?2
                          AND kind = 'checks' AND sort_key < ?3)",
    )?
    .query_row(params![repo, gate.environment, gate.sort_key], |row| {
        row.get(0)
    })
}

/// The commit of the oldest merge waiting for `environment`'s checks, if any.
fn oldest_waiting(
    conn: &Connection,
    repo: &str,
    environment: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT sha FROM waits INDEXED BY waits_open_by_target
         WHERE state = 'waiting' AND repository = ?1 AND environment = ?2 AND kind = 'checks'
         ORDER BY sort_key LIMIT 1",
    )?
    .query_row(params![repo, environment], |row| row.get(0))
    .optional()
}

/// The commit of a wait for the same kind, repository and environment as wait `id` that is
/// newer and already passed, if any: `id` must not deploy over it (under `latest`).
fn newer_passed_than(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT newer.sha FROM waits AS this, waits AS newer INDEXED BY waits_passed
         WHERE this.id = ?1 AND this.policy = 'latest'
           AND newer.state = 'passed' AND newer.kind = this.kind
           AND newer.repository = this.repository AND newer.environment = this.environment
           AND newer.sort_key > this.sort_key
         ORDER BY newer.sort_key DESC LIMIT 1",
    )?
    .query_row([id], |row| row.get(0))
    .optional()
}

/// A failed wait opens again when the check that failed it was re-run: with the results
/// known now, its gate no longer fails. It waits afresh, with a new deadline — unless a
/// newer merge for its environment waits or passed meanwhile (under `latest`).
fn reopen_failed(conn: &Connection, repo: &str, sha: &str, now: i64) -> rusqlite::Result<()> {
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

/// One result per check (kind and name) from a read: the worst of its runs. Two workflows
/// may run a job of the same name; a failure of one must not hide behind the other's
/// success.
fn worst_per_check(results: &[CheckResult]) -> Vec<CheckResult> {
    let rank = |state: CheckState| match state {
        CheckState::Failed => 2,
        CheckState::Pending => 1,
        CheckState::Passed => 0,
    };
    let mut merged: Vec<CheckResult> = Vec::new();
    for result in results {
        match merged
            .iter_mut()
            .find(|m| m.kind == result.kind && m.name == result.name)
        {
            None => merged.push(result.clone()),
            Some(known) => {
                let newest = known.source_id.max(result.source_id);
                if rank(result.state) > rank(known.state) {
                    *known = result.clone();
                }
                known.source_id = newest;
            }
        }
    }
    merged
}

fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// Ends wait `id` and returns the deployment it was waiting to create.
fn end(
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
fn forget_merge(conn: &Connection, new: &NewDeployment) -> rusqlite::Result<()> {
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

fn upsert_result(
    conn: &Connection,
    repo: &str,
    sha: &str,
    result: &CheckResult,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO check_results (repository, sha, kind, name, state, detail, url, source_id,
                                    updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (repository, sha, kind, name) DO UPDATE SET
             state = excluded.state, detail = excluded.detail, url = excluded.url,
             source_id = excluded.source_id, updated_at = excluded.updated_at
         WHERE excluded.source_id > check_results.source_id
            OR (excluded.source_id = check_results.source_id
                AND check_results.state = 'pending')",
    )?
    .execute(params![
        repo,
        sha,
        result.kind.as_str(),
        result.name,
        result.state.as_str(),
        result.detail,
        result.url,
        int_key(result.source_id)?,
        now
    ])?;
    Ok(())
}

/// The latest result of each check known for `repo`@`sha`.
pub fn results(conn: &Connection, repo: &str, sha: &str) -> rusqlite::Result<Vec<CheckResult>> {
    conn.prepare_cached(
        "SELECT kind, name, state, detail, url, source_id FROM check_results
         WHERE repository = ?1 AND sha = ?2 ORDER BY name, kind",
    )?
    .query_map(params![repo, sha], |row| {
        Ok(CheckResult {
            kind: CheckKind::parse(&row.get::<_, String>(0)?),
            name: row.get(1)?,
            state: CheckState::parse(&row.get::<_, String>(2)?),
            detail: row.get(3)?,
            url: row.get(4)?,
            source_id: row.get::<_, i64>(5)?.unsigned_abs(),
        })
    })?
    .collect()
}

fn any_waiting(conn: &Connection, repo: &str, sha: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM waits INDEXED BY waits_by_commit
                        WHERE repository = ?1 AND sha = ?2 AND state = 'waiting'
                          AND kind = 'checks')",
    )?
    .query_row(params![repo, sha], |row| row.get(0))
}

fn is_waiting(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT state = 'waiting' FROM waits WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// `now` (milliseconds) as RFC 3339 to the second, like GitHub's `merged_at`.
fn timestamp(now: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now.unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

fn json_error(err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(err))
}

fn json_error_text(text: &str) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(text.into())
}

#[cfg(test)]
mod tests;
