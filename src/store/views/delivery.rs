//! One delivery and what it led to, for its page and the admin API: the delivery with the
//! headers kept, the merges it recorded, and the deployments — those its `deployment`
//! event queued (`jobs.delivery_id`), and those created for the merges it recorded (jobs of
//! the same repository, environment and commit, however they reached the queue: at once,
//! after a wait for checks, or a promotion).

use crate::store::db::{Connection, OptionalExtension, Row, params};

use super::{DeliveryRow, JobRow, job_from_row};

/// Deployments a delivery's page lists at most.
const MAX_DEPLOYMENTS: i64 = 50;

/// A delivery with the headers kept of it (JSON `[[name, value], …]`; `None` for deliveries
/// recorded before they were kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub headers: Option<String>,
}

/// A merge a delivery recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRow {
    pub repository: String,
    pub pull_request: i64,
    pub environment: String,
    pub sha: String,
}

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        hook_id: row.get(0)?,
        delivery_id: row.get(1)?,
        event: row.get(2)?,
        action: row.get(3)?,
        repository: row.get(4)?,
        received_at: row.get(5)?,
        outcome: row.get(6)?,
        message: row.get(7)?,
    })
}

/// The newest deliveries recorded, at most `limit`.
pub fn newest(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<DeliveryRow>> {
    conn.prepare_cached(
        "SELECT hook_id, delivery_id, event, action, repository, received_at, outcome, message
         FROM deliveries ORDER BY id DESC LIMIT ?1",
    )?
    .query_map([limit], delivery_from_row)?
    .collect()
}

/// A page of the deliveries kept, newest first: those recorded before row `before` (all,
/// without it), at most `limit`, each with its row id (the next page's `before`).
pub fn page(
    conn: &Connection,
    before: Option<i64>,
    limit: i64,
) -> rusqlite::Result<Vec<(i64, DeliveryRow)>> {
    conn.prepare_cached(
        "SELECT hook_id, delivery_id, event, action, repository, received_at, outcome, message,
                id
         FROM deliveries WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?
    .query_map(params![before.unwrap_or(i64::MAX), limit], |row| {
        Ok((row.get(8)?, delivery_from_row(row)?))
    })?
    .collect()
}

/// Delivery `delivery_id` through hook `hook_id`; without a hook, the newest delivery of
/// that id (GitHub gives each hook's deliveries their own ids: there is normally one).
pub fn find(
    conn: &Connection,
    delivery_id: &str,
    hook_id: Option<i64>,
) -> rusqlite::Result<Option<DeliveryDetail>> {
    let hooks = match hook_id {
        Some(hook) => vec![hook],
        None => hooks(conn)?,
    };
    let mut found: Option<(i64, DeliveryDetail)> = None;
    for hook in hooks {
        let row = conn
            .prepare_cached(
                "SELECT hook_id, delivery_id, event, action, repository, received_at, outcome,
                        message, headers, id
                 FROM deliveries INDEXED BY deliveries_by_key
                 WHERE hook_id = ?2 AND delivery_id = ?1",
            )?
            .query_row(params![delivery_id, hook], |row| {
                let detail = DeliveryDetail {
                    delivery: delivery_from_row(row)?,
                    headers: row.get(8)?,
                };
                Ok((row.get::<_, i64>(9)?, detail))
            })
            .optional()?;
        if let Some((id, detail)) = row
            && found.as_ref().is_none_or(|(newest, _)| id > *newest)
        {
            found = Some((id, detail));
        }
    }
    Ok(found.map(|(_, detail)| detail))
}

/// The hooks deliveries came through, read by stepping down the key's index one hook at a
/// time (few hooks, however many deliveries): without a hook, a delivery id is looked up
/// once per hook instead of by reading the whole table.
fn hooks(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut next = conn.prepare_cached(
        "SELECT hook_id FROM deliveries INDEXED BY deliveries_by_key
         WHERE hook_id > ?1 ORDER BY hook_id LIMIT 1",
    )?;
    let mut hooks = Vec::new();
    let mut after = i64::MIN;
    while let Some(hook) = next.query_row([after], |row| row.get(0)).optional()? {
        hooks.push(hook);
        after = hook;
    }
    Ok(hooks)
}

/// The merges delivery `delivery_id` recorded (still kept: a merge whose deployment was
/// given up is forgotten).
pub fn merges(conn: &Connection, delivery_id: &str) -> rusqlite::Result<Vec<MergeRow>> {
    conn.prepare_cached(
        "SELECT repository, pull_request, environment, sha FROM merges
         WHERE delivery_id = ?1 ORDER BY environment",
    )?
    .query_map([delivery_id], |row| {
        Ok(MergeRow {
            repository: row.get(0)?,
            pull_request: row.get(1)?,
            environment: row.get(2)?,
            sha: row.get(3)?,
        })
    })?
    .collect()
}

/// The deployments delivery `delivery_id` led to, newest first.
pub fn deployments(conn: &Connection, delivery_id: &str) -> rusqlite::Result<Vec<JobRow>> {
    conn.prepare_cached(
        "SELECT deployment_id, repository, environment, sha, git_ref, task, deploy_user,
                CASE WHEN state = 'finished' THEN COALESCE(result, 'finished') ELSE state END,
                description, queued_at, started_at, finished_at, forced, payload
         FROM jobs
         WHERE delivery_id = ?1
            OR deployment_id IN (
                SELECT j.deployment_id FROM merges m
                JOIN jobs j INDEXED BY jobs_by_commit
                  ON j.repository = m.repository AND j.sha = m.sha
                 AND j.environment = m.environment
                WHERE m.delivery_id = ?1)
         ORDER BY deployment_id DESC LIMIT ?2",
    )?
    .query_map(params![delivery_id, MAX_DEPLOYMENTS], job_from_row)?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    #[test]
    fn a_merge_leads_to_the_deployments_of_its_commit_and_environment() {
        each_engine(|conn| {
            conn.execute_batch(
                "INSERT INTO merges (repository, pull_request, environment, sha, recorded_at,
                                 delivery_id)
             VALUES ('acme/widgets', 42, 'production', 'abc', 0, 'merge-1');
             INSERT INTO jobs (deployment_id, repository, environment, sha, git_ref, task,
                               deploy_user, payload, delivery_id, state, queued_at)
             VALUES (7, 'acme/widgets', 'production', 'abc', 'abc', 'deploy', 'u', '{}',
                     'deployment-event-1', 'queued', 0),
                    (8, 'acme/widgets', 'staging', 'abc', 'abc', 'deploy', 'u', '{}',
                     'deployment-event-2', 'queued', 0);",
            )
            .unwrap();
            let ids = |d: &str| -> Vec<u64> {
                deployments(conn, d)
                    .unwrap()
                    .iter()
                    .map(|j| j.deployment_id)
                    .collect()
            };
            assert_eq!(ids("merge-1"), [7]);
            assert_eq!(ids("deployment-event-2"), [8]);
            assert_eq!(merges(conn, "merge-1").unwrap()[0].pull_request, 42);
        });
    }

    #[test]
    fn a_delivery_is_found_with_or_without_its_hook() {
        each_engine(|conn| {
            conn.execute_batch(
            "INSERT INTO deliveries (hook_id, delivery_id, event, received_at, outcome, message)
             VALUES (1, 'a', 'ping', 0, 'recorded', 'one'), (2, 'b', 'ping', 0, 'recorded', 'x'),
                    (3, 'a', 'ping', 5, 'recorded', 'three');",
        )
        .unwrap();
            let message = |hook| find(conn, "a", hook).unwrap().unwrap().delivery.message;
            assert_eq!(message(None), "three", "the newest of that id");
            assert_eq!(message(Some(1)), "one");
            assert!(find(conn, "a", Some(2)).unwrap().is_none());
            assert!(find(conn, "zzz", None).unwrap().is_none());
        });
    }
}
