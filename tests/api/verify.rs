//! Verification after a deploy, against the real server: an HTTP check (another wiremock
//! server) that holds, fails, flaps, times out, or fails and rolls back through the same
//! rollback as an operator's (its deployment, lock and notification); a restart during
//! verification resumes it and reports once.

use std::path::Path;
use std::time::Duration;

use deployhook::config::verify::{OnVerifyFailure, VerifyCheck, VerifyConfig};
use deployhook::config::{Config, NotifyConfig, NotifyKind};
use deployhook::web::Application;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    TestApp, WAIT, created_deployments, fixture_json, is_legal_order, mount_github_defaults,
    open_database, spawn_app_with, statuses, test_config, write_script,
};

const ADMIN_TOKEN: &str = "admin-token-for-verify-tests-0123";
const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A service whose `/health` answers `status` to every check.
async fn service(status: u16) -> MockServer {
    let server = MockServer::start().await;
    answer(&server, status).await;
    server
}

async fn answer(server: &MockServer, status: u16) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(status).set_body_string("ok"))
        .mount(server)
        .await;
}

/// Verification of `/health` on `service`: every 100 ms, held for `hold_ms`, within
/// `timeout_ms`.
fn verify(
    service: &MockServer,
    hold_ms: u64,
    timeout_ms: u64,
    on: OnVerifyFailure,
) -> VerifyConfig {
    VerifyConfig {
        check: VerifyCheck::Http {
            url: format!("{}/health", service.uri()).parse().unwrap(),
            expect_status: 200,
            body_contains: None,
        },
        interval: Duration::from_millis(100),
        hold_for: Duration::from_millis(hold_ms),
        timeout: Duration::from_millis(timeout_ms),
        on_failure: on,
    }
}

fn configure(config: &mut Config, verification: VerifyConfig) {
    config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
    config.environments[0].verify = Some(verification);
}

fn deployment(id: u64, sha: &str) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    event.to_string().into_bytes()
}

fn states(requests: &[Request], deployment: u64) -> Vec<(String, String)> {
    statuses(requests)
        .into_iter()
        .filter(|s| s.deployment == deployment)
        .map(|s| (s.state, s.description))
        .collect()
}

/// The lines of `deployment`'s log, as stored.
fn log_lines(app: &TestApp, deployment: u64) -> Vec<String> {
    let db = app.database();
    let mut read = db
        .prepare("SELECT line FROM deploy_logs WHERE deployment_id = ?1 ORDER BY seq")
        .unwrap();
    read.query_map([deployment as i64], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn deployment_api(url: &str, id: u64) -> Value {
    reqwest::Client::new()
        .get(format!("{url}/api/deployments/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until GitHub was told `deployment` is verifying.
async fn wait_until_verifying(app: &TestApp, deployment: u64) {
    app.wait_for_github("the verifying status", |r| {
        states(r, deployment)
            .iter()
            .any(|(s, d)| s == "in_progress" && d.starts_with("verifying: "))
    })
    .await;
}

/// A check that passes: `in_progress` (deploying), `in_progress` (verifying: what), then
/// `success` only after the check held; meanwhile the API and the log say so.
#[tokio::test]
async fn a_verification_that_holds_reports_success_after_the_verifying_status() {
    let health = service(200).await;
    let check = verify(&health, 1000, 5000, OnVerifyFailure::Fail);
    let mut app = spawn_app_with(|config, _| configure(config, check)).await;
    app.post_webhook("deployment", &deployment(880_001, A))
        .await;
    wait_until_verifying(&app, 880_001).await;
    // The next deploy waits behind the verifying one.
    app.post_webhook("deployment", &deployment(880_002, B))
        .await;
    let during = deployment_api(&app.url, 880_001).await;
    let next = deployment_api(&app.url, 880_002).await;
    let final_seen = statuses(&app.github_requests().await)
        .iter()
        .any(|s| s.deployment == 880_001 && s.state == "success");
    if !final_seen {
        assert_eq!(during["deployment"]["state"], "verifying", "{during}");
        assert_eq!(next["deployment"]["state"], "queued", "{next}");
        let reason = next["deployment"]["waiting"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("behind deployment 880001, verifying since"),
            "{reason}"
        );
    }
    let told = app.wait_for_final_status(880_001).await;
    let told: Vec<(&str, &str)> = told
        .iter()
        .map(|s| (s.state.as_str(), s.description.as_str()))
        .collect();
    assert_eq!(told.len(), 4, "{told:?}");
    assert_eq!(told[0].0, "queued");
    assert_eq!(told[1].0, "in_progress");
    assert!(told[1].1.starts_with("running "), "{told:?}");
    assert_eq!(
        told[2],
        (
            "in_progress",
            format!("verifying: GET {}/health", health.uri()).as_str()
        )
    );
    assert_eq!(told[3].0, "success");
    assert!(told[3].1.contains("verified"), "{told:?}");
    // It held for a second at 100 ms a check: at least 11 checks.
    let checks = health.received_requests().await.unwrap().len();
    assert!(checks >= 11, "{checks} checks");
    let log = log_lines(&app, 880_001);
    assert!(
        log.iter().any(|l| l.starts_with("verify: passing: GET")),
        "{log:#?}"
    );
    assert!(
        log.last()
            .unwrap()
            .starts_with("success: deployed aaaaaaa and verified"),
        "{log:#?}"
    );
    let after = deployment_api(&app.url, 880_001).await;
    assert_eq!(after["deployment"]["state"], "success");
    assert_eq!(
        app.wait_for_final_status(880_002)
            .await
            .last()
            .unwrap()
            .state,
        "success"
    );
    app.stop().await;
}

/// A check that never passes: `failure`, saying what failed last; nothing rolls back.
#[tokio::test]
async fn a_verification_that_fails_reports_failure_with_what_failed() {
    let health = service(502).await;
    let check = verify(&health, 500, 3000, OnVerifyFailure::Fail);
    let mut app = spawn_app_with(|config, _| configure(config, check)).await;
    app.post_webhook("deployment", &deployment(880_001, A))
        .await;
    wait_until_verifying(&app, 880_001).await;
    // An operator's rollback meanwhile is refused: the history lacks what runs now.
    let refused = reqwest::Client::new()
        .post(format!("{}/api/rollback", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"repository": "acme/widgets", "environment": "production"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);
    let why = refused.text().await.unwrap();
    assert!(why.contains("deployment 880001 is verifying"), "{why}");
    let told = app.wait_for_final_status(880_001).await;
    let last = told.last().unwrap();
    assert_eq!(last.state, "failure");
    assert_eq!(
        last.description,
        format!(
            "verification failed: GET {}/health answered 502 (expected 200)",
            health.uri()
        )
    );
    assert!(last.description.chars().count() <= 140);
    let states: Vec<&str> = told.iter().map(|s| s.state.as_str()).collect();
    assert!(is_legal_order(&states), "{states:?}");
    assert!(created_deployments(&app.github_requests().await).is_empty());
    let log = log_lines(&app, 880_001);
    assert!(
        log.iter()
            .any(|l| l.contains("answered 502 (expected 200)")),
        "{log:#?}"
    );
    app.stop().await;
}

/// A check that passes, fails once, then passes: the failure starts the hold over, so
/// the success comes only after a full `hold_for` of checks after the failure.
#[tokio::test]
async fn a_flapping_check_holds_only_a_full_hold_after_its_last_failure() {
    let health = MockServer::start().await;
    for (priority, status, times) in [(1, 200, Some(3)), (2, 503, Some(1)), (3, 200, None)] {
        let mock = Mock::given(method("GET"))
            .and(path("/health"))
            .respond_with(ResponseTemplate::new(status))
            .with_priority(priority);
        let mock = match times {
            Some(n) => mock.up_to_n_times(n),
            None => mock,
        };
        mock.mount(&health).await;
    }
    let check = verify(&health, 1000, 8000, OnVerifyFailure::Fail);
    let mut app = spawn_app_with(|config, _| configure(config, check)).await;
    app.post_webhook("deployment", &deployment(880_001, A))
        .await;
    let told = app.wait_for_final_status(880_001).await;
    assert_eq!(told.last().unwrap().state, "success", "{told:?}");
    let checks = health.received_requests().await.unwrap();
    // 3 passes, 1 failure, then at least 11 passes (1 s at 100 ms) after it.
    assert!(checks.len() >= 4 + 11, "{} checks", checks.len());
    let log = log_lines(&app, 880_001);
    assert!(
        log.iter()
            .any(|l| l.contains("503 (expected 200) (the hold starts over)")),
        "{log:#?}"
    );
    app.stop().await;
}

/// A service that answers too slowly never passes: at the timeout, `failure` says so.
#[tokio::test]
async fn a_verification_that_times_out_says_the_check_did_not_answer() {
    let health = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&health)
        .await;
    let check = verify(&health, 500, 1500, OnVerifyFailure::Fail);
    let mut app = spawn_app_with(|config, _| configure(config, check)).await;
    app.post_webhook("deployment", &deployment(880_001, A))
        .await;
    let told = app.wait_for_final_status(880_001).await;
    let last = told.last().unwrap();
    assert_eq!(last.state, "failure");
    // Each request waits a second at most, the last one only what is left of the timeout.
    let expected = format!(
        "verification failed: GET {}/health did not answer within ",
        health.uri()
    );
    assert!(last.description.starts_with(&expected), "{last:?}");
    let log = log_lines(&app, 880_001);
    assert!(
        log.iter().any(|l| l.ends_with("did not answer within 1s")),
        "{log:#?}"
    );
    app.stop().await;
}

/// Deploy A holds; deploy B fails its check: `failure` says it rolled back to A, and the
/// rollback is the operator's — a forced deployment of A whose payload says who, the lock,
/// the notification — and the rollback's own failed check does not roll back again.
#[tokio::test]
async fn a_failed_verification_rolls_back_to_the_last_verified_success() {
    let health = service(200).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let check = verify(&health, 300, 1200, OnVerifyFailure::Rollback);
    let hook = format!("{}/hooks/deployhook", receiver.uri());
    let mut app = spawn_app_with(|config, _| {
        configure(config, check);
        config.notify = vec![NotifyConfig::new(
            NotifyKind::Webhook,
            "TEST_HOOK_URL",
            hook,
        )];
    })
    .await;
    app.post_webhook("deployment", &deployment(880_011, A))
        .await;
    assert_eq!(
        app.wait_for_final_status(880_011)
            .await
            .last()
            .unwrap()
            .state,
        "success"
    );

    answer(&health, 502).await;
    app.post_webhook("deployment", &deployment(880_012, B))
        .await;
    let told = app.wait_for_final_status(880_012).await;
    let last = told.last().unwrap();
    assert_eq!(last.state, "failure");
    assert!(
        last.description
            .ends_with("answered 502 (expected 200); rolled back to aaaaaaa"),
        "{last:?}"
    );
    let requests = app
        .wait_for_github("the rollback's creation", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    assert_eq!(created["ref"], A);
    assert_eq!(created["environment"], "production");
    assert_eq!(
        created["payload"],
        json!({"environment": "production", "deploy_user": "deployhook (verification failed)",
               "rollback": true, "rolled_back": B, "force": true})
    );
    let locks: Value = app
        .http
        .get(format!("{}/api/locks", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        locks["locks"][0]["reason"],
        "rolled back by deployhook (verification failed) to aaaaaaa (from bbbbbbb)"
    );
    let log = log_lines(&app, 880_012);
    assert!(
        log.last().unwrap().ends_with("rolled back to aaaaaaa"),
        "{log:#?}"
    );
    let audit: String = app
        .database()
        .query_row(
            "SELECT login || ' ' || via || ' ' || outcome FROM audit WHERE action = 'rollback'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(audit, "deployhook-verification deployhook done");
    let told_receiver = wait_for_body(&receiver, "rolled back to aaaaaaa").await;
    assert!(
        told_receiver.contains("880012") || told_receiver.contains("bbbbbbb"),
        "{told_receiver}"
    );

    // GitHub sends the rollback's deployment: it runs through the lock, and its own check
    // (still failing) reports failure without rolling back again.
    let mut rollback = fixture_json("deployment.created.json");
    rollback["deployment"]["id"] = json!(880_013);
    rollback["deployment"]["sha"] = json!(A);
    rollback["deployment"]["ref"] = json!(A);
    rollback["deployment"]["payload"] = created["payload"].clone();
    app.post_webhook("deployment", rollback.to_string().as_bytes())
        .await;
    let told = app.wait_for_final_status(880_013).await;
    let last = told.last().unwrap();
    assert_eq!(last.state, "failure");
    assert!(
        last.description
            .ends_with("; not rolled back (this is a rollback)"),
        "{last:?}"
    );
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
    // The rollback follows what it rolled back from (not the last success, its own
    // commit): that is what its changelog and DEPLOYHOOK_PREVIOUS_SHA name.
    let rollback = deployment_api(&app.url, 880_013).await;
    assert_eq!(rollback["deployment"]["previous"]["sha"], B, "{rollback}");
    assert_eq!(
        rollback["deployment"]["previous"]["deployment"], 880_012,
        "{rollback}"
    );
    // Insights list both failed verifications, newest first, with what failed.
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let insights = app.page("/insights", &cookie).await;
    assert_eq!(
        insights
            .matches(r#"<tr class="verification-failure">"#)
            .count(),
        2,
        "{insights}"
    );
    let newest = insights.find("not rolled back (this is a rollback)");
    let older = insights.find("(expected 200); rolled back to aaaaaaa");
    assert!(newest.is_some() && newest < older, "{insights}");
    // The story as GitHub and the receiver saw it (`-- --nocapture` shows it).
    for s in app.statuses().await {
        eprintln!(
            "GitHub got: deployment {} {} {:?}",
            s.deployment, s.state, s.description
        );
    }
    eprintln!("GitHub got a deployment to create: {created}");
    eprintln!("the receiver got: {told_receiver}");
    app.stop().await;
}

/// Waits until `receiver` got a message containing `text`; that message's body.
async fn wait_for_body(receiver: &MockServer, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let bodies: Vec<String> = receiver
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        if let Some(found) = bodies.into_iter().find(|b| b.contains(text)) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message containing {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server on `config` (its database in the config's directory), stopped by [`Running::stop`].
struct Running {
    url: String,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(config: Config) -> Self {
        let app = Application::build(config).await.unwrap();
        let url = format!("http://{}", app.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self { url, stop, server }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT, self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Waits until GitHub was told a status of `deployment` for which `found` holds; that one.
async fn wait_told(
    github: &MockServer,
    deployment: u64,
    found: impl Fn(&(String, String)) -> bool,
) -> (String, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let told = states(&github.received_requests().await.unwrap(), deployment);
        if let Some(hit) = told.iter().find(|s| found(s)) {
            return hit.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "not told: {told:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server with a deploy verifying against a service answering 503 (20 s timeout),
/// and the configuration to start it again.
async fn verifying_server(
    github: &MockServer,
    health: &MockServer,
    dir: &Path,
) -> (Running, Config) {
    mount_github_defaults(github).await;
    let script = write_script(dir, "deploy.sh", "echo deployed");
    let mut config = test_config(github, vec![script.display().to_string()], dir);
    configure(
        &mut config,
        verify(health, 500, 20_000, OnVerifyFailure::Fail),
    );
    let running = Running::start(config.clone()).await;
    crate::helpers::send_signed(
        &reqwest::Client::new(),
        &running.url,
        "deployment",
        &deployment(880_001, A),
        "delivery-1",
        1,
    )
    .await
    .unwrap();
    wait_told(github, 880_001, |(_, d)| d.starts_with("verifying")).await;
    (running, config)
}

/// The server stops while a deploy is verifying: the job stays `verifying` in the
/// database; a new server on the same database resumes the check and reports once.
#[tokio::test]
async fn a_restart_during_verification_resumes_it_and_reports_once() {
    let (github, health) = (MockServer::start().await, service(503).await);
    let dir = tempfile::tempdir().unwrap();
    let (running, config) = verifying_server(&github, &health, dir.path()).await;
    running.stop().await;
    let (state, started): (String, Option<i64>) = open_database(&dir.path().join("deployhook.db"))
        .query_row(
            "SELECT state, verify_started_at FROM jobs WHERE deployment_id = 880001",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "verifying");
    assert!(started.is_some());

    answer(&health, 200).await;
    let running = Running::start(config).await;
    wait_told(&github, 880_001, |(s, _)| s == "success").await;
    running.stop().await;
    let told = states(&github.received_requests().await.unwrap(), 880_001);
    let finals: Vec<&(String, String)> = told
        .iter()
        .filter(|(s, _)| s != "queued" && s != "in_progress")
        .collect();
    assert_eq!(finals.len(), 1, "{told:?}");
    let order: Vec<&str> = told.iter().map(|(s, _)| s.as_str()).collect();
    assert!(is_legal_order(&order), "{order:?}");
}

/// A verification whose timeout ran out while deployhook was stopped is judged at the next
/// start: `failure`, saying so, once.
#[tokio::test]
async fn a_verification_whose_time_ran_out_during_a_stop_is_judged_failed() {
    let (github, health) = (MockServer::start().await, service(503).await);
    let dir = tempfile::tempdir().unwrap();
    let (running, config) = verifying_server(&github, &health, dir.path()).await;
    running.stop().await;
    // As if the server had been stopped for longer than the timeout.
    rusqlite::Connection::open(dir.path().join("deployhook.db"))
        .unwrap()
        .execute(
            "UPDATE jobs SET verify_started_at = verify_started_at - 60000",
            [],
        )
        .unwrap();
    let running = Running::start(config).await;
    let last = wait_told(&github, 880_001, |(s, _)| s == "failure").await;
    assert_eq!(
        last.1,
        "verification timed out: its 20s ran out while deployhook was stopped"
    );
    running.stop().await;
    let told = states(&github.received_requests().await.unwrap(), 880_001);
    assert_eq!(
        told.iter().filter(|(s, _)| s == "failure").count(),
        1,
        "{told:?}"
    );
}
