//! What a newcomer sees while a deploy waits, and afterwards in its history: a queued
//! deployment says what holds it (the lock — who, since when, why — or the deploy ahead of
//! it) in its delivery's answer, the admin API, `log --follow` and the dashboard; a
//! rollback is marked as one in statuses, logs, the dashboard, `deployments` and Slack,
//! and the commit already live offers no "Roll back to this"; the commands record a real
//! user name where `$USER` is unset.

use std::process::Stdio;
use std::time::Duration;

use deployhook::config::{NotifyConfig, NotifyKind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    TOKEN, TestApp, WAIT, admin_cli, body_json, created_deployments, deploy_with_script,
    fixture_json, spawn_app_with,
};
use crate::locks::{ADMIN_TOKEN, api};

const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const SLACK_PATH: &str = "/services/T0000/B0000/waiting-tests";

/// The server with the admin API on, its deploy script `body` (default: succeed).
async fn admin_app(body: Option<&'static str>, slack: Option<&MockServer>) -> TestApp {
    let slack = slack.map(|s| format!("{}{SLACK_PATH}", s.uri()));
    spawn_app_with(move |config, dir| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        if let Some(body) = body {
            deploy_with_script(config, dir, body);
        }
        if let Some(url) = slack {
            config.notify = vec![NotifyConfig::new(NotifyKind::Slack, "TEST_SLACK_URL", url)];
        }
    })
    .await
}

/// A person's `deployment` event for `id` of `sha` to production, with `payload`.
fn deployment(id: u64, sha: &str, payload: Option<Value>) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    if let Some(payload) = payload {
        event["deployment"]["payload"] = payload;
    }
    event.to_string().into_bytes()
}

async fn post_deployment(app: &TestApp, id: u64, sha: &str, payload: Option<Value>) -> Value {
    body_json(
        app.post_webhook("deployment", &deployment(id, sha, payload))
            .await,
    )
    .await
}

/// `deployhook log ID --follow` against `app`, started now, with no `$USER` nor anything
/// else of the test's environment.
fn follow(app: &TestApp, id: u64) -> tokio::process::Child {
    let mut command = tokio::process::Command::from(admin_cli(
        &app.url,
        ADMIN_TOKEN,
        &["log", &id.to_string(), "--follow"],
    ));
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A deployment into a locked environment is not "deploying": its delivery's answer, the
/// admin API, the dashboard and `log --follow` all say the lock holds it, whose it is, since
/// when and why; after the unlock it runs and the follower ends with its outcome.
#[tokio::test]
async fn a_deployment_held_by_a_lock_says_so_wherever_it_shows() {
    let app = admin_app(None, None).await;
    let lock = json!({"environment": "production", "reason": "incident 4711", "by": "alice"});
    api(&app, reqwest::Method::POST, "/api/locks", Some(lock)).await;
    let follower = follow(&app, 880_001);

    let ack = post_deployment(&app, 880_001, A, None).await;
    let message = ack["message"].as_str().unwrap_or_default();
    assert_eq!(ack["outcome"], "accepted", "{ack}");
    assert!(
        message.starts_with(
            "deployment 880001 of acme/widgets@aaaaaaa to production queued: production is \
             locked by alice since "
        ) && message.ends_with(": incident 4711 (until unlocked)"),
        "{message}"
    );
    let reason = message.split_once(" queued: ").unwrap().1.to_owned();

    let answer = api(&app, reqwest::Method::GET, "/api/deployments/880001", None).await;
    let waiting = &answer["deployment"]["waiting"];
    assert_eq!(waiting["reason"], reason.as_str(), "{answer}");
    assert_eq!(waiting["lock"]["locked_by"], "alice");
    assert_eq!(waiting["behind"], Value::Null);

    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let live = app.page("/dashboard/live", &cookie).await;
    let queued = live.split("<h2>Queued</h2>").nth(1).unwrap_or_default();
    assert!(
        queued.contains(&format!(
            "<td class=\"waiting\" data-label=\"Waiting for\">{reason}</td>"
        )),
        "{queued}"
    );

    // Without --follow, the same reason, said once.
    let once = admin_cli(&app.url, ADMIN_TOKEN, &["log", "880001"]);
    let once = tokio::process::Command::from(once).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&once.stdout);
    assert!(
        stdout.contains(&format!(
            "deployment 880001 is queued ({reason}): it has no log yet"
        )),
        "{stdout}"
    );

    // The follower has polled while it waited; then the unlock lets it run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    api(&app, reqwest::Method::DELETE, "/api/locks/production", None).await;
    let output = tokio::time::timeout(WAIT * 3, follower.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("deployment 880001 is queued: {reason}")),
        "{stderr}"
    );
    assert!(stderr.contains("deployment 880001: success"), "{stderr}");
    let answer = api(&app, reqwest::Method::GET, "/api/deployments/880001", None).await;
    assert_eq!(answer["deployment"]["waiting"], Value::Null, "{answer}");
}

/// One deploy runs at a time per repository and environment: the next one says it is
/// behind the running one, in its answer and through the API.
#[tokio::test]
async fn a_deployment_behind_a_running_deploy_says_which() {
    let app = admin_app(
        // Written into the test's directory: `release` is looked for beside it.
        Some("cd \"$(dirname \"$0\")\"\nwhile [ ! -f release ]; do sleep 0.05; done"),
        None,
    )
    .await;
    let first = post_deployment(&app, 880_001, A, None).await;
    assert!(
        first["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("deploying deployment 880001"),
        "nothing holds the first: {first}"
    );
    app.wait_for_github("the first deploy to start", |r| {
        crate::helpers::statuses(r)
            .iter()
            .any(|s| s.deployment == 880_001 && s.state == "in_progress")
    })
    .await;
    let second = post_deployment(&app, 880_002, B, None).await;
    let message = second["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "deployment 880002 of acme/widgets@bbbbbbb to production queued: behind \
             deployment 880001, running since "
        ),
        "{message}"
    );
    let answer = api(&app, reqwest::Method::GET, "/api/deployments/880002", None).await;
    assert_eq!(answer["deployment"]["waiting"]["behind"], 880_001);
    assert_eq!(answer["deployment"]["waiting"]["lock"], Value::Null);
    std::fs::write(app.dir.path().join("release"), "").unwrap();
    app.wait_for_final_status(880_002).await;
}

/// A rollback, once run, is told as one: its status, its log, the dashboard's history,
/// the API and Slack; and "Roll back to this" is offered on the commit it replaced, never
/// on the one now live.
#[tokio::test]
async fn a_rollback_is_marked_as_one_and_the_live_commit_offers_no_rollback() {
    let chat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&chat)
        .await;
    let app = admin_app(None, Some(&chat)).await;
    for (id, sha) in [(990_001, A), (990_002, B)] {
        post_deployment(&app, id, sha, None).await;
        app.wait_for_final_status(id).await;
    }
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let offered = |page: &str, sha: &str| page.contains(&format!("name=\"to\" value=\"{sha}\""));
    let before = app.page("/dashboard/live", &cookie).await;
    assert!(offered(&before, A) && !offered(&before, B), "{before}");

    let rolled = json!({"repository": "acme/widgets", "environment": "production", "by": "maria"});
    api(&app, reqwest::Method::POST, "/api/rollback", Some(rolled)).await;
    let requests = app
        .wait_for_github("the rollback's creation", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    // GitHub numbers deployments in the order it creates them: the rollback's is newest.
    post_deployment(&app, 990_003, A, Some(created["payload"].clone())).await;
    let statuses = app.wait_for_final_status(990_003).await;
    let success = statuses.last().unwrap();
    assert_eq!(success.state, "success");
    assert!(
        success
            .description
            .starts_with("rolled back to aaaaaaa (from bbbbbbb) in "),
        "{success:?}"
    );

    let answer = api(&app, reqwest::Method::GET, "/api/deployments/990003", None).await;
    assert_eq!(answer["deployment"]["rollback"], true);
    assert_eq!(answer["deployment"]["rolled_back"], B);
    let log_path = answer["deployment"]["log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = app.get_text(&format!("{}{log_path}", app.url)).await;
    assert!(log.contains(&format!("rollback: to {A} from {B}")), "{log}");

    let after = app.page("/dashboard/live", &cookie).await;
    assert!(after.contains("<td>rollback from bbbbbbb</td>"), "{after}");
    // A runs now (rolled back to): offering it again would change nothing; B can return.
    assert!(!offered(&after, A) && offered(&after, B), "{after}");

    let slack = wait_for_slack(&chat, ":rewind: Rolled back").await;
    assert!(
        slack.starts_with(&format!(
            ":rewind: Rolled back *acme/widgets* in *production* to <{}/acme/widgets/commit/{A}|aaaaaaa> (from bbbbbbb) in ",
            app.github.uri()
        )),
        "{slack}"
    );
    assert!(!slack.contains("Deployed"), "{slack}");
    assert!(slack.contains("\nby maria"), "{slack}");
}

/// The text of the first Slack message containing `needle`, waiting up to [`WAIT`].
async fn wait_for_slack(chat: &MockServer, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let requests: Vec<Request> = chat.received_requests().await.unwrap_or_default();
        let texts = requests.iter().filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            body["text"].as_str().map(str::to_owned)
        });
        let all: Vec<String> = texts.collect();
        if let Some(text) = all.iter().find(|t| t.contains(needle)) {
            return text.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Slack message with {needle:?}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `deployhook deployments` marks a rollback by its payload, as GitHub lists it.
#[tokio::test]
async fn deployments_lists_a_rollback_as_one() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/acme/widgets/deployments$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": 18, "ref": A, "sha": A, "environment": "production", "task": "deploy",
            "created_at": "2026-01-01T00:00:00Z", "creator": {"login": "maria"},
            "payload": {"rollback": true, "rolled_back": B, "force": true},
        }, {
            "id": 17, "ref": "main", "sha": B, "environment": "production", "task": "deploy",
            "created_at": "2026-01-01T00:00:00Z", "creator": {"login": "maria"},
            "payload": {},
        }])))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/repos/acme/widgets/deployments/\d+/statuses$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"state": "success"}])))
        .mount(&github)
        .await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .env_clear()
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", github.uri())
        .args(["deployments", "acme/widgets"]);
    let output = command.output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("18 ") && lines[1].ends_with(&format!("{A} [rollback from bbbbbbb]")),
        "{text}"
    );
    assert!(lines[2].ends_with("main"), "{text}");
}

/// The system's name for the current uid, as `id -un` says it.
fn system_user() -> String {
    let id = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    assert!(id.status.success(), "id -un failed");
    String::from_utf8_lossy(&id.stdout).trim().to_owned()
}

/// Without `$USER` (cron, containers, systemd), a lock taken with `deployhook lock` names
/// the account that ran it, not a constant.
#[tokio::test]
async fn a_command_run_without_user_records_the_systems_name_for_its_uid() {
    let app = admin_app(None, None).await;
    let lock = admin_cli(
        &app.url,
        ADMIN_TOKEN,
        &["lock", "production", "--reason", "from cron"],
    );
    let output = tokio::process::Command::from(lock).output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    let user = system_user();
    assert!(text.contains(&format!("from cron (by {user})")), "{text}");
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"][0]["locked_by"], user.as_str());
    assert_ne!(user, "deployhook-cli");
}

/// On a server the admin commands run under sudo, where `$USER` is root: the lock names
/// the person sudo ran it for (`$SUDO_USER`). Only root believes `$SUDO_USER`: any other
/// user could set it to anyone.
#[tokio::test]
async fn a_command_run_under_sudo_records_the_person_not_root() {
    let app = admin_app(None, None).await;
    let mut lock = admin_cli(
        &app.url,
        ADMIN_TOKEN,
        &["lock", "production", "--reason", "from sudo"],
    );
    lock.env("USER", "root").env("SUDO_USER", "maria");
    let output = tokio::process::Command::from(lock).output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    // SAFETY: getuid(2) takes nothing and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let expected = if root { "maria" } else { "root" };
    assert_eq!(locks["locks"][0]["locked_by"], expected);
}
