//! Events with nothing to deploy: answered 2xx with what was done, and no GitHub call.

use reqwest::StatusCode;

use crate::helpers::{body_json, fixture, spawn_app};

#[tokio::test]
async fn a_ping_is_answered_with_its_hook_id() {
    let app = spawn_app().await;
    let response = app.post_webhook("ping", &fixture("ping.json")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "pong: hook 470000001");
}

#[tokio::test]
async fn an_app_hook_ping_without_repository_or_sender_is_answered() {
    let app = spawn_app().await;
    let response = app
        .post_webhook_form("ping", &fixture("ping.app-hook.json"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "pong: hook 470000002");
}

#[tokio::test]
async fn deployment_statuses_are_recorded_with_or_without_an_action() {
    let app = spawn_app().await;
    let cases = [
        ("deployment_status.created.success.json", "is success"),
        ("deployment_status.no-action.json", "is failure"),
    ];
    for (file, state) in cases {
        let response = app.post_webhook("deployment_status", &fixture(file)).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        let body = body_json(response).await;
        assert_eq!(body["outcome"], "recorded");
        assert_eq!(
            body["message"],
            format!("deployment 880001 of acme/widgets to production {state}")
        );
    }
}

#[tokio::test]
async fn other_events_are_ignored_by_name_and_call_nothing() {
    let mut app = spawn_app().await;
    let cases = [
        ("issues", "issues.opened.json"),
        ("security_advisory", "security_advisory.published.json"),
    ];
    for (event, file) in cases {
        let response = app.post_webhook(event, &fixture(file)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        assert_eq!(body["outcome"], "ignored");
        assert_eq!(body["message"], format!("ignored: {event}"));
    }
    app.stop().await;
    assert!(app.github_requests().await.is_empty());
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/healthz", app.url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["status"], "ok");
}
