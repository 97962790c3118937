//! Migration 13's step in Rust, run on both engines in the migration's transaction, after
//! its SQL: what SQL cannot do alike on SQLite and PostgreSQL, because it parses times.
//! The waits for checks get sort keys that compare as times (zero-padded milliseconds, not
//! the text GitHub sent; a key that is no time takes the wait's creation), and the merge
//! marks are seeded from what is on record — the automatic deploys started or queued, the
//! waits that passed, the creations still queued — so that an older merge is refused from
//! the first delivery after the upgrade.

use std::collections::HashMap;

use crate::model::{Merge, MergedAt};
use crate::store::db::{Connection, params};
use crate::store::merges::marks::{self, ACCEPTED, STARTED};

/// Runs the step.
pub fn upgrade(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    sort_waits_by_time(conn)?;
    seed_marks(conn, now)
}

fn sort_waits_by_time(conn: &Connection) -> rusqlite::Result<()> {
    let waits: Vec<(i64, String, i64)> = conn
        .prepare("SELECT id, sort_key, created_at FROM waits WHERE kind = 'checks'")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, key, created_at) in waits {
        if key.len() == 20 && key.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let merged_at = MergedAt::parse(&key).unwrap_or(MergedAt::from_millis(created_at));
        conn.prepare_cached("UPDATE waits SET sort_key = ?2 WHERE id = ?1")?
            .execute(params![id, merged_at.sort_key()])?;
    }
    Ok(())
}

/// The newest merge seen per repository, environment and stage, with its commit.
type Newest = HashMap<(String, String, &'static str), (Merge, String)>;

fn seed_marks(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    let mut newest = Newest::new();
    let mut see = |repository: String, environment: String, stage, merge: Merge, sha: String| {
        let slot = newest.entry((repository, environment, stage));
        let entry = slot.or_insert((merge, sha.clone()));
        if merge.merged_at > entry.0.merged_at {
            *entry = (merge, sha);
        }
    };
    let jobs: Vec<(String, String, String, String, bool)> = conn
        .prepare("SELECT repository, environment, sha, payload, started_at IS NOT NULL FROM jobs")?
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (repository, environment, sha, payload, started) in jobs {
        let Some(merge) = Merge::of_automatic_text(&payload) else {
            continue;
        };
        if started {
            see(
                repository.clone(),
                environment.clone(),
                STARTED,
                merge,
                sha.clone(),
            );
        }
        see(repository, environment, ACCEPTED, merge, sha);
    }
    // Deployments accepted and not yet run: waits that passed, creations still queued.
    let accepted: Vec<(String, String)> = conn
        .prepare(
            "SELECT repository, request FROM waits WHERE state = 'passed'
             UNION ALL
             SELECT repository, body FROM outbox
             WHERE kind = 'create_deployment' AND state = 'pending'",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (repository, body) in accepted {
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        // A wait keeps the request itself; the outbox wraps it beside the pull request.
        let request = body.get("request").unwrap_or(&body);
        let (Some(merge), Some(environment), Some(sha)) = (
            Merge::of_automatic(&request["payload"]),
            request["environment"].as_str(),
            request["ref"].as_str(),
        ) else {
            continue;
        };
        see(
            repository,
            environment.to_owned(),
            ACCEPTED,
            merge,
            sha.to_owned(),
        );
    }
    for ((repository, environment, stage), (merge, sha)) in newest {
        marks::raise(conn, (&repository, &environment, stage), merge, &sha, now)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::merges::marks::mark;

    const SHA41: &str = "ab00000000000000000000000000000000000041";

    /// What a database holds before migration 13: waits sorted by GitHub's text (one a
    /// garbage time), automatic deploys run and queued, a forced one and one made by hand,
    /// a gate passed in staging, and a creation still queued.
    pub(crate) fn on_record_before_13(conn: &Connection) {
        let wait = |kind: &str, environment: &str, sha: &str, key: &str, state: &str, request| {
            conn.execute(
                "INSERT INTO waits (kind, repository, environment, sha, pull_request, request,
                                    policy, sort_key, state, created_at, due_at, next_poll_at)
                 VALUES (?1, 'acme/widgets', ?2, ?3, 1, ?4, 'latest', ?5, ?6, 7, 0, 0)",
                params![kind, environment, sha, request, key, state],
            )
            .unwrap();
        };
        wait(
            "checks",
            "production",
            "a1",
            "2026-03-03T14:02:11Z",
            "waiting",
            "{}".into(),
        );
        wait(
            "checks",
            "production",
            "a2",
            "garbage",
            "superseded",
            "{}".into(),
        );
        wait(
            "soak",
            "production",
            "a3",
            "00000000000000880101",
            "waiting",
            "{}".into(),
        );
        let staging = serde_json::json!({"ref": "a4", "environment": "staging",
            "payload": {"pull_request": 44, "merged_at": "2026-03-03T15:00:00Z"}});
        wait(
            "checks",
            "staging",
            "a4",
            "2026-03-03T15:00:00Z",
            "passed",
            staging.to_string(),
        );
        let job = |id: i64, sha: &str, payload: serde_json::Value, started: Option<i64>| {
            conn.execute(
                "INSERT INTO jobs (deployment_id, repository, environment, sha, git_ref, task,
                                   deploy_user, payload, delivery_id, state, queued_at,
                                   started_at)
                 VALUES (?1, 'acme/widgets', 'production', ?2, ?2, 'deploy', 'u', ?3, 'd',
                         'finished', 0, ?4)",
                params![id, sha, payload.to_string(), started],
            )
            .unwrap();
        };
        let merge = |n: u64, at: &str| serde_json::json!({"pull_request": n, "merged_at": at});
        job(880_001, SHA41, merge(41, "2026-03-03T14:02:11Z"), Some(10));
        job(880_002, "b42", merge(42, "2026-03-03T14:05:40Z"), None);
        let mut forced = merge(45, "2026-03-03T16:00:00Z");
        forced["force"] = true.into();
        job(880_003, "b45", forced, Some(11));
        job(
            880_004,
            "b46",
            serde_json::json!({"deploy_user": "maria"}),
            Some(12),
        );
        let creation = serde_json::json!({"pull_request": 43, "request": {
            "ref": "b43", "environment": "production",
            "payload": {"pull_request": 43, "merged_at": "2026-03-03T14:09:02Z"}}});
        conn.execute(
            "INSERT INTO outbox (ordering_key, kind, repository, body, created_at, next_attempt_at)
             VALUES ('pr:acme/widgets#43@production', 'create_deployment', 'acme/widgets', ?1,
                     0, 0)",
            [creation.to_string()],
        )
        .unwrap();
    }

    /// Migration 13 sorted the waits by time and seeded the marks from that record.
    pub(crate) fn assert_upgraded(conn: &Connection) {
        let keys: Vec<(String, String)> = conn
            .prepare("SELECT sha, sort_key FROM waits ORDER BY sha")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("a1", "00000001772546531000"),
            ("a2", "00000000000000000007"),
            ("a3", "00000000000000880101"),
            ("a4", "00000001772550000000"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(s, k)| ((*s).to_owned(), (*k).to_owned()))
            .collect();
        assert_eq!(keys, expected);
        let named = |environment: &str, stage: &str| {
            mark(conn, "acme/widgets", environment, stage)
                .unwrap()
                .map(|m| (m.merge.pull_request, m.sha))
        };
        assert_eq!(named("production", STARTED), Some((41, SHA41.to_owned())));
        assert_eq!(named("production", ACCEPTED), Some((43, "b43".to_owned())));
        assert_eq!(named("staging", ACCEPTED), Some((44, "a4".to_owned())));
        assert_eq!(named("staging", STARTED), None);
    }

    #[test]
    fn migration_13_sorts_waits_by_time_and_seeds_the_marks_from_the_record() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        for script in &crate::store::schema::MIGRATIONS[..12] {
            conn.execute_batch(script).unwrap();
        }
        conn.pragma_update(None, "user_version", 12).unwrap();
        on_record_before_13(&Connection::Sqlite(&conn));
        crate::store::schema::migrate(&mut conn).unwrap();
        assert_upgraded(&Connection::Sqlite(&conn));
    }
}
