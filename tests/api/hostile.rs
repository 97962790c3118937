//! Hostile or merely strange input, each case reproduced from a report against the release
//! binary: ids past what the database stores, event names that are no event, refs that are
//! no ref, a branch name that would move a link to another host, a newline that would forge
//! a log line, and a second server reaching the database through another link.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::MockServer;

use deployhook::webhook::signature::sign;

use crate::helpers::{
    SECRET, TOKEN, WAIT, body_json, fixture_json, mount_github_defaults, spawn_app, spawn_app_with,
};

const DEPLOYMENT_ID: u64 = 880_001;

async fn post(app: &crate::helpers::TestApp, event: &str, payload: &Value) -> reqwest::Response {
    app.post_webhook(event, payload.to_string().as_bytes())
        .await
}

fn deliveries(app: &crate::helpers::TestApp) -> i64 {
    app.database()
        .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn ids_the_database_cannot_hold_are_a_client_error_not_a_retry_later() {
    let app = spawn_app().await;
    let too_big = json!(9_223_372_036_854_775_808_u64); // 2^63
    let mut cases = Vec::new();
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(u64::MAX);
    cases.push(("deployment", deployment, "deployment.id = 2^64-1"));
    let mut zero = fixture_json("deployment.created.json");
    zero["deployment"]["id"] = json!(0);
    cases.push(("deployment", zero, "deployment.id = 0"));
    let mut number = fixture_json("pull_request.closed.merged.json");
    number["pull_request"]["number"] = too_big.clone();
    cases.push(("pull_request", number, "pull_request.number = 2^63"));
    let mut installation = fixture_json("pull_request.closed.merged.json");
    installation["installation"] = json!({ "id": too_big });
    cases.push(("pull_request", installation, "installation.id = 2^63"));
    for (event, payload, what) in cases {
        let response = post(&app, event, &payload).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let body = body_json(response).await;
        assert!(
            body["error"].as_str().unwrap().contains("out of range"),
            "{what}: {body}"
        );
    }
    let header = app
        .http
        .post(format!("{}/event_handler", app.url))
        .header("X-GitHub-Delivery", "hook-id-out-of-range")
        .header("X-GitHub-Hook-ID", "9223372036854775808")
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "ping")
        .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), b"{}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), StatusCode::BAD_REQUEST);
    assert_eq!(deliveries(&app), 0, "nothing refused is recorded");
}

#[tokio::test]
async fn an_empty_or_outlandish_event_name_is_refused_and_not_stored() {
    let app = spawn_app().await;
    for name in [
        "",
        "  ",
        &"x".repeat(64 * 1024),
        "Pull-Request",
        "ping;drop",
    ] {
        let response = app
            .request()
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", name)
            .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), b"{}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "event name of {} bytes",
            name.len()
        );
    }
    assert_eq!(deliveries(&app), 0);
}

#[tokio::test]
async fn a_ref_that_is_no_git_ref_never_reaches_the_deploy_command() {
    let app = spawn_app().await;
    let env_file = app.dir.path().join("env.txt");
    for (i, bad_ref) in ["main\nFORGED", "-rf", &"a".repeat(100 * 1024), "a\0b"]
        .iter()
        .enumerate()
    {
        let id = DEPLOYMENT_ID + i as u64;
        let mut payload = fixture_json("deployment.created.json");
        payload["deployment"]["id"] = json!(id);
        payload["deployment"]["ref"] = json!(bad_ref);
        let response = post(&app, "deployment", &payload).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let statuses = app.wait_for_final_status(id).await;
        let last = statuses.last().unwrap();
        assert_eq!(last.state, "error", "{statuses:?}");
        assert!(last.description.contains("is not a git ref"), "{last:?}");
    }
    assert!(!env_file.exists(), "the deploy command ran");
}

#[tokio::test]
async fn a_branch_name_cannot_send_the_environment_link_to_another_host() {
    let app = spawn_app_with(|config, _| {
        config.environments[0].environment_url = Some("https://{ref}.preview.example.com/".into());
    })
    .await;
    let mut payload = fixture_json("deployment.created.json");
    payload["deployment"]["ref"] = json!("evil.example/#");
    post(&app, "deployment", &payload).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    let success = statuses.iter().find(|s| s.state == "success").unwrap();
    assert_eq!(
        success.environment_url.as_deref(),
        Some("https://evil.example%2F%23.preview.example.com/")
    );
}

#[tokio::test]
async fn a_newline_in_a_payload_cannot_forge_a_line_of_the_text_log() {
    let github = MockServer::start().await;
    mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deployhook"))
        .arg("serve")
        .env_clear()
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", github.uri())
        .env("DEPLOY_COMMAND", "true")
        .env("DEPLOYHOOK_DATABASE", dir.path().join("deployhook.db"))
        .env("DEPLOYHOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("DEPLOYHOOK_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            collected.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut payload = fixture_json("deployment_status.created.success.json");
    payload["deployment_status"]["environment"] = json!("production\nERROR FORGED deploy failed");
    let body = payload.to_string();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/event_handler"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "deployment_status")
        .header("X-GitHub-Delivery", "forge-1")
        .header(
            "X-Hub-Signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = Instant::now() + WAIT;
    loop {
        let logged = lines.lock().unwrap().clone();
        if let Some(line) = logged.iter().find(|l| l.contains("FORGED")) {
            assert!(
                line.contains("production\\nERROR FORGED"),
                "the newline is escaped within its own line: {line}"
            );
            assert!(
                !logged.iter().any(|l| l.starts_with("ERROR FORGED")),
                "{logged:#?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never logged: {logged:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_second_server_cannot_reach_a_running_servers_database_through_another_link() {
    let app = spawn_app().await;
    let database = app.dir.path().join("deployhook.db");
    let other = tempfile::tempdir().unwrap();
    let symlink = other.path().join("through-a-symlink.db");
    std::os::unix::fs::symlink(&database, &symlink).unwrap();
    let hard_link = app.dir.path().join("through-a-hard-link.db");
    std::fs::hard_link(&database, &hard_link).unwrap();
    for path in [&symlink, &hard_link] {
        let err =
            deployhook::store::Store::open(path.to_str().unwrap(), deployhook::model::Sync::Full)
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("another deployhook is using the database"),
            "{}: {err:#}",
            path.display()
        );
    }
}

const ADMIN_TOKEN: &str = "admin-token-for-hostile-tests-0123";

async fn dashboard_app() -> crate::helpers::TestApp {
    spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
    })
    .await
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn dashboard_status(app: &crate::helpers::TestApp, cookie: &str) -> StatusCode {
    browser()
        .get(format!("{}/", app.url))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn signing_out_ends_the_session_even_for_a_copy_of_its_cookie() {
    let app = dashboard_app().await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    assert_eq!(dashboard_status(&app, &cookie).await, StatusCode::OK);
    let out = browser()
        .post(format!("{}/logout", app.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection());
    // The browser dropped the cookie; a copy of it (stolen, or another tab) is dead too.
    assert_eq!(dashboard_status(&app, &cookie).await, StatusCode::SEE_OTHER);
    let other = app.sign_in(ADMIN_TOKEN).await;
    assert_eq!(dashboard_status(&app, &other).await, StatusCode::OK);
}

#[tokio::test]
async fn sign_in_and_sign_out_refuse_cross_site_posts() {
    let app = dashboard_app().await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    for (header, value) in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let login = browser()
            .post(format!("{}/login", app.url))
            .header(header, value)
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::FORBIDDEN, "{header}: {value}");
        assert!(login.headers().get("set-cookie").is_none());
        let logout = browser()
            .post(format!("{}/logout", app.url))
            .header("Cookie", &cookie)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), StatusCode::FORBIDDEN, "{header}: {value}");
    }
    assert_eq!(
        dashboard_status(&app, &cookie).await,
        StatusCode::OK,
        "a forged sign-out ended nothing"
    );
    // The dashboard's own form, as a browser sends it.
    let origin = app.url.clone();
    let same_site = browser()
        .post(format!("{}/login", app.url))
        .header("Origin", origin)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert!(same_site.status().is_redirection());
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_client_address() {
    let app = dashboard_app().await;
    let started = Instant::now();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..25 {
        let url = format!("{}/login", app.url);
        guesses.spawn(async move {
            browser()
                .post(url)
                .form(&[("token", format!("wrong-guess-{i:04}-xxxxxxxxxxxx"))])
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = guesses.join_next().await {
        statuses.push(status.unwrap());
    }
    let wrong = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(wrong <= 10 && wrong + limited == 25, "{statuses:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // From the guessing address even the right token is refused: over its limit, an
    // address has no token compared, so the refusal says nothing of the guess. (Another
    // address is not refused: see `admin_access`.)
    let right = browser()
        .post(format!("{}/login", app.url))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_sign_in_form_larger_than_a_few_kib_is_refused() {
    let app = dashboard_app().await;
    let response = browser()
        .post(format!("{}/login", app.url))
        .form(&[("token", "x".repeat(5 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
