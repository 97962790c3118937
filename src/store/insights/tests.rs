//! The insights query over a scripted history, written through the store's own functions
//! (merges recorded, jobs queued, claimed and finished at chosen times).

use crate::store::db::Connection;

use super::*;
use crate::model::{DeployJob, DeploymentState, Policy};
use crate::store::tests::{database, each_engine, job};
use crate::store::{jobs, merges};

const HOUR: i64 = 60 * 60 * 1000;
/// Noon, 2026-11-30 (UTC).
const NOW: i64 = 20_787 * DAY_MS + 12 * HOUR;

fn sha(n: u8) -> String {
    format!("{n:0>40}")
}

/// Merges `sha` of acme/widgets at `at`.
fn merge(conn: &Connection, pull_request: i64, sha: &str, at: i64) {
    merges::remember(conn, "acme/widgets", pull_request, "production", sha, at).unwrap();
}

/// Runs deployment `id` of `sha` to `environment`, from `started` to `finished`.
fn deploy(
    conn: &Connection,
    id: u64,
    environment: &str,
    sha: &str,
    state: DeploymentState,
    finished: i64,
) -> DeployJob {
    let mut job = job(id, None);
    job.environment = environment.parse().unwrap();
    job.sha = sha.parse().unwrap();
    jobs::enqueue(conn, &job, "d", finished - 120_000).unwrap();
    let claimed = jobs::claim(conn, "test", 4, |_| Policy::Queue, finished - 60_000).unwrap();
    assert_eq!(claimed.len(), 1);
    jobs::finish(conn, &job, state, "done", finished).unwrap();
    job
}

#[test]
fn days_count_each_outcome_and_rates_count_failures_and_errors() {
    each_engine(|conn| {
        let yesterday = NOW - DAY_MS;
        deploy(
            conn,
            1,
            "production",
            &sha(1),
            DeploymentState::Success,
            yesterday,
        );
        deploy(
            conn,
            2,
            "production",
            &sha(2),
            DeploymentState::Failure,
            NOW - 3 * HOUR,
        );
        deploy(
            conn,
            3,
            "production",
            &sha(2),
            DeploymentState::Error,
            NOW - 2 * HOUR,
        );
        deploy(
            conn,
            4,
            "production",
            &sha(3),
            DeploymentState::Success,
            NOW - HOUR,
        );
        deploy(
            conn,
            5,
            "staging",
            &sha(3),
            DeploymentState::Success,
            NOW - HOUR,
        );
        // Outside the window, and a deployment that never ran: neither counts.
        deploy(
            conn,
            6,
            "production",
            &sha(4),
            DeploymentState::Failure,
            NOW - 40 * DAY_MS,
        );
        let mut superseded = job(7, None);
        jobs::enqueue(conn, &superseded, "d", NOW).unwrap();
        superseded.sha = sha(5).parse().unwrap();
        jobs::finish(conn, &superseded, DeploymentState::Inactive, "x", NOW).unwrap();

        let insights = insights(conn, 30, NOW).unwrap();
        assert_eq!(insights.since, NOW - 12 * HOUR - 29 * DAY_MS);
        let production = insights.of("production");
        assert_eq!(production.days.len(), 30);
        let today = production.days[29];
        assert_eq!(
            (today.day, today.success, today.failure, today.error),
            (NOW - 12 * HOUR, 1, 1, 1)
        );
        assert_eq!(production.days[28].success, 1);
        assert_eq!(production.deploys(), 4);
        assert_eq!(production.failed(), 2);
        assert_eq!(production.change_failure_rate(), Some(0.5));
        assert_eq!(insights.of("staging").deploys(), 1);
        assert_eq!(insights.of("staging").change_failure_rate(), Some(0.0));
        let nothing = insights.of("qa");
        assert_eq!((nothing.deploys(), nothing.days.len()), (0, 30));
        assert_eq!(nothing.change_failure_rate(), None);
        assert!(!insights.truncated);
    });
}

#[test]
fn lead_time_runs_from_the_merge_to_the_first_success_of_its_commit() {
    each_engine(|conn| {
        merge(conn, 1, &sha(1), NOW - 10 * HOUR);
        deploy(
            conn,
            1,
            "production",
            &sha(1),
            DeploymentState::Success,
            NOW - 9 * HOUR,
        );
        // The same commit again: not a new change, no second lead time.
        deploy(
            conn,
            2,
            "production",
            &sha(1),
            DeploymentState::Success,
            NOW - 8 * HOUR,
        );
        merge(conn, 2, &sha(2), NOW - 7 * HOUR);
        deploy(
            conn,
            3,
            "production",
            &sha(2),
            DeploymentState::Failure,
            NOW - 6 * HOUR,
        );
        deploy(
            conn,
            4,
            "production",
            &sha(2),
            DeploymentState::Success,
            NOW - 4 * HOUR,
        );
        merge(conn, 3, &sha(3), NOW - 2 * HOUR);
        deploy(
            conn,
            5,
            "production",
            &sha(3),
            DeploymentState::Success,
            NOW - HOUR,
        );
        // Deployed by hand, no merge on record: no lead time.
        deploy(
            conn,
            6,
            "production",
            &sha(9),
            DeploymentState::Success,
            NOW,
        );

        let production = insights(conn, 30, NOW).unwrap().of("production");
        let delivered: Vec<(i64, i64)> = production
            .lead_times
            .iter()
            .map(|l| (l.delivered_at, l.millis))
            .collect();
        assert_eq!(
            delivered,
            [
                (NOW - 9 * HOUR, HOUR),
                (NOW - 4 * HOUR, 3 * HOUR),
                (NOW - HOUR, HOUR)
            ]
        );
        let values = production.lead_time_values();
        assert_eq!(percentile(&values, 50), Some(HOUR));
        assert_eq!(percentile(&values, 90), Some(3 * HOUR));
    });
}

#[test]
fn a_restore_runs_from_the_first_failure_of_a_streak_to_the_next_success() {
    each_engine(|conn| {
        deploy(
            conn,
            1,
            "production",
            &sha(1),
            DeploymentState::Success,
            NOW - 10 * HOUR,
        );
        deploy(
            conn,
            2,
            "production",
            &sha(2),
            DeploymentState::Failure,
            NOW - 9 * HOUR,
        );
        deploy(
            conn,
            3,
            "production",
            &sha(2),
            DeploymentState::Error,
            NOW - 8 * HOUR,
        );
        deploy(
            conn,
            4,
            "production",
            &sha(3),
            DeploymentState::Success,
            NOW - 7 * HOUR,
        );
        deploy(
            conn,
            5,
            "production",
            &sha(4),
            DeploymentState::Failure,
            NOW - 2 * HOUR,
        );
        // Another repository's success in the environment does not restore acme/widgets.
        let mut other = job(6, None);
        other.repo = "acme/gadgets".parse().unwrap();
        jobs::enqueue(conn, &other, "d", NOW - HOUR).unwrap();
        jobs::claim(conn, "test", 4, |_| Policy::Queue, NOW - HOUR).unwrap();
        jobs::finish(conn, &other, DeploymentState::Success, "ok", NOW - HOUR).unwrap();

        let production = insights(conn, 30, NOW).unwrap().of("production");
        assert_eq!(
            production.restores,
            [
                Restore {
                    failed_at: NOW - 9 * HOUR,
                    restored_at: Some(NOW - 7 * HOUR),
                    automatic: false,
                },
                Restore {
                    failed_at: NOW - 2 * HOUR,
                    restored_at: None,
                    automatic: false,
                },
            ]
        );
        assert_eq!(production.restore_times(), [2 * HOUR]);
    });
}

#[test]
fn percentiles_are_values_that_occurred() {
    assert_eq!(percentile(&[], 50), None);
    assert_eq!(percentile(&[7], 90), Some(7));
    assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
    assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), Some(9));
    assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100), Some(10));
}

/// The query reads the window through indexes, never the whole history: the plan names
/// `jobs_finished` for the deploys and `merges_by_commit` for their merges.
#[test]
fn the_query_reads_the_window_and_each_merge_through_an_index() {
    let conn = database();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN
             SELECT environment, (SELECT MIN(m.recorded_at) FROM merges AS m
                                  WHERE m.repository = jobs.repository AND m.sha = jobs.sha)
             FROM jobs INDEXED BY jobs_finished
             WHERE state = 'finished' AND finished_at >= 0 AND finished_at <= 1
             ORDER BY finished_at DESC",
        )
        .unwrap()
        .query_map([], |row| row.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("USING INDEX jobs_finished"), "{plan}");
    assert!(plan.contains("merges_by_commit"), "{plan}");
    assert!(!plan.contains("SCAN m"), "{plan}");
}

/// A year of history — 100 deploys a day and as many merges — costs the page tens of
/// milliseconds in a debug build: it reads the window, not the year.
#[test]
fn a_large_history_is_read_in_milliseconds() {
    let conn = database();
    conn.execute_batch("BEGIN").unwrap();
    let tx = conn;
    let mut id = 0_i64;
    for day in 0..365_i64 {
        for n in 0..100_i64 {
            id += 1;
            let at = NOW - day * DAY_MS - n * 60_000;
            let sha = format!("{id:0>40}");
            tx.execute(
                "INSERT INTO merges (repository, pull_request, environment, sha, recorded_at)
                 VALUES ('acme/widgets', ?1, 'production', ?2, ?3)",
                rusqlite::params![id, sha, at - HOUR],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO jobs (deployment_id, repository, environment, sha, git_ref, task,
                     deploy_user, payload, delivery_id, state, result, queued_at, started_at,
                     finished_at)
                 VALUES (?1, 'acme/widgets', 'production', ?2, 'main', 'deploy', 'octo', '{}',
                         'd', 'finished', CASE WHEN ?1 % 10 = 0 THEN 'failure' ELSE 'success' END,
                         ?3, ?3, ?3)",
                rusqlite::params![id, sha, at],
            )
            .unwrap();
        }
    }
    tx.execute_batch("COMMIT").unwrap();
    for days in [30, 90] {
        let started = std::time::Instant::now();
        let insights = insights(&conn, days, NOW).unwrap();
        let took = started.elapsed();
        let production = insights.of("production");
        assert_eq!(production.deploys(), days * 100);
        assert_eq!(
            production.lead_times.len(),
            usize::try_from(days * 90).unwrap()
        );
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        eprintln!("insights over {days} days of a 36,500-deploy history: {took:?}");
    }
}

/// A failed verification that rolled back by itself, restored by its rollback: a restore
/// like any other, counted as automatic; the failed verifications are listed, newest
/// first, with what failed. A command's failure is not a verification's.
#[test]
fn automatic_rollbacks_restore_and_failed_verifications_are_listed() {
    each_engine(|conn| {
        let verified = |conn: &Connection, id: u64, n: u8, state, description: &str, at: i64| {
            let mut job = job(id, None);
            job.sha = sha(n).parse().unwrap();
            jobs::enqueue(conn, &job, "d", at - 120_000).unwrap();
            jobs::claim(conn, "test", 4, |_| Policy::Queue, at - 60_000).unwrap();
            assert!(jobs::verify::begin(conn, &job, "test", "verifying: x", at - 30_000).unwrap());
            let describe = |_: &Connection| Ok(description.to_owned());
            assert!(jobs::verify::finish(conn, &job, "test", state, at, describe).unwrap());
        };
        verified(
            conn,
            1,
            1,
            DeploymentState::Success,
            "verified",
            NOW - 9 * HOUR,
        );
        let failed = "verification failed: GET https://x/health answered 502 (expected 200); \
                      rolled back to 0000001";
        verified(conn, 2, 2, DeploymentState::Failure, failed, NOW - 8 * HOUR);
        verified(
            conn,
            3,
            1,
            DeploymentState::Success,
            "verified",
            NOW - 7 * HOUR,
        );
        deploy(
            conn,
            4,
            "production",
            &sha(3),
            DeploymentState::Failure,
            NOW - 6 * HOUR,
        );
        deploy(
            conn,
            5,
            "production",
            &sha(3),
            DeploymentState::Success,
            NOW - 5 * HOUR,
        );
        let timed_out = "verification timed out: its 5m ran out while deployhook was stopped";
        verified(conn, 6, 4, DeploymentState::Failure, timed_out, NOW - HOUR);

        let production = insights(conn, 30, NOW).unwrap().of("production");
        assert_eq!(production.restore_times(), [HOUR, HOUR]);
        assert_eq!(production.automatic_restores(), 1);
        assert_eq!(production.verification_failed, 2);
        let listed: Vec<(&str, &str)> = production
            .verification_failures
            .iter()
            .map(|f| (f.sha.as_str(), f.description.as_str()))
            .collect();
        assert_eq!(
            listed,
            [(sha(4).as_str(), timed_out), (sha(2).as_str(), failed)]
        );
    });
}
