//! Retention: deliveries, merges, check results, ended waits, finished deploys with their
//! logs and their approvals are deleted once older than the configured ages (a deployment
//! still waiting for approval has not finished, and stays), so the database stops growing
//! with the months. The newest merge of each environment keeps its record, and the merge
//! marks (`merges::marks`) stay whatever their age: they are what keeps an older merge
//! from deploying, long after its delivery is gone. Pruning runs in small batches, each its
//! own short transaction on the writer between other work, with a pause between batches: a
//! backlog of a year to prune never holds a delivery up for long. Given-up GitHub calls
//! are kept until an operator retries or dismisses them; dismissed ones go with the
//! deliveries' age. A deploy's changelog goes with its job. The audit log goes with the deploys' age: who did what is kept as long
//! as what was deployed. Nothing else deletes an audit row.

use std::time::Duration;

use crate::store::db::{Connection, OptionalExtension, params};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, now_ms};

/// Rows one batch deletes at most: a few milliseconds of the writer's time.
pub const BATCH: usize = 2000;
/// Between two batches, room for the writer's other work.
const BATCH_PAUSE: Duration = Duration::from_millis(20);
/// How often pruning starts, at most: a tenth of the shortest age when that is sooner.
const INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The ages past which rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ages {
    /// Deliveries and the merges they recorded, by arrival.
    pub deliveries: Duration,
    /// Finished deploys and their logs, by when they finished; the audit log, by when each
    /// action was taken.
    pub deploys: Duration,
}

/// Prunes now, then every [`INTERVAL`] (or a tenth of the shortest age), until `stop` is
/// cancelled.
pub async fn run(store: Store, ages: Ages, stop: CancellationToken) {
    let interval = INTERVAL
        .min(ages.deliveries / 10)
        .min(ages.deploys / 10)
        .max(Duration::from_secs(1));
    loop {
        match prune(&store, ages, &stop).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned rows past their retention"),
            Err(err) => tracing::warn!("could not prune old rows (will retry): {err}"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Deletes, batch after batch, every row past its age; how many.
pub async fn prune(
    store: &Store,
    ages: Ages,
    stop: &CancellationToken,
) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    while !stop.is_cancelled() {
        let now = now_ms();
        let deleted = store
            .write(move |c| prune_batch(c, cutoff(now, ages.deliveries), cutoff(now, ages.deploys)))
            .await?;
        if deleted == 0 {
            break;
        }
        total += deleted;
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    Ok(total)
}

fn cutoff(now: i64, age: Duration) -> i64 {
    now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes at most [`BATCH`] rows older than the cutoffs (Unix milliseconds); how many.
pub fn prune_batch(
    conn: &Connection,
    deliveries_before: i64,
    deploys_before: i64,
) -> rusqlite::Result<usize> {
    let limit = i64::try_from(BATCH).unwrap_or(i64::MAX);
    // Deliveries are stored in arrival order: the oldest are the first rows.
    let mut deleted = conn
        .prepare_cached(
            "DELETE FROM deliveries
             WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT ?1)
               AND received_at < ?2",
        )?
        .execute(params![limit, deliveries_before])?;
    // The record of each environment's newest merge stays (see `merges::marks`): a new
    // delivery of it, however late, is still "already asked" rather than deployed again.
    // Older ones go: the marks refuse them.
    deleted += conn
        .prepare_cached(
            "DELETE FROM merges WHERE (repository, pull_request, environment) IN
                 (SELECT repository, pull_request, environment FROM merges
                  WHERE recorded_at < ?2
                    AND NOT EXISTS (SELECT 1 FROM merge_marks AS mark
                                    WHERE mark.repository = merges.repository
                                      AND mark.environment = merges.environment
                                      AND mark.stage = 'accepted'
                                      AND merges.merged_at >= mark.merged_at)
                  LIMIT ?1)",
        )?
        .execute(params![limit, deliveries_before])?;
    // What GitHub told of checks, and the waits that ended, age like the deliveries that
    // brought them. Open waits stay whatever their age.
    deleted += conn
        .prepare_cached(
            "DELETE FROM check_results WHERE (repository, sha, kind, name, source) IN
                 (SELECT repository, sha, kind, name, source FROM check_results
                  INDEXED BY check_results_by_time WHERE updated_at < ?2 LIMIT ?1)",
        )?
        .execute(params![limit, deliveries_before])?;
    deleted += conn
        .prepare_cached(
            "DELETE FROM waits WHERE id IN
                 (SELECT id FROM waits INDEXED BY waits_ended
                  WHERE state != 'waiting' AND ended_at < ?2 LIMIT ?1)",
        )?
        .execute(params![limit, deliveries_before])?;
    deleted += conn
        .prepare_cached(
            "DELETE FROM outbox WHERE id IN
                 (SELECT id FROM outbox INDEXED BY outbox_dismissed
                  WHERE state = 'dismissed' AND dismissed_at < ?2 LIMIT ?1)",
        )?
        .execute(params![limit, deliveries_before])?;
    // A command's row is what makes a replayed comment act once: it stays as long as the
    // deploys it may have started.
    deleted += conn
        .prepare_cached(
            "DELETE FROM commands WHERE (repository, comment_id) IN
                 (SELECT repository, comment_id FROM commands
                  WHERE updated_at < ?2 AND state = 'done' LIMIT ?1)",
        )?
        .execute(params![limit, deploys_before])?;
    // Closed previews age like the deploys they ran; open ones stay whatever their age.
    deleted += conn
        .prepare_cached(
            "DELETE FROM previews WHERE (repository, pull_request, environment) IN
                 (SELECT repository, pull_request, environment FROM previews
                  INDEXED BY previews_closed
                  WHERE state = 'closed' AND updated_at < ?2 LIMIT ?1)",
        )?
        .execute(params![limit, deploys_before])?;
    deleted += conn
        .prepare_cached(
            "DELETE FROM tag_deploys WHERE recorded_at IN
                 (SELECT recorded_at FROM tag_deploys WHERE recorded_at < ?2 LIMIT ?1)",
        )?
        .execute(params![limit, deliveries_before])?;
    // The audit log is written in the order of its ids: the oldest are the first rows.
    deleted += conn
        .prepare_cached(
            "DELETE FROM audit
             WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT ?1) AND at < ?2",
        )?
        .execute(params![limit, deploys_before])?;
    if deleted >= BATCH {
        return Ok(deleted);
    }
    let oldest_finished: Option<i64> = conn
        .prepare_cached(
            "SELECT deployment_id FROM jobs WHERE state = 'finished' AND finished_at < ?1
             ORDER BY finished_at LIMIT 1",
        )?
        .query_row([deploys_before], |row| row.get(0))
        .optional()?;
    let Some(job) = oldest_finished else {
        return Ok(deleted);
    };
    // A log may hold thousands of lines: it goes a batch at a time, then its job.
    let room = i64::try_from(BATCH - deleted).unwrap_or(1);
    let lines = conn
        .prepare_cached(
            "DELETE FROM deploy_logs WHERE deployment_id = ?1 AND seq IN
                 (SELECT seq FROM deploy_logs WHERE deployment_id = ?1 ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![job, room])?;
    deleted += lines;
    if lines < usize::try_from(room).unwrap_or(0) {
        deleted += conn
            .prepare_cached("DELETE FROM approvals WHERE deployment_id = ?1")?
            .execute([job])?;
        // At most 250 commits: one batch's room is not worth counting for them.
        deleted += crate::store::changelogs::delete(conn, job)?;
        deleted += conn
            .prepare_cached("DELETE FROM jobs WHERE deployment_id = ?1")?
            .execute([job])?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn rows_past_their_age_go_in_batches_and_younger_ones_stay() {
        each_engine(|conn| {
            for i in 0..4800_i64 {
                conn.execute(
                "INSERT INTO deliveries (hook_id, delivery_id, event, received_at, outcome, message)
                 VALUES (1, ?1, 'ping', ?2, 'recorded', 'pong')",
                params![format!("d{i}"), if i < 4000 { 100 } else { 5_000 }],
            )
            .unwrap();
            }
            for (id, finished_at) in [(1, 100), (2, 5_000)] {
                conn.execute(
                    "INSERT INTO jobs (deployment_id, repository, environment, sha, git_ref, task,
                     deploy_user, payload, delivery_id, state, queued_at, finished_at)
                 VALUES (?1, 'acme/widgets', 'production', 'abc', 'main', 'deploy', 'u', '{}',
                         'd', 'finished', 0, ?2)",
                    params![id, finished_at],
                )
                .unwrap();
                for seq in 0..2800 {
                    conn.execute(
                        "INSERT INTO deploy_logs VALUES (?1, ?2, 0, 'stdout', 'line')",
                        params![id, seq],
                    )
                    .unwrap();
                }
            }
            for (sha, updated_at) in [("old", 100), ("new", 5_000)] {
                conn.execute(
                    "INSERT INTO check_results (repository, sha, kind, name, source, state,
                                                detail, url, github_id, updated_at)
                     VALUES ('acme/widgets', ?1, 'run', 'test', 'app 1 suite 2', 'passed',
                             'success', NULL, 1, ?2)",
                    params![sha, updated_at],
                )
                .unwrap();
            }
            // An old wait that ended goes; an old one still waiting and a young ended one stay.
            for (sha, state, ended_at) in [
                ("a", "failed", Some(100)),
                ("b", "waiting", None),
                ("c", "passed", Some(5_000)),
            ] {
                conn.execute(
                    "INSERT INTO waits (kind, repository, environment, sha, pull_request, request,
                     policy, sort_key, state, created_at, due_at, next_poll_at, ended_at)
                 VALUES ('checks', 'acme/widgets', 'staging', ?1, 1, '{}', 'latest', 'k', ?2,
                         0, 0, 0, ?3)",
                    params![sha, state, ended_at],
                )
                .unwrap();
            }
            // The audit log: past its age, in batches; younger, kept.
            for i in 0..3000_i64 {
                conn.execute(
                    "INSERT INTO audit (at, login, via, action, detail, address, outcome)
                     VALUES (?1, 'maria', 'admin_token', 'lock', 'why', '::1', 'done')",
                    [if i < 2500 { 100 } else { 5_000 }],
                )
                .unwrap();
            }
            let mut batches = 0;
            while prune_batch(conn, 1_000, 1_000).unwrap() > 0 {
                batches += 1;
                assert!(batches < 20, "pruning does not end");
            }
            assert!(batches >= 4, "{batches} batches: each is bounded");
            assert_eq!(count(conn, "deliveries"), 800);
            assert_eq!(count(conn, "jobs"), 1);
            assert_eq!(count(conn, "deploy_logs"), 2800);
            assert_eq!(count(conn, "check_results"), 1);
            assert_eq!(count(conn, "audit"), 500);
            let waits: Vec<String> = conn
                .prepare("SELECT sha FROM waits ORDER BY sha")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(waits, ["b", "c"]);
            let kept: i64 = conn
                .query_row("SELECT deployment_id FROM jobs", [], |r| r.get(0))
                .unwrap();
            assert_eq!(kept, 2);
        });
    }

    /// Audit rows follow the deploys' age, not the deliveries': a short delivery retention
    /// must not take who did what with it.
    #[test]
    fn audit_rows_go_with_the_deploys_age() {
        each_engine(|conn| {
            for at in [100, 5_000] {
                conn.execute(
                    "INSERT INTO audit (at, login, via, action, detail, address, outcome)
                     VALUES (?1, 'maria', 'admin_token', 'unlock', '', '::1', 'done')",
                    [at],
                )
                .unwrap();
            }
            // Every delivery would be old, no deploy: the audit log stays whole.
            while prune_batch(conn, 10_000, 0).unwrap() > 0 {}
            assert_eq!(count(conn, "audit"), 2);
            // Deploys older than 1,000 go: so does the audit row of 100.
            while prune_batch(conn, 0, 1_000).unwrap() > 0 {}
            let left: i64 = conn
                .query_row("SELECT at FROM audit", [], |r| r.get(0))
                .unwrap();
            assert_eq!((count(conn, "audit"), left), (1, 5_000));
        });
    }
}
