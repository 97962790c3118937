//! The recorded-style check fixtures (`tests/fixtures/check_run.*`, `check_suite.*`,
//! `status.*`, and staging's `deployment` and `deployment_status`), replayed as their exact
//! bytes, signed, through the real server: they are about the merge commit of
//! `pull_request.closed.merged.json`, so replaying them after it closes and opens its gate
//! and promotes it, as the README's "Trying the gate and promotion" does.

use std::process::Command;
use std::time::{Duration, Instant};

use deployhook::model::Required;
use serde_json::{Value, json};

use crate::checks::{
    FakeChecks, MERGED_AT, SHA, ended, gated_app, listed_run, metric, named, post, promoting,
    queued_creations, reads, reads_settled, wait_for_created, wait_state, waiting,
};
use crate::helpers::{SECRET, TestApp, assert_ack, fixture, spawn_app_with};

/// Posts the fixture `file` as GitHub would, its event named by its file name.
async fn replay(app: &TestApp, file: &str) -> Value {
    let event = file.split('.').next().unwrap();
    post(app, event, &fixture(file)).await
}

/// The request deployhook makes once the merge of the fixture passes its gate.
fn gated_request(environment: &str) -> Value {
    json!({
        "ref": SHA, "task": "deploy", "auto_merge": false, "required_contexts": [],
        "environment": environment,
        "payload": {"environment": environment, "deploy_user": "octo-dev",
                    "pull_request": 42, "merged_at": MERGED_AT},
        "description": "Deploy PR #42: Make widgets 3x faster",
    })
}

#[test]
fn the_check_fixtures_are_about_the_merge_commit_of_the_merged_pull_request() {
    let merge: Value = serde_json::from_slice(&fixture("pull_request.closed.merged.json")).unwrap();
    assert_eq!(merge["pull_request"]["merge_commit_sha"], SHA);
    for (file, sha) in [
        ("check_run.completed.success.json", "/check_run/head_sha"),
        ("check_run.completed.failure.json", "/check_run/head_sha"),
        ("check_suite.completed.json", "/check_suite/head_sha"),
        ("status.success.json", "/sha"),
        ("status.failure.json", "/sha"),
        ("deployment.created.staging.json", "/deployment/sha"),
        (
            "deployment_status.created.success.staging.json",
            "/deployment/sha",
        ),
    ] {
        let event: Value = serde_json::from_slice(&fixture(file)).unwrap();
        assert_eq!(event.pointer(sha).unwrap(), SHA, "{file}");
        assert_eq!(event["repository"], merge["repository"], "{file}");
    }
}

/// A failed check run closes the gate: nothing is created. Its re-run passing (a newer
/// run of the same check) opens it again, and the merge deploys.
#[tokio::test]
async fn a_failed_check_run_closes_the_gate_and_its_passing_re_run_opens_it() {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |_| {}).await;
    let ack = replay(&app, "pull_request.closed.merged.json").await;
    assert_ack(
        &ack,
        "accepted",
        "pull request #42 merged acme/widgets@6f1e3c9: waiting for test, lint before deploying to production",
    );
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);

    let ack = replay(&app, "check_run.completed.failure.json").await;
    assert_ack(
        &ack,
        "recorded",
        "check \"test\" of acme/widgets@6f1e3c9 failed (failure); a merge waiting for its \
         checks will not deploy: a check it needs failed",
    );
    let (state, reason) = wait_state(&app, "checks", SHA);
    assert_eq!(state, "failed");
    assert_eq!(
        reason.as_deref(),
        Some(
            "check test failure: https://github.com/acme/widgets/actions/runs/136408811/job/33180001"
        )
    );
    let ack = replay(&app, "status.success.json").await;
    assert_ack(
        &ack,
        "recorded",
        "check \"lint\" of acme/widgets@6f1e3c9 passed (success)",
    );
    assert_eq!(
        queued_creations(&app),
        0,
        "a failed gate created a deployment"
    );

    let ack = replay(&app, "check_run.completed.success.json").await;
    assert_ack(
        &ack,
        "recorded",
        "check \"test\" of acme/widgets@6f1e3c9 passed (success); a merge waiting for its \
         checks has all of them green: its deployment is being created",
    );
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created, [gated_request("production")]);
    assert_eq!(metric(&app, &ended("checks", "failed")).await, 1.0);
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    app.stop().await;
}

/// The same with a commit status: `lint` failing closes the gate, its newer success opens
/// it again.
#[tokio::test]
async fn a_failed_status_closes_the_gate_and_its_newer_success_opens_it() {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |_| {}).await;
    replay(&app, "pull_request.closed.merged.json").await;
    let ack = replay(&app, "status.failure.json").await;
    assert_ack(
        &ack,
        "recorded",
        "check \"lint\" of acme/widgets@6f1e3c9 failed (failure); a merge waiting",
    );
    assert_eq!(wait_state(&app, "checks", SHA).0, "failed");
    replay(&app, "check_run.completed.success.json").await;
    assert_eq!(
        queued_creations(&app),
        0,
        "a failed gate created a deployment"
    );

    let ack = replay(&app, "status.success.json").await;
    assert_ack(&ack, "recorded", "has all of them green");
    assert_eq!(
        wait_for_created(&app, 1).await,
        [gated_request("production")]
    );
    app.stop().await;
}

/// Under `checks = "all"` a suite still running holds the merge, whatever its runs say;
/// the `check_suite` `completed` fixture sets off the read of GitHub that opens the gate
/// (without it, the next read would be a poll, minutes away).
#[tokio::test]
async fn the_completed_check_suite_has_all_checks_read_again_and_opens_the_gate() {
    let (mut app, checks) = gated_app(Required::All, |_| {}).await;
    let suite = |status: &str| {
        json!({"id": 118_578_147, "status": status, "conclusion": null,
               "latest_check_runs_count": 1,
               "app": {"id": 15368, "name": "GitHub Actions", "slug": "github-actions"}})
    };
    checks.set_suites(vec![suite("in_progress")]);
    checks.set_runs(vec![listed_run(
        33_180_002,
        "test",
        "completed",
        Some("success"),
    )]);
    replay(&app, "pull_request.closed.merged.json").await;
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;
    reads_settled(&app).await;
    assert_eq!(wait_state(&app, "checks", SHA).0, "waiting");
    assert_eq!(queued_creations(&app), 0);

    checks.set_suites(vec![suite("completed")]);
    let ack = replay(&app, "check_suite.completed.json").await;
    assert_ack(
        &ack,
        "recorded",
        "check suite of GitHub Actions on acme/widgets@6f1e3c9 completed (success)",
    );
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created, [gated_request("production")]);
    assert!(reads(&app.github_requests().await) >= 2);
    app.stop().await;
}

fn deployhook_replay(app: &TestApp, file: &str) -> Command {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .args(["replay", &path, "--event", file.split('.').next().unwrap()])
        .args(["--url", &format!("{}/event_handler", app.url)])
        .env("GITHUB_WEBHOOK_SECRET", SECRET);
    command
}

/// `deployhook replay FILE`'s output, which must start `2xx`.
async fn replay_with_the_binary(app: &TestApp, file: &str) -> String {
    let mut command = deployhook_replay(app, file);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{file}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The README's trial, step by step with `deployhook replay`: the merge waits for test and
/// lint; their fixtures open the gate and staging's deployment is asked for; staging's
/// `deployment` runs the command; its `success` soaks, and production's deployment is
/// asked for, promoted from staging's deployment 880002.
#[tokio::test]
async fn replaying_the_fixtures_takes_a_merge_through_the_gate_to_staging_and_production() {
    let soak = Duration::from_secs(1);
    let mut app = spawn_app_with(|config, _| {
        promoting(config, soak);
        config.environments[0].checks = Some(named(&["test", "lint"]));
    })
    .await;
    let _checks = FakeChecks::mount(&app.github).await;
    let says = replay_with_the_binary(&app, "pull_request.closed.merged.json").await;
    assert!(
        says.contains("waiting for test, lint before deploying to staging"),
        "{says}"
    );
    replay_with_the_binary(&app, "check_run.completed.success.json").await;
    let says = replay_with_the_binary(&app, "status.success.json").await;
    assert!(says.contains("has all of them green"), "{says}");
    assert_eq!(wait_for_created(&app, 1).await, [gated_request("staging")]);

    let says = replay_with_the_binary(&app, "deployment.created.staging.json").await;
    assert!(
        says.contains("deploying deployment 880002 of acme/widgets@6f1e3c9 to staging"),
        "{says}"
    );
    let states: Vec<String> = app
        .wait_for_final_status(880_002)
        .await
        .into_iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, ["queued", "in_progress", "success"]);

    let started = Instant::now();
    let says = replay_with_the_binary(&app, "deployment_status.created.success.staging.json").await;
    assert!(
        says.contains("promoting 6f1e3c9 to production after a soak of 1s"),
        "{says}"
    );
    let created = wait_for_created(&app, 2).await;
    assert!(started.elapsed() >= soak - Duration::from_millis(30));
    assert_eq!(created[1]["environment"], "production");
    assert_eq!(created[1]["ref"], SHA);
    assert_eq!(
        created[1]["payload"]["promoted_from"],
        json!({"environment": "staging", "deployment": 880_002})
    );
    app.stop().await;
}
