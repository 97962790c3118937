//! `spawn_app()`: the real server on a random port, against a wiremock GitHub, with a deploy
//! command the test writes; and `post_webhook`, which signs like GitHub.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deployhook::config::{Config, EnvironmentConfig, GitHubConfig};
use deployhook::config::{ConnectionLimits, OutboxConfig, Retention};
use deployhook::model::Environment;
use deployhook::web::Application;
use deployhook::webhook::signature::{WebhookSecrets, sign};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const SECRET: &str = "test-webhook-secret";
pub const TOKEN: &str = "ghp_test_token_do_not_leak";
/// The deployment id the mock GitHub gives every deployment it creates.
pub const CREATED_DEPLOYMENT_ID: u64 = 880_001;
/// How long a test waits for background work before failing instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server and everything around it.
pub struct TestApp {
    pub url: String,
    pub github: MockServer,
    pub http: reqwest::Client,
    /// Holds the deploy scripts and what they write.
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Writes an executable shell script into `dir`.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Makes the deploy command a script with `body`, written into the test's `dir`.
pub fn deploy_with_script(config: &mut Config, dir: &Path, body: &str) {
    let script = write_script(dir, "deploy-under-test.sh", body);
    config.environments[0].command = vec![script.display().to_string()];
}

/// Asserts an acknowledgement's outcome and that its message contains `says`.
pub fn assert_ack(ack: &Value, outcome: &str, says: &str) {
    assert_eq!(ack["outcome"], outcome, "{ack}");
    let message = ack["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(says),
        "{message:?} should contain {says:?}"
    );
}

/// A test's configuration: the defaults of `serve`, pointed at the mock and the temp dir,
/// with retries a hundred times faster.
pub fn test_config(github: &MockServer, command: Vec<String>, dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        webhook_secrets: WebhookSecrets::from_list(SECRET),
        github: GitHubConfig::with_token(github.uri(), TOKEN),
        database: dir
            .join("deployhook.db")
            .display()
            .to_string()
            .parse()
            .unwrap(),
        database_sync: deployhook::model::Sync::Full,
        database_log_limit: deployhook::store::DEFAULT_LOG_LIMIT,
        retention: Retention::default(),
        max_concurrent_deploys: 4,
        public_url: None,
        checks_poll: Duration::from_secs(300),
        outbox: OutboxConfig {
            first_retry: Duration::from_millis(10),
            max_retry: Duration::from_millis(200),
            max_age: Duration::from_secs(24 * 60 * 60),
            secondary_rate_limit: Duration::from_millis(300),
        },
        environments: vec![EnvironmentConfig {
            timeout: Duration::from_secs(30),
            ..EnvironmentConfig::new(Environment::parse("production").unwrap(), command)
        }],
        connections: ConnectionLimits::default(),
        shutdown_timeout: Duration::from_secs(20),
        lease: Duration::from_secs(30),
        admin_token: None,
        metrics_token: None,
        trusted_proxies: Default::default(),
        notify: vec![],
        log_deploy_output: true,
        sign_in: None,
        permission_cache: deployhook::config::DEFAULT_PERMISSION_CACHE,
        commands: Default::default(),
    }
}

/// The server with a deploy command that records its environment to `env.txt` and succeeds.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_, _| {}).await
}

/// The server, after `configure` adjusted the default test configuration. The deploy dir is
/// passed so `configure` can write its own scripts there.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config, &Path)) -> TestApp {
    let github = MockServer::start().await;
    mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env.txt");
    let script = write_script(
        dir.path(),
        "deploy.sh",
        &format!(
            "env > '{}'\necho \"deploying $DEPLOYHOOK_REPOSITORY@$DEPLOYHOOK_SHA\"",
            env_file.display()
        ),
    );
    let mut config = test_config(&github, vec![script.display().to_string()], dir.path());
    configure(&mut config, dir.path());
    let app = Application::build(config).await.unwrap();
    let url = format!("http://{}", app.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        url,
        github,
        http: reqwest::Client::new(),
        dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// `/readyz` once it says `ready` (its answer), or its last answer after [`WAIT`]: the
/// workers start just after the server answers its first request, so a test that reads
/// them at once may see them `stopped`.
pub async fn ready(app: &TestApp) -> (reqwest::StatusCode, Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let response = app
            .http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if body["status"] == "ready" || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deployments are created with id [`CREATED_DEPLOYMENT_ID`]; statuses are accepted; the
/// list of deployments is empty.
pub async fn mount_github_defaults(github: &MockServer) {
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(10)
        .mount(github)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": CREATED_DEPLOYMENT_ID, "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
            "environment": "production", "task": "deploy",
        })))
        .with_priority(10)
        .mount(github)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments/\d+/statuses$"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 1, "state": "success"})),
        )
        .with_priority(10)
        .mount(github)
        .await;
}

/// A fixture's exact bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture parsed, to edit before sending.
pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// One status GitHub received.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedStatus {
    pub deployment: u64,
    pub state: String,
    pub description: String,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
}

impl TestApp {
    /// Posts `body` as GitHub would: JSON, signed with [`SECRET`], with a delivery id.
    pub async fn post_webhook(&self, event: &str, body: &[u8]) -> reqwest::Response {
        self.post_signed(event, "application/json", body.to_vec())
            .await
    }

    /// Posts `json` form-encoded in the `payload` field, signed over the form body.
    pub async fn post_webhook_form(&self, event: &str, json: &[u8]) -> reqwest::Response {
        let form =
            serde_urlencoded::to_string([("payload", std::str::from_utf8(json).unwrap())]).unwrap();
        self.post_signed(
            event,
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        )
        .await
    }

    async fn post_signed(
        &self,
        event: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let signature = sign(SECRET.as_bytes(), &body);
        self.request()
            .header("Content-Type", content_type)
            .header("X-GitHub-Event", event)
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts `body` signed as JSON with the given delivery and hook ids, as a redelivery
    /// (same ids) or another hook's delivery (same delivery id, other hook) would.
    pub async fn post_delivery(
        &self,
        event: &str,
        body: &[u8],
        delivery: &str,
        hook: u64,
    ) -> reqwest::Response {
        send_signed(&self.http, &self.url, event, body, delivery, hook)
            .await
            .unwrap()
    }

    /// The database, opened read-only beside the server (WAL lets both work).
    pub fn database(&self) -> rusqlite::Connection {
        open_database(&self.dir.path().join("deployhook.db"))
    }

    /// A bare request to the webhook endpoint with GitHub's delivery headers, nothing else.
    pub fn request(&self) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/event_handler", self.url))
            .header("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string())
            .header("X-GitHub-Hook-ID", "470000001")
            .timeout(WAIT)
    }

    /// The body of `GET url` (a full URL), whatever its status.
    pub async fn get_text(&self, url: &str) -> String {
        let response = self.http.get(url).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Signs in to the dashboard with `token`; the session cookie (`name=value`) it set.
    /// The text of a dashboard page, fetched with the session `cookie`.
    pub async fn page(&self, path: &str, cookie: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn sign_in(&self, token: &str) -> String {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = http
            .post(format!("{}/login", self.url))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let cookie = response.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// Every request GitHub received so far, in order.
    pub async fn github_requests(&self) -> Vec<Request> {
        self.github.received_requests().await.unwrap_or_default()
    }

    /// Waits until `done` holds for GitHub's requests; panics after [`WAIT`].
    pub async fn wait_for_github(
        &self,
        what: &str,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let requests = self.github_requests().await;
            if done(&requests) {
                return requests;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; GitHub received: {:#?}",
                summary(&requests)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The statuses posted for all deployments, in the order GitHub received them.
    pub async fn statuses(&self) -> Vec<PostedStatus> {
        statuses(&self.github_requests().await)
    }

    /// Waits until a final status (success, failure or error) is posted for `deployment`.
    pub async fn wait_for_final_status(&self, deployment: u64) -> Vec<PostedStatus> {
        let requests = self
            .wait_for_github("a final status", |r| {
                statuses(r).iter().any(|s| {
                    s.deployment == deployment
                        && matches!(
                            s.state.as_str(),
                            "success" | "failure" | "error" | "inactive"
                        )
                })
            })
            .await;
        statuses(&requests)
            .into_iter()
            .filter(|s| s.deployment == deployment)
            .collect()
    }

    /// Shuts the server down as SIGTERM would, waiting for its background work: after this,
    /// GitHub has received everything the server was ever going to send.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT * 3, server)
                .await
                .expect("the server did not stop in time")
                .unwrap()
                .unwrap();
        }
    }
}

/// Posts a signed JSON delivery to the server at `base_url`.
pub async fn send_signed(
    http: &reqwest::Client,
    base_url: &str,
    event: &str,
    body: &[u8],
    delivery: &str,
    hook: u64,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base_url}/event_handler"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-GitHub-Hook-ID", hook.to_string())
        .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), body))
        .body(body.to_vec())
        .timeout(WAIT)
        .send()
        .await
}

/// Opens a server's database for reading.
pub fn open_database(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// Whether a deployment's statuses, in the order GitHub received them, are a legal life:
/// `queued` first, then `in_progress` (unless superseded), then one final state, last.
/// Only a resend may repeat a state, right after itself: a call whose success GitHub saw
/// but deployhook did not record before a crash.
pub fn is_legal_order(states: &[&str]) -> bool {
    let rank = |s: &str| match s {
        "queued" => 0,
        "in_progress" => 1,
        _ => 2,
    };
    let mut distinct: Vec<&str> = states.to_vec();
    distinct.dedup();
    let finals = distinct.iter().filter(|s| rank(s) == 2).count();
    distinct.first() == Some(&"queued")
        && distinct.windows(2).all(|w| rank(w[0]) < rank(w[1]))
        && finals == 1
        && distinct.last().is_some_and(|s| rank(s) == 2)
}

/// Status posts among `requests`.
pub fn statuses(requests: &[Request]) -> Vec<PostedStatus> {
    requests
        .iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let deployment = r.url.path().split('/').nth(5).unwrap().parse().unwrap();
            PostedStatus {
                deployment,
                state: body["state"].as_str().unwrap().to_owned(),
                description: body["description"].as_str().unwrap_or_default().to_owned(),
                log_url: body["log_url"].as_str().map(str::to_owned),
                environment_url: body["environment_url"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// Deployment-creation requests among `requests`.
pub fn created_deployments(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| {
            r.method == wiremock::http::Method::POST && r.url.path().ends_with("/deployments")
        })
        .collect()
}

/// `METHOD /path` of each request, for failure messages.
pub fn summary(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

/// The response's JSON body.
pub async fn body_json(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The `deployhook` binary for the commands that use the admin API of the server at
/// `server`, with nothing of the test's environment (no `.env` either: it runs in the
/// target's temp dir).
pub fn admin_cli(server: &str, admin_token: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .env_clear()
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env("DEPLOYHOOK_SERVER", server)
        .env("DEPLOYHOOK_ADMIN_TOKEN", admin_token)
        .args(args);
    command
}

/// Runs a `deployhook` command off the runtime (the server under test runs on it): whether
/// it succeeded, and what it printed, stdout then stderr.
pub async fn run_cli(mut command: std::process::Command) -> (bool, String) {
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

/// Serves `bodies` as the pages of the comparison of `base...head` in acme/widgets, each
/// page but the last with a `Link: rel="next"`, as GitHub paginates it.
pub async fn mount_compare_pages(app: &TestApp, base: &str, head: &str, bodies: Vec<Value>) {
    let count = bodies.len();
    let route = format!("/repos/acme/widgets/compare/{base}...{head}");
    for (index, body) in bodies.into_iter().enumerate() {
        let page = index + 1;
        let mut answer = ResponseTemplate::new(200).set_body_json(body);
        if page < count {
            let next = format!(
                "<{}{route}?per_page=100&page={}>; rel=\"next\"",
                app.github.uri(),
                page + 1
            );
            answer = answer.insert_header("Link", next.as_str());
        }
        Mock::given(method("GET"))
            .and(wiremock::matchers::path(route.as_str()))
            .and(wiremock::matchers::query_param("page", page.to_string()))
            .respond_with(answer)
            .with_priority(5)
            .mount(&app.github)
            .await;
    }
}
