//! The GitHub client against a wiremock GitHub: headers, and how 201, 202, 409, 422 and
//! 5xx answers are handled.

use std::time::Duration;

use deployhook::config::GitHubConfig;
use deployhook::github::{CreatedDeployment, GitHubClient, GitHubError};
use deployhook::model::{
    CommitSha, DeploymentId, DeploymentRequest, DeploymentState, Environment, RepoName,
    StatusRequest,
};
use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TOKEN, created_deployments, fixture, spawn_app_with};

const DEPLOYMENTS: &str = "/repos/acme/widgets/deployments";
const SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";

fn client(github: &MockServer) -> GitHubClient {
    client_for(github.uri())
}

fn client_for(api_url: String) -> GitHubClient {
    GitHubClient::new(&GitHubConfig::with_token(api_url, TOKEN)).unwrap()
}

fn repo() -> RepoName {
    RepoName::parse("acme/widgets").unwrap()
}

fn request() -> DeploymentRequest {
    DeploymentRequest {
        git_ref: CommitSha::parse(SHA).unwrap(),
        task: "deploy".into(),
        auto_merge: false,
        required_contexts: vec![],
        environment: Environment::parse("production").unwrap(),
        payload: json!({"environment": "production"}),
        description: "Deploy PR #42".into(),
        production_environment: None,
        transient_environment: None,
    }
}

async fn answer(github: &MockServer, status: u16, body: serde_json::Value) {
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(github)
        .await;
}

#[tokio::test]
async fn every_request_carries_githubs_headers_and_the_token() {
    let github = MockServer::start().await;
    answer(&github, 201, json!({"id": 880001})).await;
    client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap();
    let requests = github.received_requests().await.unwrap();
    let headers = &requests[0].headers;
    assert_eq!(headers["authorization"], format!("Bearer {TOKEN}").as_str());
    assert_eq!(headers["accept"], "application/vnd.github+json");
    assert_eq!(headers["x-github-api-version"], "2022-11-28");
    assert_eq!(
        headers["user-agent"],
        concat!("deployhook/", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn a_201_returns_the_new_deployments_id() {
    let github = MockServer::start().await;
    answer(&github, 201, json!({"id": 880001, "sha": SHA})).await;
    let created = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap();
    assert_eq!(
        created,
        CreatedDeployment::Created(DeploymentId::from(880_001))
    );
}

#[tokio::test]
async fn a_202_means_github_merged_instead_and_is_not_an_error() {
    let github = MockServer::start().await;
    answer(
        &github,
        202,
        json!({"message": "Auto-merged main into topic-branch on deployment."}),
    )
    .await;
    let created = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap();
    assert_eq!(
        created,
        CreatedDeployment::MergedInstead(
            "Auto-merged main into topic-branch on deployment.".into()
        )
    );
    assert_eq!(github.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_409_is_an_error_carrying_githubs_message_that_a_retry_cannot_fix() {
    let github = MockServer::start().await;
    answer(
        &github,
        409,
        json!({"message": "Conflict: Commit status checks failed for main."}),
    )
    .await;
    let err = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap_err();
    let GitHubError::Status {
        status, message, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*status, StatusCode::CONFLICT);
    assert_eq!(message, "Conflict: Commit status checks failed for main.");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_422_is_an_error_carrying_githubs_message_and_details() {
    let github = MockServer::start().await;
    let body = json!({
        "message": "Validation Failed",
        "errors": [{"resource": "Deployment", "code": "custom", "message": "Required contexts failed"}],
    });
    answer(&github, 422, body).await;
    let err = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("GitHub answered 422 Unprocessable Entity: Validation Failed"),
        "{text}"
    );
    assert!(text.contains("Required contexts failed"), "{text}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retryable_and_say_how_long_to_wait() {
    let github = MockServer::start().await;
    answer(&github, 503, json!({"message": "Service Unavailable"})).await;
    let err = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap_err();
    assert!(err.is_retryable() && err.retry_after().is_none(), "{err:?}");

    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit."})),
        )
        .mount(&github)
        .await;
    let err = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_403_without_rate_limit_headers_is_not_retryable() {
    let github = MockServer::start().await;
    answer(
        &github,
        403,
        json!({"message": "Resource not accessible by integration"}),
    )
    .await;
    let err = client(&github)
        .create_deployment(&repo(), &request())
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn find_deployment_finds_the_one_made_for_the_pull_request() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENTS))
        .and(wiremock::matchers::query_param("sha", SHA))
        .and(wiremock::matchers::query_param("environment", "production"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 880009, "payload": {"pull_request": 41}},
            {"id": 880010, "payload": {"pull_request": 42}},
        ])))
        .mount(&github)
        .await;
    let client = client(&github);
    let request = |pull_request: u64| DeploymentRequest {
        git_ref: CommitSha::parse(SHA).unwrap(),
        task: "deploy".into(),
        auto_merge: false,
        required_contexts: vec![],
        environment: Environment::parse("production").unwrap(),
        payload: json!({"pull_request": pull_request, "deploy_user": "octo-dev"}),
        description: "d".into(),
        production_environment: None,
        transient_environment: None,
    };
    let found = client.find_deployment(&repo(), &request(42)).await.unwrap();
    assert_eq!(found, Some(DeploymentId::from(880_010)));
    let none = client.find_deployment(&repo(), &request(43)).await.unwrap();
    assert_eq!(none, None);
}

#[tokio::test]
async fn an_unreachable_github_is_a_retryable_transport_error() {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = client_for(format!("http://{}", listener.local_addr().unwrap()));
    drop(listener);
    let err = client
        .create_deployment(&repo(), &request())
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Transport(_)), "{err:?}");
    assert!(err.to_string().starts_with("could not reach GitHub"));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_status_is_posted_to_its_deployment_with_state_and_description() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/deployments/880001/statuses"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&github)
        .await;
    let status = StatusRequest {
        state: DeploymentState::InProgress,
        description: "running deploy.sh".into(),
        log_url: None,
        environment_url: None,
    };
    client(&github)
        .create_deployment_status(&repo(), DeploymentId::from(880_001), &status)
        .await
        .unwrap();
    let requests = github.received_requests().await.unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"state": "in_progress", "description": "running deploy.sh"})
    );
}

#[tokio::test]
async fn a_merged_pull_request_survives_a_502_and_creates_one_deployment() {
    let mut app = spawn_app_with(|_, _| {}).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.github)
        .await;
    let response = app
        .post_webhook("pull_request", &fixture("pull_request.closed.merged.json"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.wait_for_github("the retry", |r| created_deployments(r).len() == 2)
        .await;
    // Stopping now also proves nothing more was on its way.
    app.stop().await;
    let requests = app.github_requests().await;
    assert_eq!(
        created_deployments(&requests).len(),
        2,
        "one 502, then one 201"
    );
}

#[tokio::test]
async fn a_conflict_from_github_leaves_the_server_healthy_and_is_not_retried() {
    let mut app = spawn_app_with(|_, _| {}).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(json!({"message": "Conflict merging main"})),
        )
        .with_priority(1)
        .mount(&app.github)
        .await;
    app.post_webhook("pull_request", &fixture("pull_request.closed.merged.json"))
        .await;
    app.wait_for_github("the create request", |r| !r.is_empty())
        .await;
    let health = reqwest::get(format!("{}/healthz", app.url)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

/// A commit's checks are read page after page: 101 check runs take two pages, and the
/// suites and statuses are read too.
#[tokio::test]
async fn reading_a_commits_checks_follows_every_page() {
    let github = MockServer::start().await;
    let run = |id: u64| {
        json!({"id": id, "name": format!("job-{id}"), "status": "completed",
               "conclusion": "success", "html_url": format!("https://ci.example/{id}"),
               "app": {"id": 15368, "slug": "github-actions"}, "check_suite": {"id": 9}})
    };
    let base = format!("/repos/acme/widgets/commits/{SHA}");
    for (page, ids) in [("1", 1..=100_u64), ("2", 101..=101)] {
        Mock::given(method("GET"))
            .and(path(format!("{base}/check-runs")))
            .and(wiremock::matchers::query_param("page", page))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"total_count": 101, "check_runs": ids.map(run).collect::<Vec<_>>()}),
            ))
            .mount(&github)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("{base}/check-suites")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"total_count": 1,
            "check_suites": [{"id": 9, "status": "in_progress", "conclusion": null,
                              "latest_check_runs_count": 101,
                              "app": {"id": 15368, "name": "CI"}}]})),
        )
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/status")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"state": "success",
            "total_count": 1, "statuses": [{"id": 5, "context": "lint", "state": "success",
                                            "target_url": ""}]})),
        )
        .mount(&github)
        .await;
    let results = client(&github).read_checks(&repo(), SHA).await.unwrap();
    assert_eq!(results.len(), 1 + 101 + 1, "a suite, 101 runs, a status");
    assert_eq!(results[0].name, "suite of CI");
    assert!(results.iter().any(|r| r.name == "job-101"));
    // Each run and suite names its source as its event would: app and check suite.
    for result in &results[..102] {
        assert_eq!(result.source.as_str(), "app 15368 suite 9", "{result:?}");
    }
    let lint = results.iter().find(|r| r.name == "lint").unwrap();
    assert_eq!(lint.url, None, "an empty target_url is no link");
    assert_eq!(lint.source.as_str(), "", "a status has no source");
}
