//! Notifications, end to end: wiremock servers stand in for a Slack incoming webhook and a
//! generic webhook receiver. The right events reach the right receiver with the documented
//! body; a signed body verifies; a 5xx is retried and the message arrives once; a 4xx is
//! given up and shown; a receiver that hangs delays no deploy.

use std::path::Path;
use std::time::{Duration, Instant};

use deployhook::config::{Config, NotifyConfig, NotifyKind};
use deployhook::model::{Environment, NotificationKind};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::checks::{FakeChecks, MERGED_AT, SHA, check_run_event, merged_pull_request};
use crate::helpers::{PostedStatus, TestApp, WAIT, fixture_json, spawn_app_with, write_script};

/// The Slack URL's path: a URL like this is the channel's only credential.
const SLACK_PATH: &str = "/services/T0000/B0000/slack-url-credential";
const HOOK_SECRET: &str = "receiver-secret-for-tests";
const PUBLIC_URL: &str = "https://deploy.example.com";
const ADMIN_TOKEN: &str = "admin-token-for-notify-tests-0123";

/// A receiver answering `status` to every message.
async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn slack(server: &MockServer) -> NotifyConfig {
    let url = format!("{}{SLACK_PATH}", server.uri());
    NotifyConfig::new(NotifyKind::Slack, "TEST_SLACK_URL", url)
}

fn webhook(server: &MockServer) -> NotifyConfig {
    let url = format!("{}/hooks/deployhook", server.uri());
    NotifyConfig {
        secret: Some(HOOK_SECRET.to_owned().into()),
        ..NotifyConfig::new(NotifyKind::Webhook, "TEST_HOOK_URL", url)
    }
}

fn production() -> Environment {
    Environment::parse("production").unwrap()
}

/// Adds a `staging` environment running the same command as production.
fn add_staging(config: &mut Config) {
    let mut staging = config.environments[0].clone();
    staging.name = Environment::parse("staging").unwrap();
    config.environments.push(staging);
}

/// A person's deployment `id` of the fixture's commit to `environment`.
async fn deploy(app: &TestApp, id: u64, environment: &str) {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["environment"] = json!(environment);
    event["deployment"]["payload"]["environment"] = json!(environment);
    let response = app
        .post_webhook("deployment", event.to_string().as_bytes())
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
}

/// Waits until `server` received at least `count` messages.
async fn wait_for_messages(server: &MockServer, count: usize) -> Vec<Request> {
    let deadline = Instant::now() + WAIT;
    loop {
        let requests = server.received_requests().await.unwrap_or_default();
        if requests.len() >= count {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {count} messages; got {}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Notifications still to fan out or send.
fn unsent(app: &TestApp) -> i64 {
    app.database()
        .query_row(
            "SELECT COUNT(*) FROM outbox
             WHERE kind IN ('notify', 'notification') AND state = 'pending'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// Waits until every notification queued so far is sent or given up: after this, a
/// receiver has every message it will get.
async fn wait_until_sent(app: &TestApp) {
    let deadline = Instant::now() + WAIT;
    while unsent(app) > 0 {
        assert!(Instant::now() < deadline, "notifications still unsent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// The webhook body with its times checked and set aside: `at` is RFC 3339, and
/// `duration_seconds` a number exactly when `ran`.
fn without_times(mut body: Value, ran: bool) -> Value {
    let at = body["at"].as_str().unwrap_or_default();
    assert!(humantime::parse_rfc3339(at).is_ok(), "at: {at:?}");
    assert_eq!(body["duration_seconds"].is_f64(), ran, "{body}");
    body["at"] = json!("…");
    body["duration_seconds"] = json!("…");
    body
}

/// `in 3s`, `after 12s` → `in Ns`, `after Ns`: how long a deploy took varies.
fn without_seconds(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from) = rest.split_at(at);
        let digits = from.len() - from.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let seconds = from[digits..].starts_with('s')
            && (before.ends_with(" in ") || before.ends_with(" after "));
        out.push_str(before);
        out.push_str(if seconds { "N" } else { &from[..digits] });
        rest = &from[digits..];
    }
    out + rest
}

fn status_of<'a>(statuses: &'a [PostedStatus], id: u64, state: &str) -> &'a PostedStatus {
    statuses
        .iter()
        .find(|s| s.deployment == id && s.state == state)
        .unwrap_or_else(|| panic!("no {state} status for {id}: {statuses:?}"))
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Slack hears of production's ends, the webhook of everything in staging: each gets its
/// events, in the documented shape, and nothing else.
#[tokio::test]
async fn the_right_events_reach_the_right_receiver_with_the_documented_body() {
    let (chat, hook) = (receiver(200).await, receiver(200).await);
    let app = spawn_app_with(|config, _| {
        add_staging(config);
        config.public_url = Some(PUBLIC_URL.into());
        config.notify = vec![
            NotifyConfig {
                events: vec![
                    NotificationKind::DeploySucceeded,
                    NotificationKind::DeployFailed,
                ],
                environments: Some(vec![production()]),
                ..slack(&chat)
            },
            NotifyConfig {
                environments: Some(vec![Environment::parse("staging").unwrap()]),
                ..webhook(&hook)
            },
        ];
    })
    .await;
    deploy(&app, 880_001, "production").await;
    app.wait_for_final_status(880_001).await;
    deploy(&app, 880_002, "staging").await;
    app.wait_for_final_status(880_002).await;
    wait_until_sent(&app).await;
    let statuses = app.statuses().await;
    let github = app.github.uri();

    let slack_messages = chat.received_requests().await.unwrap();
    assert_eq!(slack_messages.len(), 1, "production's success only");
    println!(
        "Slack body: {}",
        String::from_utf8_lossy(&slack_messages[0].body)
    );
    assert_eq!(slack_messages[0].url.path(), SLACK_PATH);
    let success = status_of(&statuses, 880_001, "success");
    let log = success.log_url.as_deref().unwrap();
    assert!(log.starts_with(&format!("{PUBLIC_URL}/deployments/880001/log?token=")));
    let text = body(&slack_messages[0])["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        without_seconds(&text),
        format!(
            ":white_check_mark: Deployed *acme/widgets* <{github}/acme/widgets/commit/{SHA}|6f1e3c9> \
             to *production* in Ns\n\
             by octo-dev · pull request <{github}/acme/widgets/pull/42|#42> · \
             <{}|log>\n\
             first deploy here: no previous success known · \
             <{PUBLIC_URL}/deployments/880001|changelog>",
            log.replace('&', "&amp;")
        )
    );
    assert_eq!(body(&slack_messages[0]).as_object().unwrap().len(), 1);

    let hook_messages = hook.received_requests().await.unwrap();
    let events: Vec<Value> = hook_messages
        .iter()
        .map(|r| body(r)["event"].clone())
        .collect();
    assert_eq!(
        events,
        ["deploy_started", "deploy_succeeded"],
        "staging's, in order"
    );
    println!(
        "Webhook body: {}",
        String::from_utf8_lossy(&hook_messages[1].body)
    );
    let started = status_of(&statuses, 880_002, "in_progress");
    let succeeded = status_of(&statuses, 880_002, "success");
    let expected = |event: &str, description: &str| {
        json!({
            "event": event,
            "repository": "acme/widgets",
            "environment": "staging",
            "sha": SHA,
            "commit_url": format!("{github}/acme/widgets/commit/{SHA}"),
            "deployment": 880002,
            "pull_request": 42,
            "who": "octo-dev",
            "description": description,
            "duration_seconds": "…",
            "log_url": succeeded.log_url,
            "at": "…",
            "rollback": false,
            "rolled_back_from": null,
            "changelog": {
                "summary": "first deploy here: no previous success known",
                "titles": [],
                "url": format!("{PUBLIC_URL}/deployments/880002"),
            },
        })
    };
    assert_eq!(
        without_times(body(&hook_messages[0]), false),
        expected("deploy_started", &started.description)
    );
    assert_eq!(
        without_times(body(&hook_messages[1]), true),
        expected("deploy_succeeded", &succeeded.description)
    );
}

/// The generic webhook's signature is an HMAC-SHA256 of the exact body, like GitHub's, and
/// its headers name the event and the delivery.
#[tokio::test]
async fn a_signed_webhook_verifies_with_the_receivers_secret() {
    let hook = receiver(200).await;
    let app = spawn_app_with(|config, _| config.notify = vec![webhook(&hook)]).await;
    deploy(&app, 880_001, "production").await;
    app.wait_for_final_status(880_001).await;
    let messages = wait_for_messages(&hook, 2).await;
    let mut deliveries = Vec::new();
    for message in &messages {
        let header = |name: &str| {
            message.headers.get(name).map_or_else(
                || panic!("no {name} header"),
                |v| v.to_str().unwrap().to_owned(),
            )
        };
        assert_eq!(
            header("X-Deployhook-Signature-256"),
            format!("sha256={}", hmac_hex(HOOK_SECRET, &message.body))
        );
        assert_ne!(
            header("X-Deployhook-Signature-256"),
            format!("sha256={}", hmac_hex("another secret", &message.body))
        );
        assert_eq!(header("X-Deployhook-Event"), body(message)["event"]);
        assert_eq!(header("Content-Type"), "application/json");
        assert!(header("User-Agent").starts_with("deployhook/"));
        deliveries.push(header("X-Deployhook-Delivery"));
    }
    assert_ne!(deliveries[0], deliveries[1], "one delivery id per event");
}

/// A receiver failing once gets the message on the retry, once: the same body and delivery
/// id, and nothing after its 200.
#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_the_message_exactly_once() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .with_priority(2)
        .mount(&hook)
        .await;
    let app = spawn_app_with(|config, _| {
        config.notify = vec![NotifyConfig {
            events: vec![NotificationKind::DeploySucceeded],
            ..webhook(&hook)
        }];
    })
    .await;
    deploy(&app, 880_001, "production").await;
    app.wait_for_final_status(880_001).await;
    wait_for_messages(&hook, 2).await;
    wait_until_sent(&app).await;
    let messages = hook.received_requests().await.unwrap();
    assert_eq!(
        messages.len(),
        2,
        "the failed attempt and the retry, no more"
    );
    assert_eq!(messages[0].body, messages[1].body);
    assert_eq!(
        messages[0].headers.get("X-Deployhook-Delivery"),
        messages[1].headers.get("X-Deployhook-Delivery")
    );
    hook.verify().await;
}

/// A 4xx is the receiver refusing this message: not retried, kept as a failed call with the
/// receiver's answer (never its URL), counted by `/metrics`, listed by the dashboard. The
/// deploy does not care.
#[tokio::test]
async fn a_receiver_answering_400_is_given_up_and_shown() {
    let chat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid_payload"))
        .mount(&chat)
        .await;
    let app = spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.notify = vec![NotifyConfig {
            events: vec![NotificationKind::DeploySucceeded],
            ..slack(&chat)
        }];
    })
    .await;
    deploy(&app, 880_001, "production").await;
    let statuses = app.wait_for_final_status(880_001).await;
    assert_eq!(statuses.last().unwrap().state, "success");
    wait_until_sent(&app).await;
    let (kind, repository, deployment, attempts, error): (String, String, i64, i64, String) = app
        .database()
        .query_row(
            "SELECT kind, repository, deployment_id, attempts, last_error FROM outbox
             WHERE state = 'failed'",
            [],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), repository.as_str(), deployment, attempts),
        ("notification", "acme/widgets", 880_001, 1)
    );
    assert_eq!(
        error,
        "slack TEST_SLACK_URL refused deploy_succeeded (acme/widgets@6f1e3c9, production): \
         answered 400 Bad Request: invalid_payload"
    );
    assert_eq!(chat.received_requests().await.unwrap().len(), 1);

    let metrics = app.get_text(&format!("{}/metrics", app.url)).await;
    assert!(
        metrics.lines().any(|l| l == "deployhook_outbox_failed 1"),
        "{metrics}"
    );
    let session = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/", &session).await;
    // The deployment it was about links to its page.
    assert!(
        page.contains("notification of deployment <a href=\"/deployments/880001\">880001</a>"),
        "{page}"
    );
    assert!(
        page.contains("answered 400 Bad Request: invalid_payload"),
        "{page}"
    );
    assert!(!page.contains("slack-url-credential"), "{page}");
}

/// A receiver that never answers holds up only its own messages: a deploy it is told
/// about reaches GitHub as fast as one it is not (the baseline, in staging).
#[tokio::test]
async fn a_receiver_that_hangs_does_not_delay_the_deploy() {
    let chat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&chat)
        .await;
    let app = spawn_app_with(|config, _| {
        add_staging(config);
        config.notify = vec![NotifyConfig {
            environments: Some(vec![production()]),
            ..slack(&chat)
        }];
    })
    .await;
    let timed = |id: u64, environment: &'static str| {
        let app = &app;
        async move {
            let start = Instant::now();
            deploy(app, id, environment).await;
            let statuses = app.wait_for_final_status(id).await;
            assert_eq!(statuses.last().unwrap().state, "success");
            start.elapsed()
        }
    };
    let baseline = timed(880_002, "staging").await;
    let told = timed(880_001, "production").await;
    // The receiver has the first message and has not answered it: the second waits
    // behind it, in its own lane.
    wait_for_messages(&chat, 1).await;
    assert!(unsent(&app) >= 1);
    // The waiting messages count as notifications, not as GitHub's backlog: a chat outage
    // does not trip the GitHub-backlog alert.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    assert!(
        gauge("deployhook_notifications_pending") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        gauge("deployhook_outbox_oldest_age_seconds"),
        0.0,
        "{metrics}"
    );
    // Waiting for the receiver would cost at least its send timeout (5 s); a busy machine's
    // noise, far less.
    let timeout = deployhook::notify::SEND_TIMEOUT;
    let bound = (baseline * 3 + Duration::from_secs(2)).min(timeout - Duration::from_millis(500));
    assert!(
        told < bound,
        "the deploy took {told:?} with a hanging receiver, {baseline:?} without"
    );
}

/// A merge whose required check fails will not deploy: the team hears why.
#[tokio::test]
async fn a_failed_check_of_a_waiting_merge_is_told() {
    let hook = receiver(200).await;
    let app = spawn_app_with(|config, _| {
        config.environments[0].checks =
            Some(deployhook::model::Required::Named(vec!["lint".into()]));
        config.notify = vec![NotifyConfig {
            events: vec![
                NotificationKind::ChecksFailed,
                NotificationKind::ChecksTimedOut,
            ],
            ..webhook(&hook)
        }];
    })
    .await;
    FakeChecks::mount(&app.github).await;
    let merge = merged_pull_request(42, SHA, MERGED_AT);
    assert!(
        app.post_webhook("pull_request", &merge)
            .await
            .status()
            .is_success()
    );
    let failure = check_run_event(SHA, "lint", 4002, Some("failure"));
    assert!(
        app.post_webhook("check_run", &failure)
            .await
            .status()
            .is_success()
    );
    let messages = wait_for_messages(&hook, 1).await;
    wait_until_sent(&app).await;
    assert_eq!(hook.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        without_times(body(&messages[0]), false),
        json!({
            "event": "checks_failed",
            "repository": "acme/widgets",
            "environment": "production",
            "sha": SHA,
            "commit_url": format!("{}/acme/widgets/commit/{SHA}", app.github.uri()),
            "deployment": null,
            "pull_request": 42,
            "who": "octo-dev",
            "description": "check lint failure: https://github.com/acme/widgets/runs/4002",
            "duration_seconds": "…",
            "log_url": null,
            "at": "…",
            "rollback": false,
            "rolled_back_from": null,
            "changelog": null,
        })
    );
}

/// Under `latest`, a deployment that waited while a newer one arrived never runs: it is
/// told once, as superseded.
#[tokio::test]
async fn a_superseded_deployment_is_told_once_as_superseded() {
    let hook = receiver(200).await;
    let app = spawn_app_with(|config, dir: &Path| {
        let go = dir.join("go");
        let script = write_script(
            dir,
            "wait-for-go.sh",
            &format!("while [ ! -f '{}' ]; do sleep 0.02; done", go.display()),
        );
        config.environments[0].command = vec![script.display().to_string()];
        config.notify = vec![NotifyConfig {
            events: NotificationKind::ALL
                .into_iter()
                .filter(|e| *e != NotificationKind::DeployStarted)
                .collect(),
            ..webhook(&hook)
        }];
    })
    .await;
    deploy(&app, 880_001, "production").await;
    app.wait_for_github("the first deploy to start", |r| {
        crate::helpers::statuses(r)
            .iter()
            .any(|s| s.deployment == 880_001 && s.state == "in_progress")
    })
    .await;
    deploy(&app, 880_002, "production").await;
    deploy(&app, 880_003, "production").await;
    std::fs::write(app.dir.path().join("go"), "").unwrap();
    for id in [880_001, 880_002, 880_003] {
        app.wait_for_final_status(id).await;
    }
    wait_until_sent(&app).await;
    let told: Vec<(Value, Value)> = hook
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| (body(r)["deployment"].clone(), body(r)["event"].clone()))
        .collect();
    assert_eq!(
        told,
        [
            (json!(880_001), json!("deploy_succeeded")),
            (json!(880_002), json!("deploy_superseded")),
            (json!(880_003), json!("deploy_succeeded")),
        ]
    );
    let superseded = &hook.received_requests().await.unwrap()[1];
    let superseded = body(superseded);
    assert_eq!(
        superseded["description"],
        "superseded by deployment 880003; not deployed"
    );
    assert_eq!(superseded["log_url"], Value::Null);
    assert_eq!(superseded["duration_seconds"], Value::Null);
}

/// Locking and unlocking are told, with who and why; so is the lock a rollback takes.
#[tokio::test]
async fn locks_and_unlocks_are_told_with_who_and_why() {
    let hook = receiver(200).await;
    let mut app = spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.notify = vec![NotifyConfig {
            events: vec![NotificationKind::Locked, NotificationKind::Unlocked],
            ..webhook(&hook)
        }];
    })
    .await;
    let api = |method: reqwest::Method, path: &str| {
        app.http
            .request(method, format!("{}{path}", app.url))
            .bearer_auth(ADMIN_TOKEN)
    };
    let locked = api(reqwest::Method::POST, "/api/locks")
        .json(&json!({"environment": "production", "reason": "incident 4711", "by": "maria"}))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), reqwest::StatusCode::CREATED);
    let unlocked = api(reqwest::Method::DELETE, "/api/locks/production")
        .header("X-Deployhook-By", "omar")
        .send()
        .await
        .unwrap();
    assert_eq!(unlocked.status(), reqwest::StatusCode::OK);
    let messages = wait_for_messages(&hook, 2).await;
    wait_until_sent(&app).await;
    let bodies: Vec<Value> = messages.iter().map(body).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "locked");
    assert_eq!(bodies[0]["environment"], "production");
    assert_eq!(bodies[0]["who"], "maria");
    assert_eq!(bodies[0]["description"], "incident 4711");
    assert_eq!(bodies[1]["event"], "unlocked");
    assert_eq!(bodies[1]["who"], "omar");
    eprintln!("the locked body: {}", bodies[0]);
    app.stop().await;
}
