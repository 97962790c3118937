//! `start_deployment`: merged pull requests into the deploy branch create exactly one
//! deployment, on the base repository, for the merge commit; everything else creates none.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    assert_ack, body_json, created_deployments, fixture, fixture_json, spawn_app, summary,
};

const MERGE_SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
const FORK_MERGE_SHA: &str = "7a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";

async fn assert_one_deployment_created(json: bool) {
    let mut app = spawn_app().await;
    let body = fixture("pull_request.closed.merged.json");
    let response = if json {
        app.post_webhook("pull_request", &body).await
    } else {
        app.post_webhook_form("pull_request", &body).await
    };
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let ack = body_json(response).await;
    assert_ack(&ack, "accepted", "pull request #42");

    app.stop().await;
    let requests = app.github_requests().await;
    let created = created_deployments(&requests);
    assert_eq!(created.len(), 1, "{:?}", summary(&requests));
    assert_eq!(created[0].url.path(), "/repos/acme/widgets/deployments");
    let sent: Value = serde_json::from_slice(&created[0].body).unwrap();
    assert_eq!(
        sent,
        json!({
            "ref": MERGE_SHA,
            "task": "deploy",
            "auto_merge": false,
            "required_contexts": [],
            "environment": "production",
            "payload": {"environment": "production", "deploy_user": "octo-dev", "pull_request": 42,
                        "merged_at": "2026-03-03T14:02:11Z"},
            "description": "Deploy PR #42: Make widgets 3x faster",
        })
    );
}

#[tokio::test]
async fn a_merged_pull_request_sent_as_json_creates_exactly_one_deployment() {
    assert_one_deployment_created(true).await;
}

#[tokio::test]
async fn a_merged_pull_request_sent_form_encoded_creates_exactly_one_deployment() {
    assert_one_deployment_created(false).await;
}

#[tokio::test]
async fn a_merged_pull_request_from_a_fork_deploys_the_base_repository() {
    let mut app = spawn_app().await;
    let response = app
        .post_webhook(
            "pull_request",
            &fixture("pull_request.closed.merged-fork.json"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.stop().await;
    let requests = app.github_requests().await;
    let created = created_deployments(&requests);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].url.path(), "/repos/acme/widgets/deployments");
    let sent: Value = serde_json::from_slice(&created[0].body).unwrap();
    assert_eq!(sent["ref"], FORK_MERGE_SHA);
    assert_eq!(sent["payload"]["deploy_user"], "outside-contrib");
}

#[tokio::test]
async fn the_configured_branch_environment_and_contexts_are_used() {
    let mut app = crate::helpers::spawn_app_with(|config, _| {
        config.environments[0].branch = Some("release/1.x".into());
        config.environments[0].name = deployhook::model::Environment::parse("staging").unwrap();
        config.environments[0].required_contexts = vec!["ci/build".into()];
    })
    .await;
    let mut event = fixture_json("pull_request.closed.merged.json");
    event["pull_request"]["base"]["ref"] = json!("release/1.x");
    let response = app
        .post_webhook("pull_request", event.to_string().as_bytes())
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.stop().await;
    let requests = app.github_requests().await;
    let sent: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    assert_eq!(sent["environment"], "staging");
    assert_eq!(sent["payload"]["environment"], "staging");
    assert_eq!(sent["required_contexts"], json!(["ci/build"]));
}

#[tokio::test]
async fn unmerged_opened_and_other_branch_pull_requests_create_nothing_and_say_why() {
    let mut app = spawn_app().await;
    let mut other_base = fixture_json("pull_request.closed.merged.json");
    other_base["pull_request"]["base"]["ref"] = json!("release/1.x");
    let cases = [
        (
            fixture("pull_request.closed.unmerged.json"),
            "#44 was closed without merging",
        ),
        (fixture("pull_request.opened.json"), "#45 was opened"),
        (
            other_base.to_string().into_bytes(),
            "production deploys merges into main, not release/1.x",
        ),
    ];
    for (body, why) in cases {
        let response = app.post_webhook("pull_request", &body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let ack = body_json(response).await;
        assert_ack(&ack, "ignored", why);
    }
    app.stop().await;
    assert!(app.github_requests().await.is_empty());
}
