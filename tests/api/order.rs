//! The order of automatic deploys (issue 26, item 2): an older merge never rolls an
//! environment back — delivered late, posted again after retention forgot it, or reaching
//! the queue after a newer one ran — while a deliberate rollback still runs and the next
//! real merge deploys after it. And a `merged_at` that is not a time is refused, naming
//! the field, instead of ordering every later merge behind it.
//!
//! The real server, with the stateful fake GitHub: each deployment it creates gets the next
//! id, and the test delivers its `deployment` event back, as GitHub would.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use deployhook::config::{Config, EnvironmentConfig};
use deployhook::model::{Environment, Policy, Required};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::checks::{FakeChecks, check_run_event, deployment_status_event, merged_pull_request};
use crate::fake_github::{CreatedDeployment, FakeGitHub};
use crate::helpers::{
    TestApp, WAIT, assert_ack, body_json, deploy_with_script, fixture_json, spawn_app_with,
};

/// When pull request #41 was merged: three minutes before #42.
const OLDER_AT: &str = "2026-03-03T14:02:11Z";
/// When pull request #42 was merged.
const NEWER_AT: &str = "2026-03-03T14:05:40Z";
/// When pull request #43 was merged, after both.
const LATEST_AT: &str = "2026-03-03T14:09:02Z";
const ADMIN_TOKEN: &str = "an-admin-token-long-enough-for-tests";
const HOOK: u64 = 470_000_001;

/// The merge commit of pull request `number`.
fn sha(number: u64) -> String {
    format!("ab{number:038}")
}

fn merge(number: u64, merged_at: &str) -> Vec<u8> {
    merged_pull_request(number, &sha(number), merged_at)
}

/// The server, its deploy command appending each deployed commit to `deployed.log`, and the
/// fake GitHub that numbers the deployments it creates.
async fn recording_app(configure: impl FnOnce(&mut Config)) -> (TestApp, FakeGitHub) {
    let app = spawn_app_with(|config, dir| {
        let log = dir.join("deployed.log");
        deploy_with_script(
            config,
            dir,
            &format!("echo \"$DEPLOYHOOK_SHA\" >> '{}'", log.display()),
        );
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        configure(config);
    })
    .await;
    let fake = FakeGitHub::mount(&app.github).await;
    (app, fake)
}

/// The commits production ran, in order.
fn deployed(app: &TestApp) -> Vec<String> {
    std::fs::read_to_string(app.dir.path().join("deployed.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Posts `body` signed, with a delivery id of its own; the answer's status and body.
async fn post(app: &TestApp, event: &str, body: &[u8]) -> (StatusCode, Value) {
    let delivery = uuid::Uuid::new_v4().to_string();
    let response = app.post_delivery(event, body, &delivery, HOOK).await;
    (response.status(), body_json(response).await)
}

/// GitHub's `deployment` event for a deployment the fake created.
fn deployment_event(created: &CreatedDeployment) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    let deployment = &mut event["deployment"];
    deployment["id"] = json!(created.id);
    deployment["sha"] = json!(created.sha);
    deployment["ref"] = json!(created.sha);
    deployment["environment"] = json!(created.environment);
    deployment["payload"] = created.payload.clone();
    event.to_string().into_bytes()
}

/// Waits until the outbox has sent every creation queued so far, then plays GitHub: each
/// deployment created since `seen` gets its `deployment` event, and the test waits for its
/// final status. The ids delivered are added to `seen`.
async fn deliver_created(app: &TestApp, fake: &FakeGitHub, seen: &mut HashSet<u64>) {
    let deadline = Instant::now() + WAIT;
    while pending_creations(app) > 0 {
        assert!(Instant::now() < deadline, "creations never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for created in fake.created() {
        if seen.insert(created.id) {
            let (status, ack) = post(app, "deployment", &deployment_event(&created)).await;
            assert!(status.is_success(), "{status} {ack}");
            app.wait_for_final_status(created.id).await;
        }
    }
}

fn pending_creations(app: &TestApp) -> i64 {
    app.database()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'create_deployment' AND state = 'pending'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// Merges pull request `number` and plays GitHub until its deploy finished.
async fn merge_and_deploy(
    app: &TestApp,
    fake: &FakeGitHub,
    seen: &mut HashSet<u64>,
    body: &[u8],
) -> Value {
    let (status, ack) = post(app, "pull_request", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    deliver_created(app, fake, seen).await;
    ack
}

/// Polls `done` until it holds; panics naming `what` after [`WAIT`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const OLDER_THAN_42: &str = "merge of #41 (merged 14:02) is older than #42 (merged 14:05), \
                             which production already runs or has queued; not deployed";

/// (a) Ungated, `latest`: #42 deployed; the delivery of #41, merged earlier, arrives only
/// now. It is answered 2xx — not the sender's error — saying why, and nothing is deployed.
#[tokio::test]
async fn an_older_merge_delivered_late_does_not_roll_production_back() {
    let (mut app, fake) = recording_app(|_| {}).await;
    let mut seen = HashSet::new();
    merge_and_deploy(&app, &fake, &mut seen, &merge(42, NEWER_AT)).await;

    let (status, ack) = post(&app, "pull_request", &merge(41, OLDER_AT)).await;
    deliver_created(&app, &fake, &mut seen).await;
    assert_eq!(
        deployed(&app),
        [sha(42)],
        "production was rolled back to #41; the merge was answered {status} {ack}"
    );
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_ack(&ack, "skipped", OLDER_THAN_42);
    // The same merge delivered again gets the same answer.
    let (_, again) = post(&app, "pull_request", &merge(41, OLDER_AT)).await;
    assert_ack(&again, "skipped", OLDER_THAN_42);
    let recorded: String = app
        .database()
        .query_row(
            "SELECT outcome FROM deliveries WHERE event = 'pull_request' ORDER BY id DESC",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(recorded, "skipped");
    app.stop().await;
    assert_eq!(fake.created_for(41), 0);
}

/// (b) Retention forgets #41's delivery and merge; its signed delivery, copied from GitHub's
/// "Recent Deliveries", is posted again with a new delivery id. Not deployed: the mark
/// outlives retention. The newest merge, posted again, is what it was: already asked for.
#[tokio::test]
async fn a_merge_posted_again_after_retention_forgot_it_is_not_deployed_again() {
    let (mut app, fake) =
        recording_app(|config| config.retention.deliveries = Duration::from_secs(1)).await;
    let mut seen = HashSet::new();
    let older = merge(41, OLDER_AT);
    let newer = merge(42, NEWER_AT);
    merge_and_deploy(&app, &fake, &mut seen, &older).await;
    merge_and_deploy(&app, &fake, &mut seen, &newer).await;
    eventually("retention to prune both merges' deliveries", || {
        let conn = app.database();
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        count("SELECT COUNT(*) FROM deliveries WHERE event = 'pull_request'") == 0
            && count("SELECT COUNT(*) FROM merges WHERE pull_request = 41") == 0
    })
    .await;

    let (status, ack) = post(&app, "pull_request", &older).await;
    deliver_created(&app, &fake, &mut seen).await;
    assert_eq!(
        deployed(&app),
        [sha(41), sha(42)],
        "#41 posted again was deployed over #42; answered {status} {ack}"
    );
    assert_ack(&ack, "skipped", OLDER_THAN_42);
    let (_, ack) = post(&app, "pull_request", &newer).await;
    deliver_created(&app, &fake, &mut seen).await;
    assert_eq!(deployed(&app), [sha(41), sha(42)], "{ack}");
    assert_ack(
        &ack,
        "ignored",
        "pull request #42 of acme/widgets already asked for its deployment",
    );
    app.stop().await;
    assert_eq!((fake.created_for(41), fake.created_for(42)), (1, 1));
}

/// Both merges asked for their deployments; #42's `deployment` event came first and ran,
/// #41's comes late (a failed delivery redelivered from GitHub's page). It is not run: its
/// deployment ends `inactive`, saying why.
#[tokio::test]
async fn the_deployment_of_an_older_merge_reaching_the_queue_late_is_not_run() {
    let (mut app, fake) = recording_app(|_| {}).await;
    for (number, at) in [(41, OLDER_AT), (42, NEWER_AT)] {
        let (status, ack) = post(&app, "pull_request", &merge(number, at)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    }
    eventually("both deployments created", || fake.created().len() == 2).await;
    let created = fake.created();
    let (of_41, of_42) = (&created[0], &created[1]);
    assert_eq!(
        (of_41.pull_request, of_42.pull_request),
        (Some(41), Some(42))
    );
    post(&app, "deployment", &deployment_event(of_42)).await;
    app.wait_for_final_status(of_42.id).await;

    let (status, ack) = post(&app, "deployment", &deployment_event(of_41)).await;
    let finals = app.wait_for_final_status(of_41.id).await;
    assert_eq!(deployed(&app), [sha(42)], "answered {status} {ack}");
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_ack(&ack, "skipped", &format!("deployment {} not run", of_41.id));
    assert_ack(
        &ack,
        "skipped",
        "merge of #41 (merged 14:02) is older than #42 (merged 14:05)",
    );
    let last = finals.last().unwrap();
    assert_eq!(last.state, "inactive", "{finals:?}");
    assert!(last.description.contains("older than #42"), "{finals:?}");
    app.stop().await;
}

/// A `merged_at` that is not a time is refused (400, naming the field). On the code before,
/// it was accepted and, compared as text, sorted after every real time: in a gated
/// environment each later real merge was superseded by it.
#[tokio::test]
async fn a_merged_at_that_is_not_a_time_is_refused_and_later_merges_still_deploy() {
    let (mut app, fake) = recording_app(|config| {
        config.environments[0].checks = Some(Required::Named(vec!["test".into()]));
    })
    .await;
    FakeChecks::mount(&app.github).await;
    let (garbage_status, garbage_ack) = post(&app, "pull_request", &merge(40, "garbage")).await;
    let (_, real_ack) = post(&app, "pull_request", &merge(42, NEWER_AT)).await;
    post(
        &app,
        "check_run",
        &check_run_event(&sha(42), "test", 4001, Some("success")),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while fake.created_for(42) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.created_for(42),
        1,
        "the real merge did not deploy: {real_ack}; the garbage one was answered \
         {garbage_status} {garbage_ack}"
    );
    assert_eq!(garbage_status, StatusCode::BAD_REQUEST, "{garbage_ack}");
    let error = garbage_ack["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pull_request.merged_at: \"garbage\" is not a time"),
        "{error}"
    );
    app.stop().await;
    assert_eq!(fake.created_for(40), 0);
}

/// Merge times are compared as times: `15:00+02:00` is 13:00 UTC, before #42's 14:05, though
/// as text it sorts after it.
#[tokio::test]
async fn merge_times_with_offsets_are_compared_as_times() {
    let (mut app, fake) = recording_app(|_| {}).await;
    let mut seen = HashSet::new();
    merge_and_deploy(&app, &fake, &mut seen, &merge(42, NEWER_AT)).await;
    let (status, ack) = post(
        &app,
        "pull_request",
        &merge(41, "2026-03-03T15:00:00+02:00"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_ack(&ack, "skipped", "is older than #42");
    app.stop().await;
    assert_eq!(fake.created_for(41), 0);
}

/// A deliberate rollback still runs — back to #41, older than what production ran — and
/// leaves the mark where it was: #41's merge posted again is still skipped, and once
/// production is unlocked the next real merge deploys.
#[tokio::test]
async fn a_deliberate_rollback_still_runs_and_the_next_merge_deploys_after_it() {
    let (mut app, fake) = recording_app(|_| {}).await;
    let mut seen = HashSet::new();
    merge_and_deploy(&app, &fake, &mut seen, &merge(41, OLDER_AT)).await;
    merge_and_deploy(&app, &fake, &mut seen, &merge(42, NEWER_AT)).await;
    let admin = |method: reqwest::Method, path: &str| {
        app.http
            .request(method, format!("{}{path}", app.url))
            .bearer_auth(ADMIN_TOKEN)
    };
    let rollback = admin(reqwest::Method::POST, "/api/rollback")
        .json(&json!({"repository": "acme/widgets", "environment": "production", "by": "maria"}))
        .send()
        .await
        .unwrap();
    assert!(rollback.status().is_success(), "{}", rollback.status());
    deliver_created(&app, &fake, &mut seen).await;
    assert_eq!(deployed(&app), [sha(41), sha(42), sha(41)]);

    let (_, ack) = post(&app, "pull_request", &merge(41, OLDER_AT)).await;
    assert_ack(&ack, "skipped", OLDER_THAN_42);
    let unlocked = admin(reqwest::Method::DELETE, "/api/locks/production")
        .send()
        .await
        .unwrap();
    assert!(unlocked.status().is_success(), "{}", unlocked.status());
    merge_and_deploy(&app, &fake, &mut seen, &merge(43, LATEST_AT)).await;
    assert_eq!(deployed(&app), [sha(41), sha(42), sha(41), sha(43)]);
    app.stop().await;
}

/// Promotion carries the merge it deploys: production (under `queue`, which runs every
/// promotion) promoted #42 from staging; a success of #41, merged earlier, reported late
/// by staging is not promoted over it.
#[tokio::test]
async fn a_late_staging_success_of_an_older_merge_is_not_promoted_over_a_newer_one() {
    let (mut app, fake) = recording_app(|config| {
        config.environments[0].name = Environment::parse("staging").unwrap();
        let mut production = EnvironmentConfig::new(
            Environment::parse("production").unwrap(),
            config.environments[0].command.clone(),
        );
        production.promote_from = Some(Environment::parse("staging").unwrap());
        production.soak = Duration::from_millis(200);
        production.policy = Policy::Queue;
        config.environments.push(production);
    })
    .await;
    let success = |deployment: u64, number: u64, merged_at: &str| {
        let mut event: Value = serde_json::from_slice(&deployment_status_event(
            deployment,
            "staging",
            &sha(number),
            "success",
        ))
        .unwrap();
        event["deployment"]["payload"]["pull_request"] = json!(number);
        event["deployment"]["payload"]["merged_at"] = json!(merged_at);
        event.to_string().into_bytes()
    };
    let (status, ack) = post(&app, "deployment_status", &success(880_102, 42, NEWER_AT)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ack}");
    eventually("#42 promoted to production", || fake.created_for(42) == 1).await;

    let (status, ack) = post(&app, "deployment_status", &success(880_103, 41, OLDER_AT)).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while fake.created_for(41) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.created_for(41),
        0,
        "#41 was promoted over #42; answered {status} {ack}"
    );
    assert_ack(
        &ack,
        "skipped",
        "merge of #41 (merged 14:02) is older than #42 (merged 14:05), which production \
         already runs or has queued; not promoted",
    );
    assert_eq!(fake.created()[0].payload["merged_at"], NEWER_AT);
    app.stop().await;
}
