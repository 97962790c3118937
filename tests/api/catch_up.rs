//! The operator's commands against a mocked GitHub: `redeliver` (only failed and
//! unrecorded deliveries, once), `deploy` and `deployments`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{TOKEN, fixture, spawn_app};

const HOOK: u64 = 470_000_001;
const DELIVERIES: &str = "/repos/acme/widgets/hooks/470000001/deliveries";

/// The binary, with a token and GitHub's URL, and nothing else of the test's environment.
fn deployhook(github: &MockServer, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .env_clear()
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", github.uri())
        .env("USER", "ops-oncall")
        .args(args);
    command
}

async fn run(mut command: std::process::Command) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn ago(minutes: u64) -> String {
    let at = SystemTime::now() - Duration::from_secs(minutes * 60);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn attempt(id: u64, guid: &str, minutes_ago: u64, status_code: u16) -> Value {
    let status = if status_code == 0 {
        "failed to connect to host".to_owned()
    } else if (200..300).contains(&status_code) {
        "OK".to_owned()
    } else {
        format!("Invalid HTTP Response: {status_code}")
    };
    json!({
        "id": id, "guid": guid, "delivered_at": ago(minutes_ago), "redelivery": false,
        "duration": 0.01, "status": status, "status_code": status_code,
        "event": "pull_request", "action": "closed", "installation_id": null,
        "repository_id": 1_296_269,
    })
}

/// GitHub's view of the hook: attempts newest first, two pages, and a redelivery that
/// succeeds (as it would once deployhook is back) and shows up in the list.
#[derive(Clone)]
struct HookHistory {
    attempts: Arc<Mutex<Vec<Value>>>,
    redelivered: Arc<Mutex<Vec<u64>>>,
}

impl Respond for HookHistory {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut attempts = self.attempts.lock().unwrap();
        if request.method == wiremock::http::Method::POST {
            let id: u64 = request
                .url
                .path()
                .split('/')
                .nth(7)
                .unwrap()
                .parse()
                .unwrap();
            self.redelivered.lock().unwrap().push(id);
            let guid = attempts
                .iter()
                .find(|a| a["id"] == id)
                .map(|a| a["guid"].as_str().unwrap().to_owned())
                .unwrap();
            let mut again = attempt(9_000 + id, &guid, 0, 202);
            again["redelivery"] = json!(true);
            attempts.insert(0, again);
            return ResponseTemplate::new(202).set_body_json(json!({}));
        }
        let second_page = request
            .url
            .query()
            .is_some_and(|q| q.contains("cursor=page2"));
        let (from, to) = if second_page {
            (3, attempts.len())
        } else {
            (0, 3)
        };
        let page: Vec<Value> = attempts[from.min(attempts.len())..to.min(attempts.len())].to_vec();
        let mut response = ResponseTemplate::new(200).set_body_json(page);
        if !second_page {
            let next = format!(
                "<{}{DELIVERIES}?per_page=100&cursor=page2>; rel=\"next\"",
                request.url.origin().ascii_serialization()
            );
            response = response.insert_header("link", next.as_str());
        }
        response
    }
}

#[tokio::test]
async fn redeliver_asks_again_only_for_failed_unrecorded_deliveries_and_then_for_nothing() {
    // deployhook recorded "recorded-guid" (GitHub still saw a failure: it answered late).
    let app = spawn_app().await;
    let response = crate::helpers::send_signed(
        &app.http,
        &app.url,
        "pull_request",
        &fixture("pull_request.opened.json"),
        "recorded-guid",
        HOOK,
    )
    .await
    .unwrap();
    assert!(response.status().is_success());
    let database = app.dir.path().join("deployhook.db");

    let github = MockServer::start().await;
    let history = HookHistory {
        attempts: Arc::new(Mutex::new(vec![
            attempt(106, "twice-failed", 10, 502),
            attempt(105, "recorded-guid", 20, 0),
            attempt(104, "delivered", 30, 202),
            attempt(103, "missed", 40, 0),
            attempt(102, "twice-failed", 50, 0),
            attempt(101, "too-old", 300, 0),
        ])),
        redelivered: Arc::default(),
    };
    Mock::given(path_regex(
        r"^/repos/acme/widgets/hooks/470000001/deliveries",
    ))
    .respond_with(history.clone())
    .mount(&github)
    .await;
    let database = database.display().to_string();
    let args = [
        "redeliver",
        "--repo",
        "acme/widgets",
        "--hook-id",
        "470000001",
        "--since",
        "2h",
        "--database",
        &database,
    ];

    let (ok, dry_run) = run(deployhook(&github, &args)).await;
    assert!(ok, "{dry_run}");
    assert!(
        dry_run.contains("5 delivery attempts since 2h: 1 delivered, 1 recorded"),
        "{dry_run}"
    );
    assert!(
        dry_run.contains("would redeliver missed pull_request.closed"),
        "{dry_run}"
    );
    assert!(
        dry_run.contains("would redeliver twice-failed"),
        "{dry_run}"
    );
    assert!(
        dry_run.contains("attempt 106"),
        "the latest attempt: {dry_run}"
    );
    assert!(!dry_run.contains("too-old") && !dry_run.contains("would redeliver recorded"));
    assert!(
        history.redelivered.lock().unwrap().is_empty(),
        "a dry run changes nothing"
    );

    let mut apply = args.to_vec();
    apply.push("--apply");
    let (ok, applied) = run(deployhook(&github, &apply)).await;
    assert!(ok, "{applied}");
    assert_eq!(*history.redelivered.lock().unwrap(), [103, 106]);

    let (ok, again) = run(deployhook(&github, &apply)).await;
    assert!(ok, "{again}");
    assert!(again.contains("0 to redeliver"), "{again}");
    assert_eq!(history.redelivered.lock().unwrap().len(), 2, "nothing more");
    let requests = github.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {TOKEN}"))
    );
}

#[tokio::test]
async fn deploy_creates_a_deployment_of_exactly_that_ref_and_deployments_lists_states() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/deployments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 880_100})))
        .mount(&github)
        .await;
    let (ok, out) = run(deployhook(
        &github,
        &[
            "deploy",
            "acme/widgets",
            "v1.4.2",
            "--environment",
            "production",
        ],
    ))
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("created deployment 880100 of acme/widgets@v1.4.2 to production"),
        "{out}"
    );
    let requests = github.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["ref"], "v1.4.2");
    assert_eq!(body["environment"], "production");
    assert_eq!(body["auto_merge"], false);
    assert_eq!(body["required_contexts"], json!([]));
    assert_eq!(body["payload"]["deploy_user"], "ops-oncall");

    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 880_100, "ref": "v1.4.2", "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
             "environment": "production", "task": "deploy", "created_at": "2026-11-26T15:00:00Z",
             "creator": {"login": "ops-oncall"}},
            {"id": 880_099, "ref": "main", "sha": "7a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
             "environment": "production", "task": "deploy", "created_at": "2026-11-26T14:00:00Z",
             "creator": {"login": "maria-merge"}},
        ])))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/deployments/880100/statuses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"state": "in_progress", "description": "running deploy.sh for 6f1e3c9"}
        ])))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/deployments/880099/statuses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"state": "failure", "description": "exit code 3 after 42s — see log"}
        ])))
        .mount(&github)
        .await;
    let (ok, table) = run(deployhook(
        &github,
        &[
            "deployments",
            "acme/widgets",
            "--environment",
            "production",
            "--limit",
            "2",
        ],
    ))
    .await;
    assert!(ok, "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("DEPLOYMENT"), "{table}");
    assert!(
        lines[1].starts_with("880100") && lines[1].contains("in_progress"),
        "{table}"
    );
    assert!(
        lines[2].contains("failure") && lines[2].contains("exit code 3"),
        "{table}"
    );
    let listed = github.received_requests().await.unwrap();
    let list = listed
        .iter()
        .find(|r| {
            r.url.path() == "/repos/acme/widgets/deployments"
                && r.method == wiremock::http::Method::GET
        })
        .unwrap();
    assert!(list.url.query().unwrap().contains("environment=production"));
}
