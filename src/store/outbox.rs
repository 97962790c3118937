//! The `outbox` table: GitHub calls that must happen. A row is written in the same
//! transaction as the decision that needs the call, taken by the outbox worker when due,
//! and deleted once GitHub accepted it; failures reschedule it with backoff. Rows sharing
//! an ordering key go one at a time, oldest first: the statuses of one deployment reach
//! GitHub in the order they were decided.

use rusqlite::{Connection, OptionalExtension, params};

/// After this long, a call marked in flight whose outcome was never recorded is taken
/// again (see [`take_due`]). Far longer than a call can take: 30 s per request, twice with
/// a token refresh, plus the minute the outcome's recording is retried.
pub const STALE_IN_FLIGHT_MS: i64 = 5 * 60 * 1000;

use crate::model::{DeployJob, DeploymentRequest, DeploymentState, NewDeployment, StatusRequest};
use crate::store::int_key;

/// What a row asks GitHub to do.
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
}

/// A row taken to be sent.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub ordering_key: String,
    /// Attempts before this one. Above 0, an earlier attempt may have reached GitHub.
    pub attempts: u32,
    pub created_at: i64,
    /// The App installation whose token makes the call; `None` with a token.
    pub installation: Option<u64>,
    pub call: Call,
}

/// Queues the creation of `new`.
pub fn enqueue_create_deployment(
    conn: &Connection,
    new: &NewDeployment,
    now: i64,
) -> rusqlite::Result<()> {
    let key = format!(
        "pr:{}#{}@{}",
        new.repo, new.pull_request, new.request.environment
    );
    let body = serde_json::json!({ "pull_request": new.pull_request, "request": new.request });
    let row = Row {
        key: &key,
        kind: "create_deployment",
        repository: new.repo.as_ref(),
        deployment_id: None,
        installation: new.installation,
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
    let ran = !matches!(state, DeploymentState::Queued | DeploymentState::Inactive);
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
        installation: job.installation,
        body: &body,
    };
    insert(conn, &row, now)
}

/// A row to insert.
struct Row<'a> {
    key: &'a str,
    kind: &'a str,
    repository: &'a str,
    deployment_id: Option<i64>,
    installation: Option<u64>,
    body: &'a str,
}

fn insert(conn: &Connection, row: &Row<'_>, now: i64) -> rusqlite::Result<()> {
    let installation = row.installation.map(int_key).transpose()?;
    conn.prepare_cached(
        "INSERT INTO outbox (ordering_key, kind, repository, deployment_id, body, created_at,
                             next_attempt_at, installation_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?
    .execute(params![
        row.key,
        row.kind,
        row.repository,
        row.deployment_id,
        row.body,
        now,
        installation
    ])?;
    Ok(())
}

/// Takes up to `limit` due rows, each the oldest pending row of its ordering key and only
/// when that row is not already being sent, and at most one call per App installation (or
/// for the one token, as installation 0) in flight at a time: GitHub asks that the calls of
/// one client be made one after another, and throttles content creation otherwise. Each
/// taken row is marked in flight and has its attempt counted before it is sent.
///
/// `in_flight` holds when a row was taken (0: not taken). A row taken longer than
/// [`STALE_IN_FLIGHT`] ago counts as free again: its worker died without recording the
/// outcome (the database refused for a minute, a panic), and it must not hold up every other
/// call of its installation until the next restart. Sending it again is safe: a status twice
/// is harmless, and a creation asks GitHub first whether it happened.
pub fn take_due(conn: &Connection, now: i64, limit: usize) -> rusqlite::Result<Vec<Item>> {
    let stale = now - STALE_IN_FLIGHT_MS;
    let mut statement = conn.prepare_cached(
        "SELECT o.id, o.ordering_key, o.kind, o.repository, o.deployment_id, o.body,
                o.attempts, o.created_at, o.installation_id
         FROM outbox o
         WHERE o.state = 'pending' AND (o.in_flight = 0 OR o.in_flight <= ?3)
           AND o.next_attempt_at <= ?1
           AND o.id = (SELECT MIN(id) FROM outbox
                       WHERE state = 'pending' AND ordering_key = o.ordering_key)
           AND NOT EXISTS (
                SELECT 1 FROM outbox f
                WHERE f.in_flight != 0 AND f.in_flight > ?3
                  AND COALESCE(f.installation_id, 0) = COALESCE(o.installation_id, 0))
         ORDER BY o.id
         LIMIT ?2",
    )?;
    let mut items: Vec<Item> = Vec::new();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = statement.query(params![now, limit, stale])?;
    while let Some(row) = rows.next()? {
        let installation = row.get::<_, Option<i64>>(8)?.map(i64::unsigned_abs);
        if items.iter().any(|i| i.installation == installation) {
            continue; // one per installation in this batch too
        }
        let key: String = row.get(1)?;
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
            _ => Call::DeploymentStatus {
                repository,
                deployment_id: row.get::<_, i64>(4)?.unsigned_abs(),
                request: serde_json::from_str(&body).map_err(json_error)?,
            },
        };
        items.push(Item {
            id: row.get(0)?,
            ordering_key: key,
            attempts: row.get(6)?,
            created_at: row.get(7)?,
            installation,
            call,
        });
    }
    drop(rows);
    for item in &items {
        conn.prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, in_flight = ?2 WHERE id = ?1",
        )?
        .execute(params![item.id, now.max(1)])?;
    }
    Ok(items)
}

/// GitHub accepted the call: forget it.
pub fn complete(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
        .execute([id])?;
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
) -> rusqlite::Result<usize> {
    let installation = installation.map(int_key).transpose()?.unwrap_or(0);
    conn.prepare_cached(
        "UPDATE outbox SET next_attempt_at = ?2
         WHERE state = 'pending' AND in_flight = 0 AND next_attempt_at < ?2
           AND COALESCE(installation_id, 0) = ?1",
    )?
    .execute(params![installation, at])
}

/// The call cannot succeed, or has been retried for too long: keep it, marked failed, for
/// the operator, and let the calls queued behind it go.
pub fn give_up(conn: &Connection, id: i64, error: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'failed', last_error = ?2, in_flight = 0 WHERE id = ?1",
    )?
    .execute(params![id, error])?;
    Ok(())
}

/// At start nothing is being sent: rows a previous process was sending when it stopped are
/// pending again. Their earlier attempt may have reached GitHub; `attempts` says so.
pub fn release_in_flight(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute("UPDATE outbox SET in_flight = 0 WHERE in_flight != 0", [])
}

/// When the next row that [`take_due`] could take falls due, if any. Rows whose
/// installation has a call in flight are not counted: they wait for that call to end, which
/// wakes the worker, and counting them would have it poll in a loop meanwhile.
pub fn next_due(conn: &Connection, now: i64) -> rusqlite::Result<Option<i64>> {
    let stale = now - STALE_IN_FLIGHT_MS;
    conn.prepare_cached(
        "SELECT MIN(o.next_attempt_at) FROM outbox o
         WHERE o.state = 'pending' AND (o.in_flight = 0 OR o.in_flight <= ?1)
           AND o.id = (SELECT MIN(id) FROM outbox
                       WHERE state = 'pending' AND ordering_key = o.ordering_key)
           AND NOT EXISTS (
                SELECT 1 FROM outbox f
                WHERE f.in_flight != 0 AND f.in_flight > ?1
                  AND COALESCE(f.installation_id, 0) = COALESCE(o.installation_id, 0))",
    )?
    .query_row([stale], |row| row.get(0))
    .optional()
    .map(Option::flatten)
}

fn json_error(err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeployJob;

    fn job(id: u64, installation: Option<u64>) -> DeployJob {
        DeployJob {
            id: id.into(),
            repo: "acme/widgets".parse().unwrap(),
            environment: "production".parse().unwrap(),
            sha: "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b".parse().unwrap(),
            git_ref: "main".into(),
            task: "deploy".into(),
            deploy_user: "octo-dev".into(),
            payload: "{}".into(),
            environment_url: None,
            log_url: None,
            installation,
        }
    }

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn one_call_per_installation_is_in_flight_and_the_others_are_not_reported_due() {
        let conn = database();
        let now = 1_000;
        for (id, installation) in [(1, None), (2, None), (3, Some(7))] {
            enqueue_status(
                &conn,
                &job(id, installation),
                DeploymentState::Queued,
                "q",
                now,
            )
            .unwrap();
        }
        let taken = take_due(&conn, now, 8).unwrap();
        let deployments: Vec<Option<u64>> = taken.iter().map(|i| i.installation).collect();
        assert_eq!(deployments, [None, Some(7)], "one per installation");
        // Deployment 2 waits for the token's call in flight: not due, so no busy polling.
        assert_eq!(next_due(&conn, now).unwrap(), None);
        complete(&conn, taken[0].id).unwrap();
        assert_eq!(next_due(&conn, now).unwrap(), Some(now));
        let next = take_due(&conn, now, 8).unwrap();
        assert_eq!(next.len(), 1);
        assert!(matches!(
            &next[0].call,
            Call::DeploymentStatus {
                deployment_id: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_rate_limit_holds_back_the_installations_other_calls() {
        let conn = database();
        for (id, installation) in [(1, Some(7)), (2, Some(7)), (3, Some(8))] {
            enqueue_status(
                &conn,
                &job(id, installation),
                DeploymentState::Queued,
                "q",
                0,
            )
            .unwrap();
        }
        assert_eq!(pause_installation(&conn, Some(7), 60_000).unwrap(), 2);
        let taken = take_due(&conn, 1_000, 8).unwrap();
        let installations: Vec<Option<u64>> = taken.iter().map(|i| i.installation).collect();
        assert_eq!(installations, [Some(8)]);
    }

    #[test]
    fn a_call_whose_outcome_was_never_recorded_is_taken_again_once_stale() {
        let conn = database();
        let now = 10_000_000;
        enqueue_status(&conn, &job(1, None), DeploymentState::Queued, "q", now).unwrap();
        enqueue_status(&conn, &job(2, None), DeploymentState::Queued, "q", now).unwrap();
        let first = take_due(&conn, now, 8).unwrap();
        assert_eq!(first.len(), 1);
        // Its worker never reports back; a minute later everything still waits for it.
        assert!(take_due(&conn, now + 60_000, 8).unwrap().is_empty());
        // Past the stale limit it is taken again, as a second attempt.
        let again = take_due(&conn, now + STALE_IN_FLIGHT_MS + 1, 8).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, first[0].id);
        assert_eq!(again[0].attempts, 1);
    }
}
