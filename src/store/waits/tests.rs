//! The waits' rules at the store: a gate settles on events and reads, times out only on an
//! answer from GitHub, supersedes by merge time, and a soak promotes once.

use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;

use super::*;
use crate::model::{DeploymentId, Environment};

const SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
const NEWER: &str = "7a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
const HOUR: i64 = 3_600_000;
const POLL: i64 = 300_000;

fn database() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut conn).unwrap();
    conn
}

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
        merged_at: Some(merged_at.into()),
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
            source_id: id,
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
    let conn = database();
    let new = new_deployment(SHA, "staging", 42);
    let ended = wait_for_checks(
        &conn,
        &new,
        &gate(&["test", "lint"], "2026-11-30T10:00:00Z"),
        POLL,
        0,
    )
    .unwrap();
    assert!(ended.is_empty());
    assert_eq!(creations(&conn), 0);
    record_check(&conn, &report(SHA, "lint", CheckState::Passed, 20), 1).unwrap();
    // An older run of `lint` that failed, delivered late, does not replace the newer one.
    record_check(&conn, &report(SHA, "lint", CheckState::Failed, 10), 2).unwrap();
    assert_eq!(state_of(&conn, SHA).0, "waiting");
    let ended = record_check(&conn, &report(SHA, "test", CheckState::Passed, 21), 3).unwrap();
    assert_eq!(
        ended,
        [Ended {
            kind: "checks",
            outcome: "passed"
        }]
    );
    assert_eq!(creations(&conn), 1);
    // The same event again: nothing more.
    record_check(&conn, &report(SHA, "test", CheckState::Passed, 21), 4).unwrap();
    assert_eq!(creations(&conn), 1);
}

#[test]
fn results_recorded_before_the_merge_count_and_a_failure_names_the_check() {
    let conn = database();
    record_check(&conn, &report(SHA, "lint", CheckState::Failed, 5), 0).unwrap();
    let new = new_deployment(SHA, "staging", 42);
    let ended = wait_for_checks(
        &conn,
        &new,
        &gate(&["lint"], "2026-11-30T10:00:00Z"),
        POLL,
        1,
    )
    .unwrap();
    assert_eq!(
        ended,
        [Ended {
            kind: "checks",
            outcome: "failed"
        }]
    );
    let (state, reason) = state_of(&conn, SHA);
    assert_eq!(state, "failed");
    assert_eq!(
        reason.unwrap(),
        "check lint failed: https://ci.example/lint/5"
    );
    assert_eq!(creations(&conn), 0);
    // The merge is forgotten: a redelivery of it may wait again.
    let merges: i64 = conn
        .query_row("SELECT COUNT(*) FROM merges", [], |row| row.get(0))
        .unwrap();
    assert_eq!(merges, 0);
}

#[test]
fn a_wait_times_out_only_when_github_answered_after_the_deadline() {
    let conn = database();
    let new = new_deployment(SHA, "staging", 42);
    wait_for_checks(
        &conn,
        &new,
        &gate(&["test"], "2026-11-30T10:00:00Z"),
        POLL,
        0,
    )
    .unwrap();
    // Past the deadline, an event alone does not end it: GitHub may be down.
    record_check(
        &conn,
        &report(SHA, "test", CheckState::Pending, 1),
        HOUR + 1,
    )
    .unwrap();
    assert_eq!(state_of(&conn, SHA).0, "waiting");
    // The tick asks GitHub; while the read is not answered, it waits.
    tick(&conn, POLL, HOUR + 2, 10).unwrap();
    assert_eq!(state_of(&conn, SHA).0, "waiting");
    let ended = record_read(&conn, "acme/widgets", SHA, &[], HOUR + 3).unwrap();
    assert_eq!(
        ended,
        [Ended {
            kind: "checks",
            outcome: "timed_out"
        }]
    );
    assert_eq!(
        state_of(&conn, SHA).1.unwrap(),
        "timed out waiting for test"
    );
}

#[test]
fn a_newer_merge_supersedes_an_older_wait_whatever_order_they_arrive_in() {
    let conn = database();
    let older = new_deployment(SHA, "staging", 41);
    let newer = new_deployment(NEWER, "staging", 42);
    wait_for_checks(
        &conn,
        &newer,
        &gate(&["test"], "2026-11-30T10:05:00Z"),
        POLL,
        0,
    )
    .unwrap();
    // The older merge's delivery comes late: it is superseded at once.
    let ended = wait_for_checks(
        &conn,
        &older,
        &gate(&["test"], "2026-11-30T10:00:00Z"),
        POLL,
        1,
    )
    .unwrap();
    assert_eq!(
        ended,
        [Ended {
            kind: "checks",
            outcome: "superseded"
        }]
    );
    assert_eq!(state_of(&conn, SHA).0, "superseded");
    assert_eq!(state_of(&conn, NEWER).0, "waiting");
}

#[test]
fn all_is_green_only_after_a_read_and_suites_without_runs_do_not_count() {
    let conn = database();
    let new = new_deployment(SHA, "staging", 42);
    let all = Gate {
        required: Required::All,
        ..gate(&[], "2026-11-30T10:00:00Z")
    };
    wait_for_checks(&conn, &new, &all, POLL, 0).unwrap();
    record_check(&conn, &report(SHA, "build", CheckState::Passed, 1), 1).unwrap();
    assert_eq!(state_of(&conn, SHA).0, "waiting", "one event is not all");
    let read = [
        report(SHA, "build", CheckState::Passed, 1).result.unwrap(),
        report(SHA, "test", CheckState::Passed, 2).result.unwrap(),
    ];
    let ended = record_read(&conn, "acme/widgets", SHA, &read, 2).unwrap();
    assert_eq!(
        ended,
        [Ended {
            kind: "checks",
            outcome: "passed"
        }]
    );
}

#[test]
fn a_soak_promotes_once_and_a_newer_success_replaces_one_still_soaking() {
    let conn = database();
    let promotion = |sha: &str, from: u64| Promotion {
        new: new_deployment(sha, "production", 42),
        from_deployment: DeploymentId::from(from),
        soak: Duration::from_secs(600),
        policy: Policy::Latest,
    };
    assert!(soak(&conn, &promotion(SHA, 100), 0).unwrap().is_some());
    // A second delivery of the same success: nothing more.
    assert!(soak(&conn, &promotion(SHA, 100), 1).unwrap().is_none());
    let ended = soak(&conn, &promotion(NEWER, 101), 2).unwrap().unwrap();
    assert_eq!(
        ended,
        [Ended {
            kind: "soak",
            outcome: "superseded"
        }]
    );
    assert_eq!(next_due(&conn).unwrap(), Some(600_002));
    assert_eq!(tick(&conn, POLL, 600_001, 10).unwrap().created, 0);
    let done = tick(&conn, POLL, 600_002, 10).unwrap();
    assert_eq!(done.created, 1);
    assert_eq!(creations(&conn), 1);
    assert_eq!(state_of(&conn, NEWER).0, "passed");
    // Promoted: the same commit succeeding again promotes nothing more.
    assert!(
        soak(&conn, &promotion(NEWER, 102), 700_000)
            .unwrap()
            .is_none()
    );
}
