//! The `outbox` table: GitHub calls that must happen. A row is written in the same
//! transaction as the decision that needs the call, taken by the outbox worker when due,
//! and deleted once GitHub accepted it; failures reschedule it with backoff. Rows sharing
//! an ordering key go one at a time, oldest first: the statuses of one deployment reach
//! GitHub in the order they were decided.
//!
//! The oldest pending row of each ordering key is marked its `head`, and only heads are
//! ever looked at to find what is due: an index holds them by installation and due time,
//! so finding the next call costs the same with fifty thousand calls waiting (a long
//! GitHub outage on a busy organisation) as with none. Rate-limit pauses are one row per
//! installation (`outbox_pauses`), not an update of every call it has waiting.
//!
//! Notifications go through the same table, in lanes of their own ([`notify`]): a Slack
//! that hangs never holds up a status GitHub waits for, nor the other way round.

use crate::store::db::{Connection, Dialect, OptionalExtension, Row as DbRow, params};

/// After this long, a call marked in flight whose outcome was never recorded is taken
/// again (see [`take_due`]). Far longer than a call can take: 30 s per request, twice with
/// a token refresh, plus the minute the outcome's recording is retried.
pub const STALE_IN_FLIGHT_MS: i64 = 5 * 60 * 1000;

use crate::model::{
    DeployJob, DeploymentRequest, DeploymentState, NewDeployment, Notification, StatusRequest,
};
use crate::store::int_key;

mod changelog;
mod checks;
pub mod given_up;
mod notify;
mod replies;
mod tags;

pub use changelog::{changelog_queued, enqueue_changelog};
pub use checks::enqueue_read_checks;
pub use notify::{
    NOTIFY_LANE, enqueue_notification, fan_out, notify_checks_ended, notify_deploy, receiver_lane,
};
pub use replies::{enqueue_reaction, enqueue_reply};
pub use tags::{enqueue_tag, tag_resolved};

/// What a row asks for: a call to GitHub, or a notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    CreateDeployment {
        repository: String,
        pull_request: u64,
        request: DeploymentRequest,
    },
    DeploymentStatus {
        repository: String,
        deployment_id: u64,
        request: StatusRequest,
    },
    /// Read the check runs and commit statuses of a commit that a merge waits on.
    ReadChecks { repository: String, sha: String },
    /// React to a command's comment (`eyes`, `rocket`, `-1`).
    React {
        repository: String,
        comment_id: u64,
        content: String,
    },
    /// Post deployhook's reply to a command's comment, or edit the one it posted.
    Reply {
        repository: String,
        pull_request: u64,
        comment_id: u64,
        body: String,
    },
    /// Find the commit of a release's tag, then queue its deployment (see [`tags`]).
    ResolveTag(crate::model::TagDeploy),
    /// Read what deployment `deployment_id` deploys: the commits from `base` (the
    /// environment's previous success) to `head` (see [`changelog`]).
    Changelog {
        repository: String,
        deployment_id: u64,
        base: String,
        head: String,
    },
    /// Not GitHub's: an event to tell, to be fanned out into one [`Call::Notification`]
    /// per receiver configured for it.
    Notify(Notification),
    /// Not GitHub's: send `event` to `receiver` (see `NotifyConfig::receiver`).
    /// `delivery` is the same for every attempt and receiver of one event.
    Notification {
        receiver: String,
        delivery: String,
        event: Notification,
    },
}

impl Call {
    pub fn repository(&self) -> &str {
        match self {
            Self::CreateDeployment { repository, .. }
            | Self::DeploymentStatus { repository, .. }
            | Self::ReadChecks { repository, .. }
            | Self::React { repository, .. }
            | Self::Reply { repository, .. }
            | Self::Changelog { repository, .. } => repository,
            Self::ResolveTag(deploy) => deploy.repo.as_ref(),
            Self::Notify(event) | Self::Notification { event, .. } => {
                event.repository.as_ref().map_or("", AsRef::as_ref)
            }
        }
    }
}

/// A row taken to be sent.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub ordering_key: String,
    /// Attempts before this one. Above 0, an earlier attempt may have reached GitHub.
    pub attempts: u32,
    pub created_at: i64,
    /// The App installation whose token makes the call; `None` with a token, and for
    /// notifications.
    pub installation: Option<u64>,
    pub call: Call,
}

/// Queues the creation of `new`. The deployments of merges (and of their promotions) to
/// one environment are created one at a time, in the order they were queued — the order of
/// their merges (see [`crate::store::merges::marks`]) — so that GitHub numbers them, and the
/// deploy queue runs them, in merge order even when a creation has to be retried. Others (a
/// rollback) keep a key of their own: nothing holds them behind a merge GitHub refuses.
pub fn enqueue_create_deployment(
    conn: &Connection,
    new: &NewDeployment,
    now: i64,
) -> rusqlite::Result<()> {
    let key = if crate::model::Merge::of_automatic(&new.request.payload).is_some() {
        format!("merges:{}@{}", new.repo, new.request.environment)
    } else {
        format!(
            "pr:{}#{}@{}",
            new.repo, new.pull_request, new.request.environment
        )
    };
    let body = serde_json::json!({ "pull_request": new.pull_request, "request": new.request });
    let row = Row {
        key: &key,
        kind: "create_deployment",
        repository: new.repo.as_ref(),
        deployment_id: None,
        lane: lane_of(new.installation)?,
        body: &body.to_string(),
    };
    insert(conn, &row, now)
}

/// Queues a status for `job`'s deployment, after those already queued for it.
pub fn enqueue_status(
    conn: &Connection,
    job: &DeployJob,
    state: DeploymentState,
    description: &str,
    now: i64,
) -> rusqlite::Result<()> {
    // The log exists from the moment the deploy runs; the environment once it succeeded.
    let ran = !matches!(
        state,
        DeploymentState::Pending | DeploymentState::Queued | DeploymentState::Inactive
    );
    let request = StatusRequest {
        state,
        description: crate::model::text::description(description),
        log_url: job.log_url.clone().filter(|_| ran),
        environment_url: job
            .environment_url
            .clone()
            .filter(|_| state == DeploymentState::Success),
    };
    let body = serde_json::to_string(&request).map_err(json_error)?;
    let key = format!("deployment:{}", job.id);
    let id = int_key(job.id.get())?;
    let row = Row {
        key: &key,
        kind: "deployment_status",
        repository: job.repo.as_ref(),
        deployment_id: Some(id),
        lane: lane_of(job.installation)?,
        body: &body,
    };
    insert(conn, &row, now)?;
    // A deployment a pull-request comment asked for: the reply there hears of it too.
    replies::news_of_status(conn, job, state, description, now)
}

/// A row to insert.
struct Row<'a> {
    key: &'a str,
    kind: &'a str,
    repository: &'a str,
    deployment_id: Option<i64>,
    /// What the row is serialized by (`installation_id`): the App installation, `None`
    /// for the token, or a notification lane (negative).
    lane: Option<i64>,
    body: &'a str,
}

/// The lane of a GitHub call: its installation's id, or `None` (0) for the token's.
fn lane_of(installation: Option<u64>) -> rusqlite::Result<Option<i64>> {
    installation.map(int_key).transpose()
}

/// The transaction-level advisory lock that keeps each key's `head` right (PostgreSQL).
const HEADS_LOCK: i64 = 0x6465_706c_6f79_0004;

/// On PostgreSQL, waits until no other transaction is changing which row heads a key, so
/// that this one sees their commits. Without it, a call queued while its key's head is
/// being completed reads the old head (not yet deleted), takes `head = 0`, and the key is
/// left with no head at all: its calls are never sent. (SQLite's one writer runs
/// transactions one at a time.) One lock for every key: transactions that touch several
/// keys cannot deadlock on it; it is held only from here to the commit. The merge marks
/// take it too, from their check to the commit (see `merges::marks`).
pub(super) fn lock_heads(conn: &Connection) -> rusqlite::Result<()> {
    if conn.dialect() == Dialect::Postgres {
        conn.query_row("SELECT pg_advisory_xact_lock(?1)", [HEADS_LOCK], |_| Ok(()))?;
    }
    Ok(())
}

fn insert(conn: &Connection, row: &Row<'_>, now: i64) -> rusqlite::Result<()> {
    lock_heads(conn)?;
    // The first pending row of its key is the key's head; the others wait behind it.
    conn.prepare_cached(
        "INSERT INTO outbox (ordering_key, kind, repository, deployment_id, body, created_at,
                             next_attempt_at, installation_id, head)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7,
                 CASE WHEN EXISTS (SELECT 1 FROM outbox WHERE state = 'pending' AND ordering_key = ?1)
                      THEN 0 ELSE 1 END)",
    )?
    .execute(params![
        row.key,
        row.kind,
        row.repository,
        row.deployment_id,
        row.body,
        now,
        row.lane
    ])?;
    Ok(())
}

/// Takes up to `limit` due rows, each the head (oldest pending row) of its ordering key,
/// and at most one call per App installation (or for the one token, as installation 0) in
/// flight at a time: GitHub asks that the calls of one client be made one after another,
/// and throttles content creation otherwise. An installation paused by a rate limit gives
/// none. Each taken row is marked in flight and has its attempt counted before it is sent.
///
/// `in_flight` holds when a row was taken (0: not taken). A row taken longer than
/// [`STALE_IN_FLIGHT_MS`] ago counts as free again: its worker died without recording the
/// outcome (the database refused for a minute, a panic), and it must not hold up every other
/// call of its installation until the next restart. Sending it again is safe: a status twice
/// is harmless, and a creation asks GitHub first whether it happened.
///
/// Its cost grows with the number of installations, never with the calls waiting: each
/// lookup is one step down an index.
pub fn take_due(conn: &Connection, now: i64, limit: usize) -> rusqlite::Result<Vec<Item>> {
    let stale = now - STALE_IN_FLIGHT_MS;
    let mut items: Vec<Item> = Vec::new();
    for installation in idle_installations(conn, now)? {
        if paused_until(conn, installation, now)?.is_some() {
            continue;
        }
        let mut statement = conn.prepare_cached(
            "SELECT id, ordering_key, kind, repository, deployment_id, body, attempts,
                    created_at, installation_id
             FROM outbox INDEXED BY outbox_heads
             WHERE state = 'pending' AND head = 1 AND COALESCE(installation_id, 0) = ?1
               AND next_attempt_at <= ?2 AND (in_flight = 0 OR in_flight <= ?3)
             ORDER BY next_attempt_at, id
             LIMIT 1",
        )?;
        if let Some(item) = statement
            .query_row(params![installation, now, stale], item_from_row)
            .optional()?
        {
            items.push(item);
        }
    }
    // The oldest calls first, whichever installation they belong to: walking installations
    // in id order and stopping at `limit` would starve the high-numbered ones after an
    // outage. One candidate per installation, so this sorts few.
    items.sort_by_key(|item| item.id);
    items.truncate(limit);
    for item in &items {
        conn.prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, in_flight = ?2 WHERE id = ?1",
        )?
        .execute(params![item.id, now.max(1)])?;
    }
    Ok(items)
}

fn item_from_row(row: &DbRow<'_>) -> rusqlite::Result<Item> {
    let kind: String = row.get(2)?;
    let repository: String = row.get(3)?;
    let body: String = row.get(5)?;
    let call = match kind.as_str() {
        "create_deployment" => {
            let body: serde_json::Value = serde_json::from_str(&body).map_err(json_error)?;
            Call::CreateDeployment {
                repository,
                pull_request: body["pull_request"].as_u64().unwrap_or_default(),
                request: serde_json::from_value(body["request"].clone()).map_err(json_error)?,
            }
        }
        "read_checks" => {
            let body: serde_json::Value = serde_json::from_str(&body).map_err(json_error)?;
            Call::ReadChecks {
                repository,
                sha: body["sha"].as_str().unwrap_or_default().to_owned(),
            }
        }
        "resolve_tag" => Call::ResolveTag(serde_json::from_str(&body).map_err(json_error)?),
        "changelog" => changelog::call_from(repository, &body)?,
        "notify" | "notification" => notify::call_from(&kind, &body)?,
        "reaction" | "reply" => replies::call_from(&kind, repository, &body)?,
        _ => Call::DeploymentStatus {
            repository,
            deployment_id: row.get::<_, i64>(4)?.unsigned_abs(),
            request: serde_json::from_str(&body).map_err(json_error)?,
        },
    };
    Ok(Item {
        id: row.get(0)?,
        ordering_key: row.get(1)?,
        attempts: row.get(6)?,
        created_at: row.get(7)?,
        // A negative lane is a notification's, never an installation.
        installation: row
            .get::<_, Option<i64>>(8)?
            .filter(|lane| *lane > 0)
            .map(i64::unsigned_abs),
        call,
    })
}

/// The installations (0: the token) with calls waiting and none in flight (or only one
/// gone stale), read by stepping through the index of heads one installation at a time.
fn idle_installations(conn: &Connection, now: i64) -> rusqlite::Result<Vec<i64>> {
    let stale = now - STALE_IN_FLIGHT_MS;
    let busy: Vec<i64> = conn
        .prepare_cached(
            "SELECT DISTINCT COALESCE(installation_id, 0) FROM outbox
             WHERE in_flight != 0 AND in_flight > ?1",
        )?
        .query_map([stale], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    // INDEXED BY: SQLite's planner otherwise reads every pending row through
    // `outbox_by_key`, and a query the index cannot serve fails instead of growing slow.
    let mut next = conn.prepare_cached(
        "SELECT COALESCE(installation_id, 0) FROM outbox INDEXED BY outbox_heads
         WHERE state = 'pending' AND head = 1 AND COALESCE(installation_id, 0) > ?1
         ORDER BY COALESCE(installation_id, 0) LIMIT 1",
    )?;
    let mut idle = Vec::new();
    let mut after = i64::MIN;
    while let Some(installation) = next
        .query_row([after], |row| row.get::<_, i64>(0))
        .optional()?
    {
        after = installation;
        if !busy.contains(&installation) {
            idle.push(installation);
        }
    }
    Ok(idle)
}

/// Until when a rate limit pauses `installation`, if it still does at `now`.
fn paused_until(conn: &Connection, installation: i64, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT until FROM outbox_pauses WHERE installation = ?1 AND until > ?2")?
        .query_row(params![installation, now], |row| row.get(0))
        .optional()
}

/// GitHub accepted the call: forget it, and let the next call of its key go.
pub fn complete(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    lock_heads(conn)?;
    let removed: Option<(String, bool)> = conn
        .prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING ordering_key, head = 1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((key, true)) = removed {
        promote_next(conn, &key)?;
    }
    Ok(())
}

/// Makes the oldest pending row of `key`, if any, its head.
fn promote_next(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET head = 1
         WHERE id = (SELECT MIN(id) FROM outbox WHERE state = 'pending' AND ordering_key = ?1)",
    )?
    .execute([key])?;
    Ok(())
}

/// The call failed but may succeed later: try again at `at`.
pub fn retry_at(conn: &Connection, id: i64, at: i64, error: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET next_attempt_at = ?2, last_error = ?3, in_flight = 0 WHERE id = ?1",
    )?
    .execute(params![id, at, error])?;
    Ok(())
}

/// A rate limit: the other pending calls of the same installation (or token) wait until
/// `at` too, since GitHub would refuse them just the same.
pub fn pause_installation(
    conn: &Connection,
    installation: Option<u64>,
    at: i64,
) -> rusqlite::Result<()> {
    let installation = installation.map(int_key).transpose()?.unwrap_or(0);
    conn.prepare_cached(
        "INSERT INTO outbox_pauses (installation, until) VALUES (?1, ?2)
         ON CONFLICT (installation) DO UPDATE SET
             until = CASE WHEN excluded.until > outbox_pauses.until THEN excluded.until
                          ELSE outbox_pauses.until END",
    )?
    .execute(params![installation, at])?;
    Ok(())
}

/// The call cannot succeed, or has been retried for too long: keep it, marked failed, for
/// the operator, and let the calls queued behind it go.
pub fn give_up(conn: &Connection, id: i64, error: &str) -> rusqlite::Result<()> {
    lock_heads(conn)?;
    let key: Option<String> = conn
        .prepare_cached(
            "UPDATE outbox SET state = 'failed', last_error = ?2, in_flight = 0, head = 0
             WHERE id = ?1 RETURNING ordering_key",
        )?
        .query_row(params![id, error], |row| row.get(0))
        .optional()?;
    if let Some(key) = key {
        promote_next(conn, &key)?;
    }
    Ok(())
}

/// At start nothing is being sent: rows a previous process was sending when it stopped are
/// pending again. Their earlier attempt may have reached GitHub; `attempts` says so.
pub fn release_in_flight(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute("UPDATE outbox SET in_flight = 0 WHERE in_flight != 0", [])
}

/// When the next row that [`take_due`] could take falls due, if any. Installations with a
/// call in flight are not counted: they wait for that call to end, which wakes the worker,
/// and counting them would have it poll in a loop meanwhile. A paused installation counts
/// from the end of its pause.
pub fn next_due(conn: &Connection, now: i64) -> rusqlite::Result<Option<i64>> {
    let mut soonest: Option<i64> = None;
    for installation in idle_installations(conn, now)? {
        let due: Option<i64> = conn
            .prepare_cached(
                "SELECT next_attempt_at FROM outbox INDEXED BY outbox_heads
                 WHERE state = 'pending' AND head = 1 AND COALESCE(installation_id, 0) = ?1
                 ORDER BY next_attempt_at LIMIT 1",
            )?
            .query_row([installation], |row| row.get(0))
            .optional()?;
        let Some(due) = due else { continue };
        let due = paused_until(conn, installation, now)?.map_or(due, |until| due.max(until));
        soonest = Some(soonest.map_or(due, |s| s.min(due)));
    }
    Ok(soonest)
}

fn json_error(err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{each_engine, job};

    #[test]
    fn one_call_per_installation_is_in_flight_and_the_others_are_not_reported_due() {
        each_engine(|conn| {
            let now = 1_000;
            for (id, installation) in [(1, None), (2, None), (3, Some(7))] {
                enqueue_status(
                    conn,
                    &job(id, installation),
                    DeploymentState::Queued,
                    "q",
                    now,
                )
                .unwrap();
            }
            let taken = take_due(conn, now, 8).unwrap();
            let deployments: Vec<Option<u64>> = taken.iter().map(|i| i.installation).collect();
            assert_eq!(deployments, [None, Some(7)], "one per installation");
            // Deployment 2 waits for the token's call in flight: not due, so no busy polling.
            assert_eq!(next_due(conn, now).unwrap(), None);
            complete(conn, taken[0].id).unwrap();
            assert_eq!(next_due(conn, now).unwrap(), Some(now));
            let next = take_due(conn, now, 8).unwrap();
            assert_eq!(next.len(), 1);
            assert!(matches!(
                &next[0].call,
                Call::DeploymentStatus {
                    deployment_id: 2,
                    ..
                }
            ));
        });
    }

    #[test]
    fn a_rate_limit_holds_back_the_installations_other_calls() {
        each_engine(|conn| {
            for (id, installation) in [(1, Some(7)), (2, Some(7)), (3, Some(8))] {
                enqueue_status(
                    conn,
                    &job(id, installation),
                    DeploymentState::Queued,
                    "q",
                    0,
                )
                .unwrap();
            }
            pause_installation(conn, Some(7), 60_000).unwrap();
            let taken = take_due(conn, 1_000, 8).unwrap();
            let installations: Vec<Option<u64>> = taken.iter().map(|i| i.installation).collect();
            assert_eq!(installations, [Some(8)]);
        });
    }

    #[test]
    fn a_call_whose_outcome_was_never_recorded_is_taken_again_once_stale() {
        each_engine(|conn| {
            let now = 10_000_000;
            enqueue_status(conn, &job(1, None), DeploymentState::Queued, "q", now).unwrap();
            enqueue_status(conn, &job(2, None), DeploymentState::Queued, "q", now).unwrap();
            let first = take_due(conn, now, 8).unwrap();
            assert_eq!(first.len(), 1);
            // Its worker never reports back; a minute later everything still waits for it.
            assert!(take_due(conn, now + 60_000, 8).unwrap().is_empty());
            // Past the stale limit it is taken again, as a second attempt.
            let again = take_due(conn, now + STALE_IN_FLIGHT_MS + 1, 8).unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].id, first[0].id);
            assert_eq!(again[0].attempts, 1);
        });
    }

    #[test]
    fn the_oldest_due_call_goes_first_whatever_its_installation() {
        each_engine(|conn| {
            enqueue_status(conn, &job(1, Some(9)), DeploymentState::Queued, "q", 0).unwrap();
            enqueue_status(conn, &job(2, Some(1)), DeploymentState::Queued, "q", 0).unwrap();
            let taken = take_due(conn, 1_000, 1).unwrap();
            assert_eq!(
                taken[0].installation,
                Some(9),
                "installation 9 queued first"
            );
        });
    }
}
