//! The CI gate and promotion: a merge into an environment with `checks` waits for its
//! commit's checks (told by `check_run`, `check_suite` and `status` deliveries, and read from
//! GitHub's check-runs and combined-status endpoints) before its deployment is created; a
//! success in an environment another is promoted from soaks, then deploys there.
//!
//! Payloads are written here in the shape GitHub sends them; the checks GitHub "has" are
//! served by [`FakeChecks`], which a test changes as CI would.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deployhook::config::{Config, EnvironmentConfig};
use deployhook::model::{Environment, Required};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_github::FakeGitHub;
use crate::helpers::{
    TestApp, WAIT, assert_ack, body_json, created_deployments, fixture_json, spawn_app_with,
    statuses, summary,
};

/// The fixture's merge commit (pull request #42).
pub const SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
/// A later merge's commit.
pub const NEWER_SHA: &str = "7a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
/// A third commit.
const THIRD_SHA: &str = "8b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e";
/// When pull request #42 was merged, as the fixture says.
pub const MERGED_AT: &str = "2026-03-03T14:02:11Z";
const LATER: &str = "2026-03-03T14:05:00Z";

// ---------------------------------------------------------------------------------------
// GitHub's checks of a commit, as its REST API serves them.

/// The check runs and commit statuses GitHub reports for any commit, which a test sets as
/// CI progresses; while `down`, both endpoints answer 503.
#[derive(Debug, Clone, Default)]
pub struct FakeChecks {
    runs: Arc<Mutex<Vec<Value>>>,
    suites: Arc<Mutex<Vec<Value>>>,
    statuses: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    /// Reads answered 503.
    refused: Arc<AtomicUsize>,
}

impl FakeChecks {
    /// Mounts `GET …/commits/{sha}/check-suites`, `GET …/commits/{sha}/check-runs` and
    /// `GET …/commits/{sha}/status`, with no checks known yet.
    pub async fn mount(server: &MockServer) -> Self {
        let fake = Self::default();
        mount_listing(server, "check-suites", CheckSuites(fake.clone())).await;
        mount_listing(server, "check-runs", CheckRuns(fake.clone())).await;
        mount_listing(server, "status", CombinedStatus(fake.clone())).await;
        fake
    }

    pub fn set_suites(&self, suites: Vec<Value>) {
        *self.suites.lock().unwrap() = suites;
    }

    pub fn set_runs(&self, runs: Vec<Value>) {
        *self.runs.lock().unwrap() = runs;
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many reads were answered 503.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn unavailable(&self) -> Option<ResponseTemplate> {
        if !self.down.load(Ordering::SeqCst) {
            return None;
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        Some(ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"})))
    }
}

/// Answers `GET /repos/{owner}/{repo}/commits/{sha}/{listing}` with `respond`.
async fn mount_listing(server: &MockServer, listing: &str, respond: impl Respond + 'static) {
    Mock::given(method("GET"))
        .and(path_regex(format!(
            r"^/repos/[^/]+/[^/]+/commits/[0-9a-f]{{40}}/{listing}$"
        )))
        .respond_with(respond)
        .with_priority(5)
        .mount(server)
        .await;
}

struct CheckSuites(FakeChecks);

impl Respond for CheckSuites {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        if let Some(down) = self.0.unavailable() {
            return down;
        }
        let suites = self.0.suites.lock().unwrap().clone();
        ResponseTemplate::new(200)
            .set_body_json(json!({"total_count": suites.len(), "check_suites": suites}))
    }
}

struct CheckRuns(FakeChecks);

impl Respond for CheckRuns {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(down) = self.0.unavailable() {
            return down;
        }
        let sha = request.url.path().split('/').nth(5).unwrap_or_default();
        let runs: Vec<Value> = self
            .0
            .runs
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["head_sha"] = json!(sha);
                r
            })
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"total_count": runs.len(), "check_runs": runs}))
    }
}

struct CombinedStatus(FakeChecks);

impl Respond for CombinedStatus {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(down) = self.0.unavailable() {
            return down;
        }
        let sha = request.url.path().split('/').nth(5).unwrap_or_default();
        let statuses = self.0.statuses.lock().unwrap().clone();
        let state = if statuses.iter().all(|s| s["state"] == "success") && !statuses.is_empty() {
            "success"
        } else {
            "pending"
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "state": state, "sha": sha, "total_count": statuses.len(), "statuses": statuses,
            "commit_url": format!("https://api.github.com/repos/acme/widgets/commits/{sha}"),
            "url": format!("https://api.github.com/repos/acme/widgets/commits/{sha}/status"),
        }))
    }
}

/// A check run as `GET …/check-runs` lists it: completed with `conclusion`, or `status`.
pub fn listed_run(id: u64, name: &str, status: &str, conclusion: Option<&str>) -> Value {
    json!({
        "id": id, "node_id": "CR_kwDOHmX7gc8AAAAB", "head_sha": SHA, "external_id": "",
        "url": format!("https://api.github.com/repos/acme/widgets/check-runs/{id}"),
        "html_url": format!("https://github.com/acme/widgets/runs/{id}"),
        "details_url": "https://ci.acme.example", "status": status, "conclusion": conclusion,
        "started_at": "2026-03-03T14:02:20Z",
        "completed_at": conclusion.map(|_| "2026-03-03T14:04:02Z"),
        "output": {"title": null, "summary": null, "text": null, "annotations_count": 0},
        "name": name, "check_suite": {"id": 118_578_147}, "pull_requests": [],
        "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
    })
}

/// Reads of a commit's checks GitHub answered in full: the combined status comes last.
pub fn reads(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.url.path().ends_with("/status"))
        .count()
}

fn check_run_requests(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.url.path().ends_with("/check-runs"))
        .count()
}

// ---------------------------------------------------------------------------------------
// Deliveries, shaped like GitHub's.

fn repository() -> Value {
    fixture_json("pull_request.closed.merged.json")["repository"].clone()
}

fn sender() -> Value {
    fixture_json("pull_request.closed.merged.json")["sender"].clone()
}

/// The merge of pull request `number` as commit `sha` at `merged_at`, into `main`.
pub fn merged_pull_request(number: u64, sha: &str, merged_at: &str) -> Vec<u8> {
    let mut event = fixture_json("pull_request.closed.merged.json");
    event["number"] = json!(number);
    let pr = &mut event["pull_request"];
    pr["number"] = json!(number);
    pr["merge_commit_sha"] = json!(sha);
    pr["merged_at"] = json!(merged_at);
    pr["closed_at"] = json!(merged_at);
    event.to_string().into_bytes()
}

/// `check_run` `completed` with `conclusion`, or `created` while it runs (`None`).
pub fn check_run_event(sha: &str, name: &str, id: u64, conclusion: Option<&str>) -> Vec<u8> {
    let (action, status) = match conclusion {
        Some(_) => ("completed", "completed"),
        None => ("created", "in_progress"),
    };
    let mut run = listed_run(id, name, status, conclusion);
    run["head_sha"] = json!(sha);
    run["check_suite"] = json!({
        "id": 118_578_147, "node_id": "CS_kwDOHmX7gc8AAAAB", "head_branch": "main",
        "head_sha": sha, "status": status, "conclusion": conclusion,
        "url": "https://api.github.com/repos/acme/widgets/check-suites/118578147",
        "before": "1111111111aaaaaaaaaa2222222222bbbbbbbbbb", "after": sha,
        "pull_requests": [], "created_at": "2026-03-03T14:02:15Z",
        "updated_at": "2026-03-03T14:04:02Z",
    });
    json!({"action": action, "check_run": run, "repository": repository(), "sender": sender()})
        .to_string()
        .into_bytes()
}

/// `status`: commit status `context` set to `state`.
pub fn status_event(sha: &str, context: &str, id: u64, state: &str) -> Vec<u8> {
    json!({
        "id": id, "sha": sha, "name": "acme/widgets",
        "target_url": format!("https://ci.acme.example/{context}/{id}"),
        "avatar_url": "https://avatars.githubusercontent.com/u/9100001?v=4",
        "context": context, "description": format!("{context}: {state}"), "state": state,
        "commit": {
            "sha": sha, "node_id": "C_kwDOHmX7gdoAKDZmMWUzYzlh",
            "commit": {"message": "Make widgets 3x faster (#42)",
                       "author": {"name": "octo-dev", "date": "2026-03-03T14:02:11Z"}},
            "url": format!("https://api.github.com/repos/acme/widgets/commits/{sha}"),
            "html_url": format!("https://github.com/acme/widgets/commit/{sha}"),
        },
        "branches": [{"name": "main", "commit": {"sha": sha}, "protected": true}],
        "created_at": "2026-03-03T14:03:40Z", "updated_at": "2026-03-03T14:03:40Z",
        "repository": repository(), "sender": sender(),
    })
    .to_string()
    .into_bytes()
}

/// `check_suite` of an app's suite on `sha`, with `runs` check runs.
fn check_suite_event(
    sha: &str,
    action: &str,
    status: &str,
    conclusion: Option<&str>,
    runs: u64,
) -> Vec<u8> {
    json!({
        "action": action,
        "check_suite": {
            "id": 118_578_200 + runs, "node_id": "CS_kwDOHmX7gc8AAAAC", "head_branch": "main",
            "head_sha": sha, "status": status, "conclusion": conclusion,
            "url": "https://api.github.com/repos/acme/widgets/check-suites/118578200",
            "before": "1111111111aaaaaaaaaa2222222222bbbbbbbbbb", "after": sha,
            "pull_requests": [], "app": {"id": 29310, "slug": "octocoders-linter"},
            "created_at": "2026-03-03T14:02:15Z", "updated_at": "2026-03-03T14:02:15Z",
            "rerequestable": true, "runs_rerequestable": false,
            "latest_check_runs_count": runs,
            "check_runs_url": "https://api.github.com/repos/acme/widgets/check-suites/118578200/check-runs",
            "head_commit": {"id": sha, "tree_id": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
                            "message": "Make widgets 3x faster (#42)",
                            "timestamp": "2026-03-03T14:02:11Z"},
        },
        "repository": repository(), "sender": sender(),
    })
    .to_string()
    .into_bytes()
}

/// `deployment_status` `created`: deployment `id` of `sha` to `environment` is `state`.
pub fn deployment_status_event(id: u64, environment: &str, sha: &str, state: &str) -> Vec<u8> {
    let mut event = fixture_json("deployment_status.created.success.json");
    let url = format!("https://api.github.com/repos/acme/widgets/deployments/{id}");
    let status = &mut event["deployment_status"];
    status["state"] = json!(state);
    status["environment"] = json!(environment);
    status["deployment_url"] = json!(url);
    let deployment = &mut event["deployment"];
    deployment["id"] = json!(id);
    deployment["url"] = json!(url);
    deployment["environment"] = json!(environment);
    deployment["original_environment"] = json!(environment);
    deployment["sha"] = json!(sha);
    deployment["ref"] = json!(sha);
    deployment["payload"]["environment"] = json!(environment);
    event.to_string().into_bytes()
}

/// `deployment` `created`, as GitHub sends it for a deployment deployhook asked for.
fn deployment_event(id: u64, request: &Value) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    let deployment = &mut event["deployment"];
    deployment["id"] = json!(id);
    deployment["url"] = json!(format!(
        "https://api.github.com/repos/acme/widgets/deployments/{id}"
    ));
    for key in ["environment", "payload", "description", "task"] {
        deployment[key] = request[key].clone();
    }
    deployment["original_environment"] = request["environment"].clone();
    deployment["sha"] = request["ref"].clone();
    deployment["ref"] = request["ref"].clone();
    event.to_string().into_bytes()
}

// ---------------------------------------------------------------------------------------
// Watching the server.

/// Polls `done` until it holds; panics naming `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `deployhook_waits_ended_total` for `kind` and `outcome`.
pub fn ended(kind: &str, outcome: &str) -> String {
    format!("deployhook_waits_ended_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}")
}

/// `deployhook_waiting` for `kind`.
pub fn waiting(kind: &str) -> String {
    format!("deployhook_waiting{{kind=\"{kind}\"}}")
}

/// The value of `series` on `/metrics`; 0 when absent.
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get_text(&format!("{}/metrics", app.url)).await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

async fn wait_for_metric(app: &TestApp, series: &str, value: f64) {
    eventually(&format!("{series} = {value}"), || async {
        metric(app, series).await == value
    })
    .await;
}

/// The bodies of the deployments GitHub was asked to create, in order.
fn created_bodies(requests: &[Request]) -> Vec<Value> {
    created_deployments(requests)
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

pub async fn wait_for_created(app: &TestApp, count: usize) -> Vec<Value> {
    let requests = app
        .wait_for_github(&format!("{count} deployment(s) created"), |r| {
            created_deployments(r).len() >= count
        })
        .await;
    created_bodies(&requests)
}

/// The state and reason of the wait of `kind` on `sha`.
pub fn wait_state(app: &TestApp, kind: &str, sha: &str) -> (String, Option<String>) {
    app.database()
        .query_row(
            "SELECT state, reason FROM waits WHERE kind = ?1 AND sha = ?2",
            [kind, sha],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

/// Deployment creations queued in the outbox, sent or not yet.
pub fn queued_creations(app: &TestApp) -> i64 {
    app.database()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'create_deployment'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// Waits until no read of checks is queued: the ones sent have had their answers recorded.
pub async fn reads_settled(app: &TestApp) {
    let deadline = std::time::Instant::now() + crate::helpers::WAIT;
    while pending_reads(app) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a read of checks never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads of checks queued and not yet sent (or sent and not yet recorded).
fn pending_reads(app: &TestApp) -> i64 {
    app.database()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'read_checks' AND state = 'pending'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

pub async fn post(app: &TestApp, event: &str, body: &[u8]) -> Value {
    let response = app.post_webhook(event, body).await;
    assert!(response.status().is_success(), "{}", response.status());
    body_json(response).await
}

pub fn named(names: &[&str]) -> Required {
    Required::Named(names.iter().map(|n| (*n).to_owned()).collect())
}

/// The server with production gated on `required`, after `configure`; GitHub knows no
/// checks yet.
pub async fn gated_app(
    required: Required,
    configure: impl FnOnce(&mut Config),
) -> (TestApp, FakeChecks) {
    let app = spawn_app_with(|config, _| {
        config.environments[0].checks = Some(required);
        configure(config);
    })
    .await;
    let checks = FakeChecks::mount(&app.github).await;
    (app, checks)
}

/// The body deployhook asks GitHub for when merge #`number` of `sha` passes its gate.
fn gated_request(number: u64, sha: &str, merged_at: &str) -> Value {
    json!({
        "ref": sha, "task": "deploy", "auto_merge": false, "required_contexts": [],
        "environment": "production",
        "payload": {"environment": "production", "deploy_user": "octo-dev",
                    "pull_request": number, "merged_at": merged_at},
        "description": "Deploy PR #42: Make widgets 3x faster",
    })
}

// ---------------------------------------------------------------------------------------
// The gate.

async fn deploys_once_both_checks_pass(status_first: bool) {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |_| {}).await;
    let ack = post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    assert_ack(
        &ack,
        "accepted",
        "pull request #42 merged acme/widgets@6f1e3c9: waiting for test, lint before deploying to production",
    );
    // The wait asked GitHub for the commit's checks at once: none yet.
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;
    reads_settled(&app).await;
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);

    let test = (
        "check_run",
        check_run_event(SHA, "test", 4001, Some("success")),
    );
    let lint = ("status", status_event(SHA, "lint", 5001, "success"));
    let (first, second) = if status_first {
        (lint, test)
    } else {
        (test, lint)
    };
    let ack = post(&app, first.0, &first.1).await;
    assert_ack(&ack, "recorded", "of acme/widgets@6f1e3c9 passed (success)");
    // Still waiting for the other. A named check's own event settles it: no read of
    // GitHub is queued for it (the answer came after the commit), and nothing is created.
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);
    assert_eq!(pending_reads(&app), 0);
    assert_eq!(queued_creations(&app), 0);
    let requests = app.github_requests().await;
    assert_eq!(reads(&requests), 1, "{:?}", summary(&requests));
    assert!(
        created_deployments(&requests).is_empty(),
        "{:?}",
        summary(&requests)
    );
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 0.0);

    let ack = post(&app, second.0, &second.1).await;
    assert_ack(&ack, "recorded", "passed (success)");
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    assert_eq!(metric(&app, &waiting("checks")).await, 0.0);
    let (state, reason) = wait_state(&app, "checks", SHA);
    assert_eq!(state, "passed");
    assert_eq!(
        reason.as_deref(),
        Some("test, lint passed; deployment created")
    );

    app.stop().await;
    let requests = app.github_requests().await;
    assert_eq!(
        created_deployments(&requests).len(),
        1,
        "{:?}",
        summary(&requests)
    );
}

/// A merge gated on test and lint creates no deployment until both pass: test (a check
/// run) first, then lint (a commit status).
#[tokio::test]
async fn a_gated_merge_deploys_only_once_its_check_run_and_then_its_status_pass() {
    deploys_once_both_checks_pass(false).await;
}

/// The same, lint's commit status first, then test's check run.
#[tokio::test]
async fn a_gated_merge_deploys_only_once_its_status_and_then_its_check_run_pass() {
    deploys_once_both_checks_pass(true).await;
}

/// A failing required check ends the wait at once, saying which check and where its output
/// is; nothing is created. Re-running the failed check opens the wait again, and its
/// success deploys the merge without anyone redelivering it (GitHub's Redeliver reuses the
/// delivery id, which is answered `duplicate`).
#[tokio::test]
async fn a_failing_check_creates_no_deployment_and_says_which_check_failed() {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |_| {}).await;
    let merge = merged_pull_request(42, SHA, MERGED_AT);
    const MERGE_DELIVERY: &str = "6d4f2a10-cafe-11ef-8000-000000000042";
    let response = app
        .post_delivery("pull_request", &merge, MERGE_DELIVERY, 1)
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;

    let ack = post(
        &app,
        "check_run",
        &check_run_event(SHA, "lint", 4002, Some("failure")),
    )
    .await;
    assert_ack(
        &ack,
        "recorded",
        "check \"lint\" of acme/widgets@6f1e3c9 failed (failure)",
    );
    // Counted before the answer was sent.
    assert_eq!(metric(&app, &ended("checks", "failed")).await, 1.0);
    assert_eq!(metric(&app, &waiting("checks")).await, 0.0);
    let (state, reason) = wait_state(&app, "checks", SHA);
    assert_eq!(state, "failed");
    assert_eq!(
        reason.as_deref(),
        Some("check lint failure: https://github.com/acme/widgets/runs/4002")
    );
    // Test passing now changes nothing: the wait is over.
    post(
        &app,
        "check_run",
        &check_run_event(SHA, "test", 4001, Some("success")),
    )
    .await;
    assert_eq!(queued_creations(&app), 0);
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 0.0);
    let requests = app.github_requests().await;
    assert!(
        created_deployments(&requests).is_empty(),
        "{:?}",
        summary(&requests)
    );

    // GitHub's Redeliver of the merge: the same delivery id, answered duplicate.
    let response = app
        .post_delivery("pull_request", &merge, MERGE_DELIVERY, 1)
        .await;
    assert_ack(&body_json(response).await, "duplicate", "already received");
    // Lint re-run: its new run starts, and the merge waits again; the run passes, and the
    // merge deploys.
    post(&app, "check_run", &check_run_event(SHA, "lint", 4003, None)).await;
    assert_eq!(wait_state(&app, "checks", SHA).0, "waiting");
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);
    let ack = post(
        &app,
        "check_run",
        &check_run_event(SHA, "lint", 4003, Some("success")),
    )
    .await;
    assert_ack(
        &ack,
        "recorded",
        "a merge waiting for its checks has all of them green: its deployment is being created",
    );
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

/// A required check that never reports times out after `checks_timeout`, decided on a
/// read of GitHub past the deadline; nothing is created.
#[tokio::test]
async fn a_check_that_never_reports_times_out_and_creates_nothing() {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |config| {
        config.environments[0].checks_timeout = Duration::from_secs(1);
        config.checks_poll = Duration::from_millis(200);
    })
    .await;
    let started = Instant::now();
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    wait_for_metric(&app, &ended("checks", "timed_out"), 1.0).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(980),
        "timed out after {waited:?}"
    );

    let (state, reason) = wait_state(&app, "checks", SHA);
    assert_eq!(state, "timed_out");
    assert_eq!(reason.as_deref(), Some("timed out waiting for test, lint"));
    assert_eq!(metric(&app, &waiting("checks")).await, 0.0);
    assert_eq!(queued_creations(&app), 0);
    app.stop().await;
    let requests = app.github_requests().await;
    // Read at once, polled, and read once more at the deadline.
    assert!(reads(&requests) >= 3, "{:?}", summary(&requests));
    assert!(
        created_deployments(&requests).is_empty(),
        "{:?}",
        summary(&requests)
    );
}

/// Under "all", a check suite with no runs (an app that runs nothing here stays `queued`
/// for ever) does not block, but a suite with runs that still runs does, even when every
/// run listed so far is green: once the suite completes, the merge deploys.
#[tokio::test]
async fn all_checks_ignore_a_suite_without_runs_and_deploy_once_the_real_runs_pass() {
    let (mut app, checks) = gated_app(Required::All, |_| {}).await;
    checks.set_runs(vec![
        listed_run(7001, "build", "in_progress", None),
        listed_run(7002, "test", "queued", None),
    ]);
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;

    let empty_suite = check_suite_event(SHA, "requested", "queued", None, 0);
    let ack = post(&app, "check_suite", &empty_suite).await;
    assert_ack(
        &ack,
        "recorded",
        "a check suite of acme/widgets@6f1e3c9 changed; its checks will be read",
    );
    let requests = app
        .wait_for_github("the read the suite set off", |r| reads(r) >= 2)
        .await;
    assert!(created_deployments(&requests).is_empty());
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);

    // Every run GitHub lists is green, but the workflow's suite still runs: a job that
    // needs these may not exist yet. Nothing deploys.
    let suite = |status: &str| {
        json!({"id": 9001, "status": status, "conclusion": null, "latest_check_runs_count": 2,
               "app": {"name": "GitHub Actions", "slug": "github-actions"}})
    };
    checks.set_suites(vec![suite("in_progress")]);
    checks.set_runs(vec![
        listed_run(7001, "build", "completed", Some("success")),
        listed_run(7002, "test", "completed", Some("success")),
    ]);
    post(
        &app,
        "check_run",
        &check_run_event(SHA, "test", 7002, Some("success")),
    )
    .await;
    app.wait_for_github("the read the finished check set off", |r| reads(r) >= 3)
        .await;
    reads_settled(&app).await;
    assert_eq!(wait_state(&app, "checks", SHA).0, "waiting");
    assert_eq!(queued_creations(&app), 0);

    checks.set_suites(vec![suite("completed")]);
    let real_suite = check_suite_event(SHA, "completed", "completed", Some("success"), 2);
    post(&app, "check_suite", &real_suite).await;
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    assert_eq!(
        wait_state(&app, "checks", SHA).1.as_deref(),
        Some("all checks passed; deployment created")
    );
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

/// Checks that report before the merge's own delivery arrives count: the merge deploys at
/// once, without reading GitHub.
#[tokio::test]
async fn checks_reported_before_the_merge_arrives_let_it_deploy_at_once() {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |_| {}).await;
    let ack = post(
        &app,
        "check_run",
        &check_run_event(SHA, "test", 4001, Some("success")),
    )
    .await;
    assert_ack(
        &ack,
        "recorded",
        "check \"test\" of acme/widgets@6f1e3c9 passed",
    );
    post(&app, "status", &status_event(SHA, "lint", 5001, "success")).await;

    let ack = post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    assert_ack(&ack, "accepted", "waiting for test, lint");
    // Decided in the delivery's own transaction.
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    app.stop().await;
    let requests = app.github_requests().await;
    assert_eq!(check_run_requests(&requests), 0, "{:?}", summary(&requests));
    assert_eq!(created_deployments(&requests).len(), 1);
}

/// Under `latest`, a newer merge supersedes the older one's wait: when both go green only
/// the newer commit is deployed.
#[tokio::test]
async fn a_newer_merge_supersedes_an_older_one_still_waiting() {
    let (mut app, _checks) = gated_app(named(&["test", "lint"]), |_| {}).await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(43, NEWER_SHA, LATER),
    )
    .await;
    assert_eq!(metric(&app, &ended("checks", "superseded")).await, 1.0);
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);
    assert_eq!(
        wait_state(&app, "checks", SHA),
        (
            "superseded".to_owned(),
            Some("superseded by 7a2b3c4".to_owned())
        )
    );

    for sha in [SHA, NEWER_SHA] {
        post(
            &app,
            "check_run",
            &check_run_event(sha, "test", 4001, Some("success")),
        )
        .await;
        post(&app, "status", &status_event(sha, "lint", 5001, "success")).await;
    }
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0]["ref"], NEWER_SHA);
    assert_eq!(created[0]["payload"]["pull_request"], 43);
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    app.stop().await;
    let requests = app.github_requests().await;
    let created = created_bodies(&requests);
    assert_eq!(created.len(), 1, "{created:?}");
}

/// Under `latest`, an older merge whose delivery comes late — after a newer merge already
/// passed its gate — is skipped at once, not deployed over the newer one (see
/// tests/api/order.rs for every policy).
#[tokio::test]
async fn an_older_merge_delivered_after_a_newer_one_deployed_is_skipped() {
    let (mut app, _checks) = gated_app(named(&["test"]), |_| {}).await;
    for sha in [SHA, NEWER_SHA] {
        post(
            &app,
            "check_run",
            &check_run_event(sha, "test", 4001, Some("success")),
        )
        .await;
    }
    post(
        &app,
        "pull_request",
        &merged_pull_request(43, NEWER_SHA, LATER),
    )
    .await;
    wait_for_created(&app, 1).await;
    // Pull request #42 merged earlier, but its delivery arrives only now.
    let ack = post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    assert_ack(
        &ack,
        "skipped",
        "merge of #42 (merged 14:02) is older than #43 (merged 14:05), which production \
         already runs or has queued; not deployed",
    );
    assert_eq!(metric(&app, &waiting("checks")).await, 0.0);
    app.stop().await;
    let created = created_bodies(&app.github_requests().await);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["ref"], NEWER_SHA);
}

/// The same check event delivered twice (two delivery ids, as two hooks or a redelivery
/// send it) creates one deployment.
#[tokio::test]
async fn the_same_check_event_delivered_twice_creates_one_deployment() {
    let (mut app, _checks) = gated_app(named(&["test"]), |_| {}).await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    let event = check_run_event(SHA, "test", 4001, Some("success"));
    for delivery in ["check-delivery-1", "check-delivery-2"] {
        let response = app
            .post_delivery("check_run", &event, delivery, 470_000_001)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_ack(&body_json(response).await, "recorded", "passed (success)");
    }
    let again = app
        .post_delivery("check_run", &event, "check-delivery-1", 470_000_001)
        .await;
    assert_eq!(body_json(again).await["outcome"], "duplicate");
    wait_for_created(&app, 1).await;
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    app.stop().await;
    let requests = app.github_requests().await;
    assert_eq!(
        created_deployments(&requests).len(),
        1,
        "{:?}",
        summary(&requests)
    );
}

/// GitHub down while the checks are read, past the wait's deadline: the wait neither fails
/// nor times out, and deploys once GitHub answers with green checks.
#[tokio::test]
async fn github_down_during_the_read_of_checks_delays_the_deployment_without_failing_it() {
    let (mut app, checks) = gated_app(named(&["test", "lint"]), |config| {
        config.environments[0].checks_timeout = Duration::from_secs(1);
        config.checks_poll = Duration::from_millis(200);
    })
    .await;
    checks.set_down(true);
    checks.set_runs(vec![
        listed_run(4001, "test", "completed", Some("success")),
        listed_run(4002, "lint", "completed", Some("success")),
    ]);
    let started = Instant::now();
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    // Past the deadline, with several reads refused.
    eventually("reads refused past the deadline", || async {
        started.elapsed() > Duration::from_millis(1300) && checks.refused() >= 3
    })
    .await;
    for outcome in ["failed", "timed_out", "passed"] {
        assert_eq!(
            metric(&app, &ended("checks", outcome)).await,
            0.0,
            "{outcome}"
        );
    }
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);
    assert_eq!(wait_state(&app, "checks", SHA).0, "waiting");
    assert!(created_deployments(&app.github_requests().await).is_empty());

    checks.set_down(false);
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 1.0);
    assert_eq!(metric(&app, &ended("checks", "timed_out")).await, 0.0);
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

/// Under "all", a read of the checks that GitHub refuses (no permission: 404) is no read:
/// one green check event does not deploy while other checks may still run.
#[tokio::test]
async fn all_checks_do_not_pass_on_events_alone_when_github_refuses_the_read() {
    // No checks endpoints mounted: GitHub answers the read 404, and it is given up.
    let mut app = spawn_app_with(|config, _| {
        config.environments[0].checks = Some(Required::All);
    })
    .await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    let read_error = || {
        app.database()
            .query_row("SELECT read_error FROM waits", [], |row| {
                row.get::<_, Option<String>>(0)
            })
            .unwrap()
    };
    eventually("the refused read recorded on the wait", || async {
        read_error().is_some()
    })
    .await;
    assert!(read_error().unwrap().contains("404"), "{:?}", read_error());

    post(
        &app,
        "check_run",
        &check_run_event(SHA, "build", 4001, Some("success")),
    )
    .await;
    // Settled in the event's own transaction: still waiting, nothing queued.
    assert_eq!(wait_state(&app, "checks", SHA).0, "waiting");
    assert_eq!(queued_creations(&app), 0);
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 0.0);
    app.stop().await;
    let requests = app.github_requests().await;
    assert!(
        created_deployments(&requests).is_empty(),
        "{:?}",
        summary(&requests)
    );
}

/// `check_run_event`, reported by another CI app (`other-ci`, app 90210) in its own check
/// suite: a second source of checks with the same names as GitHub Actions'.
fn other_app(event: Vec<u8>) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&event).unwrap();
    let run = &mut event["check_run"];
    run["app"] = json!({"id": 90210, "slug": "other-ci", "name": "Other CI"});
    run["check_suite"]["id"] = json!(220_000_001);
    run["html_url"] = json!(format!(
        "https://ci.other.example/runs/{}",
        run["id"].as_u64().unwrap()
    ));
    event.to_string().into_bytes()
}

/// Two CI apps each report a check run named `test`. The other app's `test` fails, then
/// GitHub Actions' `test` passes (1.5 s later in the report; the time between changes
/// nothing): the worse counts, nothing is deployed. Once the failing one is re-run green,
/// the merge deploys.
#[tokio::test]
async fn a_check_failing_in_one_app_and_passing_in_another_deploys_nothing_until_re_run_green() {
    let (mut app, _checks) = gated_app(named(&["test"]), |_| {}).await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;
    reads_settled(&app).await;

    let failed = other_app(check_run_event(SHA, "test", 4101, Some("failure")));
    let ack = post(&app, "check_run", &failed).await;
    assert_ack(
        &ack,
        "recorded",
        "a merge waiting for its checks will not deploy: a check it needs failed",
    );
    let ack = post(
        &app,
        "check_run",
        &check_run_event(SHA, "test", 4102, Some("success")),
    )
    .await;
    assert_ack(&ack, "recorded", "passed (success)");
    let (state, reason) = wait_state(&app, "checks", SHA);
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        (
            "failed",
            Some("check test failure: https://ci.other.example/runs/4101")
        ),
        "another app's success must not hide this failure"
    );
    assert_eq!(queued_creations(&app), 0);
    assert_eq!(metric(&app, &ended("checks", "passed")).await, 0.0);

    // The other app re-runs its `test`: a newer run of the same source replaces its failure.
    let rerun = other_app(check_run_event(SHA, "test", 4103, None));
    post(&app, "check_run", &rerun).await;
    assert_eq!(wait_state(&app, "checks", SHA).0, "waiting");
    assert_eq!(queued_creations(&app), 0);
    let green = other_app(check_run_event(SHA, "test", 4103, Some("success")));
    let ack = post(&app, "check_run", &green).await;
    assert_ack(
        &ack,
        "recorded",
        "a merge waiting for its checks has all of them green: its deployment is being created",
    );
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

/// GitHub Actions' `test` passes while another app's `test` still runs: nothing deploys
/// until that one passes too.
#[tokio::test]
async fn a_check_passing_in_one_app_while_another_apps_check_of_that_name_runs_waits_for_it() {
    let (mut app, _checks) = gated_app(named(&["test"]), |_| {}).await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
    )
    .await;
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;
    reads_settled(&app).await;

    let running = other_app(check_run_event(SHA, "test", 4101, None));
    post(&app, "check_run", &running).await;
    post(
        &app,
        "check_run",
        &check_run_event(SHA, "test", 4102, Some("success")),
    )
    .await;
    assert_eq!(
        wait_state(&app, "checks", SHA).0,
        "waiting",
        "another app's `test` is still running"
    );
    assert_eq!(queued_creations(&app), 0);
    assert_eq!(metric(&app, &waiting("checks")).await, 1.0);

    let green = other_app(check_run_event(SHA, "test", 4101, Some("success")));
    let ack = post(&app, "check_run", &green).await;
    assert_ack(
        &ack,
        "recorded",
        "a merge waiting for its checks has all of them green: its deployment is being created",
    );
    let created = wait_for_created(&app, 1).await;
    assert_eq!(created[0], gated_request(42, SHA, MERGED_AT));
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Promotion.

/// Staging (the test config's environment, renamed) and production promoted from it.
pub fn promoting(config: &mut Config, soak: Duration) {
    let staging = Environment::parse("staging").unwrap();
    config.environments[0].name = staging.clone();
    let mut production = EnvironmentConfig::new(
        Environment::parse("production").unwrap(),
        config.environments[0].command.clone(),
    );
    production.timeout = config.environments[0].timeout;
    production.promote_from = Some(staging);
    production.soak = soak;
    config.environments.push(production);
}

const SOAK: Duration = Duration::from_secs(1);
/// Clocks differ between the test and the server by less than this.
const MARGIN: Duration = Duration::from_millis(30);

/// A success in staging is promoted to production after the soak, no sooner: same commit,
/// with where it came from in the payload; a redelivery of the success changes nothing.
#[tokio::test]
async fn a_staging_success_is_promoted_to_production_after_the_soak() {
    let mut app = spawn_app_with(|config, _| promoting(config, SOAK)).await;
    let started = Instant::now();
    let success = deployment_status_event(880_101, "staging", SHA, "success");
    let ack = post(&app, "deployment_status", &success).await;
    assert_ack(
        &ack,
        "accepted",
        "deployment 880101 of acme/widgets to staging is success: promoting 6f1e3c9 to production after a soak of 1s",
    );
    assert_eq!(metric(&app, &waiting("soak")).await, 1.0);
    let ack = post(&app, "deployment_status", &success).await;
    assert_ack(
        &ack,
        "ignored",
        "acme/widgets@6f1e3c9 was already promoted, or is soaking",
    );

    let created = wait_for_created(&app, 1).await;
    let waited = started.elapsed();
    assert!(waited >= SOAK - MARGIN, "promoted after {waited:?}");
    assert_eq!(
        created[0],
        json!({
            "ref": SHA, "task": "deploy", "auto_merge": false, "required_contexts": [],
            "environment": "production",
            "payload": {"environment": "production", "deploy_user": "octo-dev",
                        "pull_request": 42,
                        "promoted_from": {"environment": "staging", "deployment": 880_101}},
            "description": "Promote 6f1e3c9 from staging (deployment 880101)",
        })
    );
    assert_eq!(metric(&app, &ended("soak", "passed")).await, 1.0);
    assert_eq!(metric(&app, &waiting("soak")).await, 0.0);
    let ack = post(&app, "deployment_status", &success).await;
    assert_ack(&ack, "ignored", "was already promoted, or is soaking");
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 1);
}

/// A failure in staging, a success of another task there, or a success in production
/// itself promotes nothing.
#[tokio::test]
async fn a_staging_failure_or_a_non_deploy_success_promotes_nothing() {
    let mut app = spawn_app_with(|config, _| promoting(config, SOAK)).await;
    let failure = deployment_status_event(880_101, "staging", SHA, "failure");
    let ack = post(&app, "deployment_status", &failure).await;
    assert_ack(
        &ack,
        "recorded",
        "deployment 880101 of acme/widgets to staging is failure",
    );
    let mut migration: Value =
        serde_json::from_slice(&deployment_status_event(880_102, "staging", SHA, "success"))
            .unwrap();
    migration["deployment"]["task"] = json!("deploy:migrate");
    let ack = post(&app, "deployment_status", migration.to_string().as_bytes()).await;
    assert_ack(&ack, "recorded", "to staging is success");
    let production = deployment_status_event(880_103, "production", SHA, "success");
    let ack = post(&app, "deployment_status", &production).await;
    assert_ack(&ack, "recorded", "to production is success");

    // Each was decided in its delivery's transaction: nothing soaks, nothing is queued.
    assert_eq!(metric(&app, &waiting("soak")).await, 0.0);
    let soaks: i64 = app
        .database()
        .query_row("SELECT COUNT(*) FROM waits", [], |row| row.get(0))
        .unwrap();
    assert_eq!(soaks, 0);
    assert_eq!(queued_creations(&app), 0);
    app.stop().await;
    let requests = app.github_requests().await;
    assert!(requests.is_empty(), "{:?}", summary(&requests));
}

/// A newer staging success during the soak replaces the one soaking (and an older one
/// delivered late, during the soak or after the promotion, is superseded at once): only the
/// newest commit is promoted, a full soak after its own success.
#[tokio::test]
async fn a_newer_staging_success_during_the_soak_replaces_the_one_soaking() {
    let mut app = spawn_app_with(|config, _| promoting(config, SOAK)).await;
    post(
        &app,
        "deployment_status",
        &deployment_status_event(880_201, "staging", SHA, "success"),
    )
    .await;
    let started = Instant::now();
    let newer = deployment_status_event(880_202, "staging", NEWER_SHA, "success");
    let ack = post(&app, "deployment_status", &newer).await;
    assert_ack(&ack, "accepted", "promoting 7a2b3c4 to production");
    assert_eq!(metric(&app, &ended("soak", "superseded")).await, 1.0);
    assert_eq!(
        wait_state(&app, "soak", SHA),
        (
            "superseded".to_owned(),
            Some("superseded by 7a2b3c4".to_owned())
        )
    );
    // A success of an older staging deployment, delivered late.
    let late = deployment_status_event(880_200, "staging", THIRD_SHA, "success");
    post(&app, "deployment_status", &late).await;
    assert_eq!(metric(&app, &ended("soak", "superseded")).await, 2.0);
    assert_eq!(wait_state(&app, "soak", THIRD_SHA).0, "superseded");
    assert_eq!(metric(&app, &waiting("soak")).await, 1.0);

    let created = wait_for_created(&app, 1).await;
    let waited = started.elapsed();
    assert!(waited >= SOAK - MARGIN, "promoted after {waited:?}");
    assert_eq!(created[0]["ref"], NEWER_SHA);
    assert_eq!(
        created[0]["payload"]["promoted_from"],
        json!({"environment": "staging", "deployment": 880_202})
    );
    // The first success redelivered after the newer one was promoted: superseded at once.
    let first = deployment_status_event(880_201, "staging", SHA, "success");
    post(&app, "deployment_status", &first).await;
    assert_eq!(metric(&app, &ended("soak", "superseded")).await, 3.0);
    assert_eq!(metric(&app, &waiting("soak")).await, 0.0);
    app.stop().await;
    let created = created_bodies(&app.github_requests().await);
    assert_eq!(created.len(), 1, "{created:?}");
}

/// The whole flow against a GitHub that remembers its deployments: merge → checks pending
/// → green → staging deployment, deployed → its success soaks → production deployment,
/// deployed. Prints what GitHub received, in order (`--nocapture`).
#[tokio::test]
async fn a_merge_waits_for_green_checks_deploys_to_staging_and_is_promoted_to_production() {
    let mut app = spawn_app_with(|config, _| {
        promoting(config, SOAK);
        config.environments[0].checks = Some(named(&["test", "lint"]));
    })
    .await;
    let fake = FakeGitHub::mount(&app.github).await;
    let checks = FakeChecks::mount(&app.github).await;
    checks.set_runs(vec![listed_run(4001, "test", "in_progress", None)]);
    // What the test delivered, and how many requests GitHub had received by then.
    let mut timeline: Vec<(usize, String)> = Vec::new();
    let mut deliver = async |event: &str, body: &[u8], what: &str| {
        let seen = app.github_requests().await.len();
        timeline.push((seen, format!("webhook {event}: {what}")));
        post(&app, event, body).await
    };

    let ack = deliver(
        "pull_request",
        &merged_pull_request(42, SHA, MERGED_AT),
        "#42 merged",
    )
    .await;
    assert_ack(
        &ack,
        "accepted",
        "waiting for test, lint before deploying to staging",
    );
    app.wait_for_github("the first read of the checks", |r| reads(r) >= 1)
        .await;
    reads_settled(&app).await;
    let pending = check_run_event(SHA, "test", 4001, None);
    deliver("check_run", &pending, "test in_progress").await;
    // A check that merely started asks GitHub for nothing.
    assert_eq!(pending_reads(&app), 0);
    assert!(fake.created().is_empty());
    checks.set_runs(vec![listed_run(4001, "test", "completed", Some("success"))]);
    let test = check_run_event(SHA, "test", 4001, Some("success"));
    deliver("check_run", &test, "test success").await;
    let lint = status_event(SHA, "lint", 5001, "success");
    deliver("status", &lint, "lint success").await;

    let requests = app
        .wait_for_github("the staging deployment", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let staging_request = created_bodies(&requests)[0].clone();
    assert_eq!(staging_request["environment"], "staging");
    assert_eq!(staging_request["required_contexts"], json!([]));
    let staging = fake.created()[0].id;
    let body = deployment_event(staging, &staging_request);
    deliver("deployment", &body, &format!("{staging} (staging) created")).await;
    let states: Vec<String> = app
        .wait_for_final_status(staging)
        .await
        .into_iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, ["queued", "in_progress", "success"]);

    let started = Instant::now();
    let success = deployment_status_event(staging, "staging", SHA, "success");
    let ack = deliver("deployment_status", &success, &format!("{staging} success")).await;
    assert_ack(
        &ack,
        "accepted",
        "promoting 6f1e3c9 to production after a soak of 1s",
    );
    let requests = app
        .wait_for_github("the production deployment", |r| {
            created_deployments(r).len() >= 2
        })
        .await;
    assert!(
        started.elapsed() >= SOAK - MARGIN,
        "{:?}",
        started.elapsed()
    );
    let production_request = created_bodies(&requests)[1].clone();
    assert_eq!(production_request["environment"], "production");
    assert_eq!(production_request["ref"], SHA);
    assert_eq!(
        production_request["payload"]["promoted_from"],
        json!({"environment": "staging", "deployment": staging})
    );
    let production = fake.created()[1].id;
    let body = deployment_event(production, &production_request);
    deliver(
        "deployment",
        &body,
        &format!("{production} (production) created"),
    )
    .await;
    app.wait_for_final_status(production).await;
    app.stop().await;

    let requests = app.github_requests().await;
    let created: Vec<(String, String)> = fake
        .created()
        .into_iter()
        .map(|d| (d.environment, d.sha))
        .collect();
    assert_eq!(
        created,
        [
            ("staging".to_owned(), SHA.to_owned()),
            ("production".to_owned(), SHA.to_owned())
        ]
    );
    let final_states: Vec<(u64, String)> = statuses(&requests)
        .into_iter()
        .filter(|s| s.state == "success")
        .map(|s| (s.deployment, s.state))
        .collect();
    assert_eq!(final_states.len(), 2, "{final_states:?}");

    eprintln!("What GitHub received, with the test's deliveries between:");
    let mut marks = timeline.iter().peekable();
    for (i, request) in requests.iter().enumerate() {
        while let Some((_, what)) = marks.next_if(|(seen, _)| *seen <= i) {
            eprintln!("        -> {what}");
        }
        eprintln!("  {:>2}. {}", i + 1, describe(request));
    }
    for (_, what) in marks {
        eprintln!("        -> {what}");
    }
}

/// `METHOD /path?query` and what the body says, in a few words.
fn describe(request: &Request) -> String {
    let path = match request.url.query() {
        Some(query) => format!("{}?{query}", request.url.path()),
        None => request.url.path().to_owned(),
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let summary =
        if path.ends_with("/deployments") && request.method == wiremock::http::Method::POST {
            format!(
                "  ref={} environment={} required_contexts={} description={:?}{}",
                &body["ref"].as_str().unwrap_or_default()[..7],
                body["environment"].as_str().unwrap_or_default(),
                body["required_contexts"],
                body["description"].as_str().unwrap_or_default(),
                match body["payload"].get("promoted_from") {
                    Some(from) => format!(" promoted_from={from}"),
                    None => String::new(),
                },
            )
        } else if path.ends_with("/statuses") {
            format!(
                "  state={} description={:?}",
                body["state"].as_str().unwrap_or_default(),
                body["description"].as_str().unwrap_or_default()
            )
        } else {
            String::new()
        };
    format!("{} {path}{summary}", request.method)
}
