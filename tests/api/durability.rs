//! What the database guarantees, seen from outside: deliveries recorded before they are
//! acknowledged, redeliveries and repeated deployments doing nothing, the two queue
//! policies, and GitHub calls that survive an outage and keep their order.

use std::time::Duration;

use deployhook::model::Policy;
use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_github::FakeGitHub;
use crate::helpers::{
    PostedStatus, TestApp, assert_ack, body_json, created_deployments, deploy_with_script, fixture,
    fixture_json, is_legal_order, send_signed, spawn_app_with, statuses,
};

const MERGED: &str = "pull_request.closed.merged.json";
const DEPLOYMENT: &str = "deployment.created.json";

fn delivery_count(app: &TestApp, delivery: &str) -> i64 {
    app.database()
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE delivery_id = ?1",
            [delivery],
            |row| row.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn an_acknowledged_delivery_is_in_the_database_when_the_answer_arrives() {
    let app = spawn_app_with(|_, _| {}).await;
    let response = app
        .post_delivery("pull_request", &fixture(MERGED), "d-1", 470_000_001)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (event, action, repository, outcome): (String, String, String, String) = app
        .database()
        .query_row(
            "SELECT event, action, repository, outcome FROM deliveries
             WHERE hook_id = 470000001 AND delivery_id = 'd-1'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (
            event.as_str(),
            action.as_str(),
            repository.as_str(),
            outcome.as_str()
        ),
        ("pull_request", "closed", "acme/widgets", "accepted")
    );
}

#[tokio::test]
async fn no_answer_goes_out_while_the_delivery_cannot_be_written() {
    let app = spawn_app_with(|_, _| {}).await;
    // Another connection holds the database's write lock, as `sqlite3` or a backup could.
    let blocker = rusqlite::Connection::open(app.dir.path().join("deployhook.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (http, url) = (app.http.clone(), app.url.clone());
    let pending = tokio::spawn(async move {
        send_signed(&http, &url, "pull_request", &fixture(MERGED), "held", 1).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "answered before the delivery was written"
    );
    blocker.execute_batch("COMMIT").unwrap();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(delivery_count(&app, "held"), 1);
}

#[tokio::test]
async fn a_second_server_on_the_same_database_refuses_to_start() {
    let app = spawn_app_with(|_, _| {}).await;
    let path = app.dir.path().join("deployhook.db");
    let err = deployhook::store::Store::open(path.to_str().unwrap(), deployhook::model::Sync::Full)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("another deployhook is using the database"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_redelivery_from_the_same_hook_is_a_duplicate_and_deploys_nothing_more() {
    let mut app = spawn_app_with(|_, _| {}).await;
    let first = app
        .post_delivery("pull_request", &fixture(MERGED), "d-2", 470_000_001)
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let again = app
        .post_delivery("pull_request", &fixture(MERGED), "d-2", 470_000_001)
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let body = body_json(again).await;
    assert_ack(&body, "duplicate", "duplicate delivery d-2");
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
    assert_eq!(delivery_count(&app, "d-2"), 1);
}

#[tokio::test]
async fn the_same_delivery_id_from_two_hooks_is_processed_for_both() {
    let mut app = spawn_app_with(|_, _| {}).await;
    let repo_hook = app
        .post_delivery("pull_request", &fixture(MERGED), "shared", 470_000_001)
        .await;
    let org_hook = app
        .post_delivery(
            "pull_request",
            &fixture("pull_request.closed.merged-fork.json"),
            "shared",
            470_000_002,
        )
        .await;
    assert_eq!(repo_hook.status(), StatusCode::ACCEPTED);
    assert_eq!(org_hook.status(), StatusCode::ACCEPTED);
    app.stop().await;
    let requests = app.github_requests().await;
    let refs: Vec<String> = created_deployments(&requests)
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["ref"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert_eq!(delivery_count(&app, "shared"), 2);
}

#[tokio::test]
async fn a_merge_delivered_through_two_hooks_asks_for_one_deployment() {
    let mut app = spawn_app_with(|_, _| {}).await;
    app.post_delivery(
        "pull_request",
        &fixture(MERGED),
        "repo-hook-guid",
        470_000_001,
    )
    .await;
    let second = app
        .post_delivery(
            "pull_request",
            &fixture(MERGED),
            "org-hook-guid",
            470_000_002,
        )
        .await;
    let body = body_json(second).await;
    assert_ack(&body, "ignored", "#42 of acme/widgets already asked");
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

#[tokio::test]
async fn a_deployment_brought_by_two_deliveries_runs_once() {
    let app = spawn_app_with(|config, dir| {
        let runs = dir.join("runs.log");
        deploy_with_script(config, dir, &format!("echo ran >> '{}'", runs.display()));
    })
    .await;
    let first = app
        .post_delivery("deployment", &fixture(DEPLOYMENT), "a", 1)
        .await;
    let second = app
        .post_delivery("deployment", &fixture(DEPLOYMENT), "b", 2)
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let body = body_json(second).await;
    assert_eq!(body["outcome"], "ignored");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("880001 was already received")
    );
    let statuses = app.wait_for_final_status(880_001).await;
    let states: Vec<&str> = statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["queued", "in_progress", "success"]);
    let runs = std::fs::read_to_string(app.dir.path().join("runs.log")).unwrap();
    assert_eq!(
        runs.lines().count(),
        1,
        "the command ran {} times",
        runs.lines().count()
    );
}

/// An app whose deploy command logs each run to `runs.log`; deployment 1 waits for a `gate`
/// file before it finishes, so the test decides when the first deploy ends.
async fn gated_app(policy: Policy) -> TestApp {
    spawn_app_with(move |config, dir| {
        let body = format!(
            "if [ \"$DEPLOYHOOK_DEPLOYMENT_ID\" = 1 ]; then\n\
               while [ ! -f '{gate}' ]; do sleep 0.02; done\n\
             fi\n\
             echo \"$DEPLOYHOOK_DEPLOYMENT_ID\" >> '{runs}'",
            gate = dir.join("gate").display(),
            runs = dir.join("runs.log").display(),
        );
        deploy_with_script(config, dir, &body);
        config.environments[0].policy = policy;
    })
    .await
}

/// Deploys 1; while it runs, 2, 3 and 4 arrive; then 1 is let finish. Returns each
/// deployment's statuses and the order the command ran in.
async fn four_deployments_while_the_first_runs(
    app: &TestApp,
) -> (Vec<Vec<PostedStatus>>, Vec<u64>) {
    let deployment = |id: u64| {
        let mut event = fixture_json(DEPLOYMENT);
        event["deployment"]["id"] = json!(id);
        event.to_string().into_bytes()
    };
    app.post_webhook("deployment", &deployment(1)).await;
    app.wait_for_github("deployment 1 in progress", |r| {
        statuses(r)
            .iter()
            .any(|s| s.deployment == 1 && s.state == "in_progress")
    })
    .await;
    for id in 2..=4 {
        let response = app.post_webhook("deployment", &deployment(id)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    std::fs::write(app.dir.path().join("gate"), "").unwrap();
    let mut all = Vec::new();
    for id in 1..=4 {
        all.push(app.wait_for_final_status(id).await);
    }
    let runs = std::fs::read_to_string(app.dir.path().join("runs.log")).unwrap();
    (all, runs.lines().map(|l| l.parse().unwrap()).collect())
}

fn states(statuses: &[PostedStatus]) -> Vec<&str> {
    statuses.iter().map(|s| s.state.as_str()).collect()
}

#[tokio::test]
async fn under_latest_only_the_newest_waiting_deployment_runs_and_the_others_become_inactive() {
    let app = gated_app(Policy::Latest).await;
    let (statuses, runs) = four_deployments_while_the_first_runs(&app).await;
    assert_eq!(runs, [1, 4]);
    assert_eq!(states(&statuses[0]), ["queued", "in_progress", "success"]);
    for skipped in &statuses[1..3] {
        assert_eq!(states(skipped), ["queued", "inactive"]);
        assert_eq!(
            skipped[1].description,
            "superseded by deployment 4; not deployed"
        );
    }
    assert_eq!(states(&statuses[3]), ["queued", "in_progress", "success"]);
}

#[tokio::test]
async fn under_queue_every_waiting_deployment_runs_in_order() {
    let app = gated_app(Policy::Queue).await;
    let (statuses, runs) = four_deployments_while_the_first_runs(&app).await;
    assert_eq!(runs, [1, 2, 3, 4]);
    for each in &statuses {
        assert_eq!(states(each), ["queued", "in_progress", "success"]);
    }
}

#[tokio::test]
async fn a_deployment_creation_survives_three_502s_and_is_created_once() {
    let mut app = spawn_app_with(|_, _| {}).await;
    app.github.reset().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/deployments"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&app.github)
        .await;
    let fake = FakeGitHub::mount(&app.github).await;
    let response = app.post_webhook("pull_request", &fixture(MERGED)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.wait_for_github("the deployment", |_| fake.created_for(42) == 1)
        .await;
    app.stop().await;
    assert_eq!(fake.created_for(42), 1);
    let requests = app.github_requests().await;
    assert_eq!(
        created_deployments(&requests).len(),
        4,
        "three 502s, then the 201"
    );
}

#[tokio::test]
async fn statuses_that_fail_while_github_is_down_arrive_in_order_once_it_is_back() {
    let app = spawn_app_with(|_, _| {}).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/statuses$"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(4)
        .with_priority(1)
        .mount(&app.github)
        .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let all = app.wait_for_final_status(880_001).await;
    let all_states = states(&all);
    assert!(is_legal_order(&all_states), "{all_states:?}");
    // The first four posts met the outage; the ones after it are what GitHub kept.
    assert_eq!(all_states[4..], ["queued", "in_progress", "success"]);
}

#[tokio::test]
async fn a_call_github_refuses_is_given_up_and_the_next_statuses_still_go() {
    let app = spawn_app_with(|_, _| {}).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/statuses$"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"message": "Validation Failed"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.github)
        .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let all = app.wait_for_final_status(880_001).await;
    assert_eq!(states(&all), ["queued", "in_progress", "success"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let failed: i64 = app
        .database()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        failed, 1,
        "the refused `queued` post is kept, marked failed"
    );
}
