//! `process_deployment`: a deployment made by a person runs the deploy command in the
//! background and reports `queued`, `in_progress`, then how it ended; foreign ones and
//! other environments run nothing.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    SECRET, TOKEN, assert_ack, body_json, deploy_with_script, fixture, fixture_json, spawn_app,
    spawn_app_with,
};

const DEPLOYMENT: &str = "deployment.created.json";
const DEPLOYMENT_ID: u64 = 880_001;

fn states(statuses: &[crate::helpers::PostedStatus]) -> Vec<&str> {
    statuses.iter().map(|s| s.state.as_str()).collect()
}

#[tokio::test]
async fn a_deployment_runs_the_command_and_posts_queued_in_progress_success_in_order() {
    let app = spawn_app().await;
    let response = app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "success"]);
    assert!(
        statuses[2].description.starts_with("deployed in "),
        "{statuses:?}"
    );
    let requests = app.github_requests().await;
    assert!(
        requests
            .iter()
            .all(|r| r.url.path() == "/repos/acme/widgets/deployments/880001/statuses")
    );
}

#[tokio::test]
async fn the_command_learns_the_job_from_its_environment_and_sees_no_secret() {
    let app = spawn_app().await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    app.wait_for_final_status(DEPLOYMENT_ID).await;
    let env = std::fs::read_to_string(app.dir.path().join("env.txt")).unwrap();
    for expected in [
        "DEPLOYHOOK_DEPLOYMENT_ID=880001",
        "DEPLOYHOOK_REPOSITORY=acme/widgets",
        "DEPLOYHOOK_REF=6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
        "DEPLOYHOOK_SHA=6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
        "DEPLOYHOOK_ENVIRONMENT=production",
        "DEPLOYHOOK_TASK=deploy",
        "DEPLOYHOOK_DEPLOY_USER=octo-dev",
        r#"DEPLOYHOOK_PAYLOAD={"deploy_user":"octo-dev","environment":"production","pull_request":42}"#,
        "DEPLOYHOOK_ROLLBACK=0",
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing from:\n{env}"
        );
    }
    assert!(!env.contains(TOKEN) && !env.contains(SECRET), "{env}");
    assert!(!env.contains("GITHUB_"), "{env}");
}

#[tokio::test]
async fn a_variable_named_in_pass_env_reaches_the_command() {
    // Cargo sets CARGO_PKG_NAME for the test process; the server passes it on by name.
    let app =
        spawn_app_with(|config, _| config.environments[0].pass_env = vec!["CARGO_PKG_NAME".into()])
            .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    app.wait_for_final_status(DEPLOYMENT_ID).await;
    let env = std::fs::read_to_string(app.dir.path().join("env.txt")).unwrap();
    assert!(
        env.lines().any(|l| l == "CARGO_PKG_NAME=deployhook"),
        "{env}"
    );
}

#[tokio::test]
async fn a_failing_command_is_reported_as_failure_with_its_exit_code() {
    let app = spawn_app_with(|config, dir| {
        deploy_with_script(config, dir, "echo 'migration failed' >&2\nexit 3");
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "failure"]);
    assert!(
        statuses[2].description.starts_with("exit code 3 after"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_command_that_cannot_start_is_reported_as_error_saying_why() {
    let app = spawn_app_with(|config, dir| {
        config.environments[0].command = vec![dir.join("missing.sh").display().to_string()];
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "error"]);
    let description = &statuses[2].description;
    assert!(description.starts_with("could not start "), "{description}");
    assert!(
        description.contains("No such file or directory"),
        "{description}"
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_stopped_and_reported_as_error() {
    let app = spawn_app_with(|config, dir| {
        deploy_with_script(config, dir, "sleep 30");
        config.environments[0].timeout = Duration::from_secs(1);
    })
    .await;
    let started = Instant::now();
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "error"]);
    assert_eq!(statuses[2].description, "timed out after 1s");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleep was not stopped"
    );
}

#[tokio::test]
async fn the_deployment_webhook_is_answered_while_the_deploy_still_runs() {
    let app = spawn_app_with(|config, dir| {
        deploy_with_script(config, dir, "sleep 2");
    })
    .await;
    let started = Instant::now();
    let response = app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let answered_in = started.elapsed();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        answered_in < Duration::from_secs(1),
        "answered in {answered_in:?}"
    );
    assert!(!states(&app.statuses().await).contains(&"success"));
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "success"]);
}

#[tokio::test]
async fn two_deploys_to_one_environment_never_overlap() {
    let app = spawn_app_with(|config, dir| {
        let log = dir.join("runs.log");
        let body = format!(
            "echo \"start $DEPLOYHOOK_DEPLOYMENT_ID\" >> '{0}'\nsleep 0.5\necho \"end $DEPLOYHOOK_DEPLOYMENT_ID\" >> '{0}'",
            log.display()
        );
        deploy_with_script(config, dir, &body);
        // Both must run: under `latest` the older could be superseded instead.
        config.environments[0].policy = deployhook::model::Policy::Queue;
    })
    .await;
    let mut second = fixture_json(DEPLOYMENT);
    second["deployment"]["id"] = json!(880_003);
    let (first_body, second_body) = (fixture(DEPLOYMENT), second.to_string().into_bytes());
    let (first, other) = tokio::join!(
        app.post_webhook("deployment", &first_body),
        app.post_webhook("deployment", &second_body),
    );
    assert_eq!(
        (first.status(), other.status()),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    app.wait_for_final_status(880_001).await;
    app.wait_for_final_status(880_003).await;
    let runs = std::fs::read_to_string(app.dir.path().join("runs.log")).unwrap();
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 4, "{runs}");
    for pair in lines.chunks(2) {
        let id = pair[0].strip_prefix("start ").unwrap();
        assert_eq!(pair[1], format!("end {id}"), "runs overlapped:\n{runs}");
    }
}

#[tokio::test]
async fn a_deployment_made_by_github_actions_is_foreign_and_runs_nothing() {
    let mut app = spawn_app().await;
    let response = app
        .post_webhook(
            "deployment",
            &fixture("deployment.created.github-actions.json"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let ack = body_json(response).await;
    assert_ack(&ack, "ignored", "GitHub Actions");
    app.stop().await;
    assert!(app.github_requests().await.is_empty());
    assert!(
        !app.dir.path().join("env.txt").exists(),
        "the deploy command ran"
    );
}

#[tokio::test]
async fn a_deployment_to_another_environment_runs_nothing() {
    let mut app = spawn_app().await;
    let mut staging = fixture_json(DEPLOYMENT);
    staging["deployment"]["environment"] = json!("staging");
    let response = app
        .post_webhook("deployment", staging.to_string().as_bytes())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["outcome"], "ignored");
    app.stop().await;
    assert!(app.github_requests().await.is_empty());
    assert!(
        !app.dir.path().join("env.txt").exists(),
        "the deploy command ran"
    );
}

#[tokio::test]
async fn shutdown_waits_for_the_running_deploy_to_finish_and_report() {
    let mut app = spawn_app_with(|config, dir| {
        deploy_with_script(config, dir, "sleep 1");
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    app.wait_for_github("in_progress", |r| {
        crate::helpers::statuses(r)
            .iter()
            .any(|s| s.state == "in_progress")
    })
    .await;
    app.stop().await;
    assert_eq!(
        states(&app.statuses().await),
        ["queued", "in_progress", "success"]
    );
}
