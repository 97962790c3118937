//! The waits' rules at the store: a gate settles on events and reads, times out only on an
//! answer from GitHub, supersedes by merge time, and a soak promotes once.

use std::time::Duration;

use crate::store::db::Connection;
use serde_json::json;

use super::*;
use crate::model::{
    CheckKind, CheckReport, CheckResult, CheckSource, CheckState, CommitSha, DeploymentId,
    DeploymentRequest, Environment, Gate, NewDeployment, Policy, Promotion, RepoName, Required,
};
use crate::store::tests::each_engine;

mod gate_properties;
pub(crate) mod sources;

const SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
const NEWER: &str = "7a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
const HOUR: i64 = 3_600_000;
const POLL: i64 = 300_000;

fn new_deployment(sha: &str, environment: &str, pull_request: u64) -> NewDeployment {
    NewDeployment {
        repo: RepoName::parse("acme/widgets").unwrap(),
        pull_request,
        installation: None,
        request: DeploymentRequest {
            git_ref: CommitSha::parse(sha).unwrap(),
            task: "deploy".into(),
            auto_merge: false,
            required_contexts: vec![],
            environment: Environment::parse(environment).unwrap(),
            payload: json!({"pull_request": pull_request}),
            description: "d".into(),
            production_environment: None,
            transient_environment: None,
        },
        gate: None,
    }
}

fn gate(names: &[&str], merged_at: &str) -> Gate {
    Gate {
        required: Required::Named(names.iter().map(|n| (*n).to_owned()).collect()),
        timeout: Duration::from_millis(HOUR.unsigned_abs()),
        policy: Policy::Latest,
        merged_at: Some(crate::model::MergedAt::parse(merged_at).unwrap()),
    }
}

fn report(sha: &str, name: &str, state: CheckState, id: u64) -> CheckReport {
    CheckReport {
        repo: RepoName::parse("acme/widgets").unwrap(),
        sha: CommitSha::parse(sha).unwrap(),
        result: Some(CheckResult {
            kind: CheckKind::Run,
            name: name.into(),
            state,
            detail: state.as_str().into(),
            url: Some(format!("https://ci.example/{name}/{id}")),
            source: CheckSource::of_app(Some(15368), None, Some(1)),
            github_id: id,
        }),
        installation: None,
    }
}

fn state_of(conn: &Connection, sha: &str) -> (String, Option<String>) {
    conn.query_row(
        "SELECT state, reason FROM waits WHERE sha = ?1",
        [sha],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap()
}

fn creations(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'create_deployment'",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

#[test]
fn a_gate_passes_once_every_named_check_passed_and_a_late_older_result_changes_nothing() {
    each_engine(|conn| {
        let new = new_deployment(SHA, "staging", 42);
        let ended = wait_for_checks(
            conn,
            &new,
            &gate(&["test", "lint"], "2026-11-30T10:00:00Z"),
            POLL,
            0,
        )
        .unwrap()
        .expect("a new wait");
        assert!(ended.is_empty());
        assert_eq!(creations(conn), 0);
        record_check(conn, &report(SHA, "lint", CheckState::Passed, 20), 1).unwrap();
        // An older run of `lint` that failed, delivered late, does not replace the newer one.
        record_check(conn, &report(SHA, "lint", CheckState::Failed, 10), 2).unwrap();
        assert_eq!(state_of(conn, SHA).0, "waiting");
        let ended = record_check(conn, &report(SHA, "test", CheckState::Passed, 21), 3).unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "passed"
            }]
        );
        assert_eq!(creations(conn), 1);
        // The same event again: nothing more.
        record_check(conn, &report(SHA, "test", CheckState::Passed, 21), 4).unwrap();
        assert_eq!(creations(conn), 1);
    });
}

#[test]
fn results_recorded_before_the_merge_count_and_a_failure_names_the_check() {
    each_engine(|conn| {
        record_check(conn, &report(SHA, "lint", CheckState::Failed, 5), 0).unwrap();
        let new = new_deployment(SHA, "staging", 42);
        let ended = wait_for_checks(
            conn,
            &new,
            &gate(&["lint"], "2026-11-30T10:00:00Z"),
            POLL,
            1,
        )
        .unwrap()
        .expect("a new wait");
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "failed"
            }]
        );
        let (state, reason) = state_of(conn, SHA);
        assert_eq!(state, "failed");
        assert_eq!(
            reason.unwrap(),
            "check lint failed: https://ci.example/lint/5"
        );
        assert_eq!(creations(conn), 0);
        // The merge is forgotten: a redelivery of it may wait again.
        let merges: i64 = conn
            .query_row("SELECT COUNT(*) FROM merges", [], |row| row.get(0))
            .unwrap();
        assert_eq!(merges, 0);
    });
}

#[test]
fn a_wait_times_out_only_when_github_answered_after_the_deadline() {
    each_engine(|conn| {
        let new = new_deployment(SHA, "staging", 42);
        wait_for_checks(
            conn,
            &new,
            &gate(&["test"], "2026-11-30T10:00:00Z"),
            POLL,
            0,
        )
        .unwrap()
        .expect("a new wait");
        // Past the deadline, an event alone does not end it: GitHub may be down.
        record_check(conn, &report(SHA, "test", CheckState::Pending, 1), HOUR + 1).unwrap();
        assert_eq!(state_of(conn, SHA).0, "waiting");
        // The tick asks GitHub; while the read is not answered, it waits.
        tick(conn, POLL, HOUR + 2, 10).unwrap();
        assert_eq!(state_of(conn, SHA).0, "waiting");
        let ended = record_read(conn, "acme/widgets", SHA, &[], HOUR + 3).unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "timed_out"
            }]
        );
        assert_eq!(state_of(conn, SHA).1.unwrap(), "timed out waiting for test");
    });
}

#[test]
fn a_newer_merge_supersedes_an_older_wait_whatever_order_they_arrive_in() {
    each_engine(|conn| {
        let older = new_deployment(SHA, "staging", 41);
        let newer = new_deployment(NEWER, "staging", 42);
        wait_for_checks(
            conn,
            &newer,
            &gate(&["test"], "2026-11-30T10:05:00Z"),
            POLL,
            0,
        )
        .unwrap()
        .expect("a new wait");
        // The older merge's delivery comes late: it is superseded at once.
        let ended = wait_for_checks(
            conn,
            &older,
            &gate(&["test"], "2026-11-30T10:00:00Z"),
            POLL,
            1,
        )
        .unwrap()
        .expect("a new wait");
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "superseded"
            }]
        );
        assert_eq!(state_of(conn, SHA).0, "superseded");
        assert_eq!(state_of(conn, NEWER).0, "waiting");
    });
}

#[test]
fn all_is_green_only_after_a_read_and_suites_without_runs_do_not_count() {
    each_engine(|conn| {
        let new = new_deployment(SHA, "staging", 42);
        let all = Gate {
            required: Required::All,
            ..gate(&[], "2026-11-30T10:00:00Z")
        };
        wait_for_checks(conn, &new, &all, POLL, 0)
            .unwrap()
            .expect("a new wait");
        record_check(conn, &report(SHA, "build", CheckState::Passed, 1), 1).unwrap();
        assert_eq!(state_of(conn, SHA).0, "waiting", "one event is not all");
        let read = [
            report(SHA, "build", CheckState::Passed, 1).result.unwrap(),
            report(SHA, "test", CheckState::Passed, 2).result.unwrap(),
        ];
        let ended = record_read(conn, "acme/widgets", SHA, &read, 2).unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "passed"
            }]
        );
    });
}

#[test]
fn a_soak_promotes_once_and_a_newer_success_replaces_one_still_soaking() {
    each_engine(|conn| {
        let promotion = |sha: &str, from: u64| Promotion {
            new: new_deployment(sha, "production", 42),
            from_deployment: DeploymentId::from(from),
            soak: Duration::from_secs(600),
            policy: Policy::Latest,
        };
        assert!(soak(conn, &promotion(SHA, 100), 0).unwrap().is_some());
        // A second delivery of the same success: nothing more.
        assert!(soak(conn, &promotion(SHA, 100), 1).unwrap().is_none());
        let ended = soak(conn, &promotion(NEWER, 101), 2).unwrap().unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "soak",
                outcome: "superseded"
            }]
        );
        assert_eq!(next_due(conn).unwrap(), Some(600_002));
        assert_eq!(tick(conn, POLL, 600_001, 10).unwrap().created, 0);
        let done = tick(conn, POLL, 600_002, 10).unwrap();
        assert_eq!(done.created, 1);
        assert_eq!(creations(conn), 1);
        assert_eq!(state_of(conn, NEWER).0, "passed");
        // Promoted: the same commit succeeding again promotes nothing more.
        assert!(
            soak(conn, &promotion(NEWER, 102), 700_000)
                .unwrap()
                .is_none()
        );
    });
}

#[test]
fn a_failed_check_re_run_opens_the_wait_again_and_green_deploys_it() {
    each_engine(|conn| {
        let new = new_deployment(SHA, "staging", 42);
        wait_for_checks(
            conn,
            &new,
            &gate(&["lint"], "2026-11-30T10:00:00Z"),
            POLL,
            0,
        )
        .unwrap()
        .expect("a new wait");
        record_check(conn, &report(SHA, "lint", CheckState::Failed, 5), 1).unwrap();
        assert_eq!(state_of(conn, SHA).0, "failed");
        // The same run's result again changes nothing: it is still the failure.
        record_check(conn, &report(SHA, "lint", CheckState::Failed, 5), 2).unwrap();
        assert_eq!(state_of(conn, SHA).0, "failed");
        // Re-run: a newer run of lint starts, and the wait waits again, with a new deadline.
        record_check(conn, &report(SHA, "lint", CheckState::Pending, 6), 10).unwrap();
        assert_eq!(state_of(conn, SHA).0, "waiting");
        let due: i64 = conn
            .query_row("SELECT due_at FROM waits WHERE sha = ?1", [SHA], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(due, 10 + HOUR);
        let ended = record_check(conn, &report(SHA, "lint", CheckState::Passed, 6), 11).unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "passed"
            }]
        );
        assert_eq!(creations(conn), 1);
    });
}

#[test]
fn a_started_event_delivered_after_the_completed_one_does_not_undo_it() {
    each_engine(|conn| {
        record_check(conn, &report(SHA, "test", CheckState::Passed, 7), 0).unwrap();
        // The same run's `in_progress` event, delivered late.
        record_check(conn, &report(SHA, "test", CheckState::Pending, 7), 1).unwrap();
        let results = results(conn, "acme/widgets", SHA).unwrap();
        assert_eq!(results[0].state, CheckState::Passed);
    });
}

#[test]
fn under_queue_a_green_merge_waits_for_the_older_one_so_deployments_keep_merge_order() {
    each_engine(|conn| {
        let queued = |names: &[&str], merged_at: &str| Gate {
            policy: Policy::Queue,
            ..gate(names, merged_at)
        };
        let older = new_deployment(SHA, "staging", 41);
        let newer = new_deployment(NEWER, "staging", 42);
        wait_for_checks(
            conn,
            &older,
            &queued(&["test"], "2026-11-30T10:00:00Z"),
            POLL,
            0,
        )
        .unwrap()
        .expect("a new wait");
        wait_for_checks(
            conn,
            &newer,
            &queued(&["test"], "2026-11-30T10:05:00Z"),
            POLL,
            1,
        )
        .unwrap()
        .expect("a new wait");
        // The newer merge's checks pass first: it waits for the older one.
        record_check(conn, &report(NEWER, "test", CheckState::Passed, 2), 2).unwrap();
        assert_eq!(state_of(conn, NEWER).0, "waiting");
        assert_eq!(creations(conn), 0);
        // The older one passes: both deployments are created, oldest first.
        let ended = record_check(conn, &report(SHA, "test", CheckState::Passed, 1), 3).unwrap();
        assert_eq!(ended.len(), 2, "{ended:?}");
        let created: Vec<String> = conn
            .prepare("SELECT body FROM outbox WHERE kind = 'create_deployment' ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|b| {
                let body: serde_json::Value = serde_json::from_str(&b.unwrap()).unwrap();
                body["request"]["ref"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(created, [SHA, NEWER]);
    });
}

#[test]
fn a_deployment_github_refused_to_create_may_be_asked_for_again() {
    each_engine(|conn| {
        let new = new_deployment(SHA, "staging", 42);
        let gate = gate(&["test"], "2026-11-30T10:00:00Z");
        record_check(conn, &report(SHA, "test", CheckState::Passed, 1), 0).unwrap();
        wait_for_checks(conn, &new, &gate, POLL, 1)
            .unwrap()
            .expect("a new wait");
        assert_eq!(state_of(conn, SHA).0, "passed");
        // While it passed, the same merge delivered again starts nothing.
        assert!(
            wait_for_checks(conn, &new, &gate, POLL, 2)
                .unwrap()
                .is_none()
        );
        let ended = creation_given_up(conn, "acme/widgets", &new.request, "422", 3).unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "given_up"
            }]
        );
        // Given up, a new delivery of the merge waits, and passes, again.
        assert!(
            wait_for_checks(conn, &new, &gate, POLL, 4)
                .unwrap()
                .is_some()
        );
        assert_eq!(state_of(conn, SHA).0, "passed");
        assert_eq!(creations(conn), 2);
    });
}

#[test]
fn a_read_keeps_the_worst_of_two_runs_of_one_name_and_all_waits_for_a_running_suite() {
    each_engine(|conn| {
        let new = new_deployment(SHA, "staging", 42);
        let all = Gate {
            required: Required::All,
            ..gate(&[], "2026-11-30T10:00:00Z")
        };
        wait_for_checks(conn, &new, &all, POLL, 0)
            .unwrap()
            .expect("a new wait");
        let run = |name: &str, state, id| report(SHA, name, state, id).result.unwrap();
        let suite = |state, id| CheckResult {
            kind: CheckKind::Suite,
            name: CheckResult::suite_name(Some("GitHub Actions")),
            state,
            detail: "in_progress".into(),
            url: None,
            source: CheckSource::of_app(Some(15368), None, Some(id)),
            github_id: id,
        };
        // Every run read so far passed, but the suite is still running: later jobs may come.
        let read = [
            run("build", CheckState::Passed, 1),
            suite(CheckState::Pending, 9),
        ];
        assert!(
            record_read(conn, "acme/widgets", SHA, &read, 1)
                .unwrap()
                .is_empty()
        );
        assert_eq!(state_of(conn, SHA).0, "waiting");
        // Two workflows (two suites) run a job named `test`: one failed, one passed. The
        // failure counts.
        let in_suite = |mut result: CheckResult, suite| {
            result.source = CheckSource::of_app(Some(15368), None, Some(suite));
            result
        };
        let read = [
            run("build", CheckState::Passed, 1),
            in_suite(run("test", CheckState::Failed, 2), 1),
            in_suite(run("test", CheckState::Passed, 3), 2),
            suite(CheckState::Passed, 9),
        ];
        let ended = record_read(conn, "acme/widgets", SHA, &read, 2).unwrap();
        assert_eq!(
            ended,
            [Ended {
                kind: "checks",
                outcome: "failed"
            }]
        );
    });
}

#[test]
fn how_waits_ended_reads_as_plain_sentences_alike_ones_counted() {
    let ended = |kind, outcome| Ended { kind, outcome };
    assert_eq!(summary(&[]), None);
    assert_eq!(
        summary(&[ended("checks", "failed")]).unwrap(),
        "a merge waiting for its checks will not deploy: a check it needs failed"
    );
    assert_eq!(
        summary(&[
            ended("checks", "passed"),
            ended("checks", "superseded"),
            ended("checks", "passed"),
        ])
        .unwrap(),
        "2 merges waiting for their checks have all of them green: their deployments are \
         being created; an older merge waiting for its checks will not deploy: a newer merge \
         replaces it"
    );
    assert_eq!(
        summary(&[ended("soak", "passed")]).unwrap(),
        "a promotion has soaked: its deployment is being created"
    );
}
