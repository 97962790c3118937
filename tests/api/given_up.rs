//! Given-up GitHub calls, resolved by an operator: retried once GitHub is back (the call
//! reaches GitHub, the gauge drops), or dismissed (kept, marked, no longer counted) —
//! through the admin API, the dashboard's buttons and `deployhook calls`.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wiremock::matchers::{method, path_regex};

use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    TestApp, WAIT, admin_cli, body_json, created_deployments, fixture, run_cli, spawn_app_with,
};

const ADMIN_TOKEN: &str = "an-admin-token-long-enough-for-tests";

/// The test server with the admin API on, giving up a failing call after 300 ms.
async fn app() -> TestApp {
    spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.outbox.max_age = Duration::from_millis(300);
    })
    .await
}

/// Matches while its flag is up. (Not a scoped mock: wiremock 0.6 sorts its mocks by
/// priority in place, so dropping the guard of one with a priority ends another.)
struct While(Arc<AtomicBool>);

impl wiremock::Match for While {
    fn matches(&self, _: &wiremock::Request) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// GitHub answers every deployment creation with `status` until the flag returned is
/// lowered.
async fn github_refuses_creations(app: &TestApp, status: u16) -> Arc<AtomicBool> {
    let refusing = Arc::new(AtomicBool::new(true));
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
        .and(While(refusing.clone()))
        .respond_with(
            ResponseTemplate::new(status).set_body_json(serde_json::json!({"message": "boom"})),
        )
        .with_priority(1)
        .mount(&app.github)
        .await;
    refusing
}

/// `deployhook_outbox_failed`, as scraped.
async fn gauge(app: &TestApp) -> String {
    let text = app.get_text(&format!("{}/metrics", app.url)).await;
    text.lines()
        .find_map(|l| l.strip_prefix("deployhook_outbox_failed "))
        .unwrap_or("missing")
        .to_owned()
}

async fn wait_for_gauge(app: &TestApp, value: &str) {
    let deadline = Instant::now() + WAIT;
    while gauge(app).await != value {
        assert!(
            Instant::now() < deadline,
            "deployhook_outbox_failed never {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn api(app: &TestApp, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Deployhook-By", "maria")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, body_json(response).await)
}

/// Merges a pull request whose deployment creation GitHub refuses until it is given up;
/// the given-up call's id.
async fn a_given_up_creation(app: &TestApp) -> i64 {
    app.post_webhook("pull_request", &fixture("pull_request.closed.merged.json"))
        .await;
    wait_for_gauge(app, "1").await;
    let (status, listed) = api(app, reqwest::Method::GET, "/api/calls/failed").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let failed = listed["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{listed}");
    assert_eq!(failed[0]["kind"], "create_deployment");
    assert_eq!(failed[0]["repository"], "acme/widgets");
    failed[0]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_call_given_up_during_an_outage_is_sent_by_a_retry_once_github_is_back() {
    let app = app().await;
    let outage = github_refuses_creations(&app, 500).await;
    let id = a_given_up_creation(&app).await;
    let tried = created_deployments(&app.github_requests().await).len();
    assert!(
        tried >= 2,
        "a 500 is retried before it is given up: {tried}"
    );

    outage.store(false, Ordering::SeqCst);
    let probe = app
        .http
        .post(format!(
            "{}/repos/acme/widgets/deployments",
            app.github.uri()
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::CREATED, "GitHub is back");
    let (status, retried) = api(
        &app,
        reqwest::Method::POST,
        &format!("/api/calls/{id}/retry"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["retried"]["id"], id);
    assert_eq!(retried["retried"]["state"], "pending");
    // GitHub receives the creation again, accepts it, and the call is done.
    app.wait_for_github("the retried creation", |r| {
        created_deployments(r).len() > tried
    })
    .await;
    wait_for_gauge(&app, "0").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = api(
            &app,
            reqwest::Method::POST,
            &format!("/api/calls/{id}/retry"),
        )
        .await;
        if status == StatusCode::NOT_FOUND {
            break; // sent, and so deleted
        }
        assert!(
            Instant::now() < deadline,
            "the retried call was never sent: {status} {body}; {:?}",
            app.database()
                .query_row("SELECT last_error, attempts FROM outbox", [], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
                })
                .ok()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, listed) = api(&app, reqwest::Method::GET, "/api/calls/failed").await;
    assert_eq!(listed["failed"], serde_json::json!([]));
}

#[tokio::test]
async fn a_dismissed_call_is_no_longer_counted_nor_listed_unresolved_and_cannot_be_retried() {
    let app = app().await;
    let _refused = github_refuses_creations(&app, 422).await;
    let id = a_given_up_creation(&app).await;

    let (status, dismissed) = api(
        &app,
        reqwest::Method::POST,
        &format!("/api/calls/{id}/dismiss"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dismissed}");
    assert_eq!(dismissed["dismissed"]["dismissed_by"], "maria");
    assert_eq!(gauge(&app).await, "0");
    let (_, listed) = api(&app, reqwest::Method::GET, "/api/calls/failed").await;
    assert_eq!(listed["failed"], serde_json::json!([]));
    assert_eq!(listed["dismissed"][0]["id"], id, "kept, marked: {listed}");

    for action in ["retry", "dismiss"] {
        let (status, body) = api(
            &app,
            reqwest::Method::POST,
            &format!("/api/calls/{id}/{action}"),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("dismissed"),
            "{body}"
        );
    }
    let (status, _) = api(&app, reqwest::Method::POST, "/api/calls/987654/retry").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let anonymous = app
        .http
        .post(format!("{}/api/calls/{id}/retry", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_dashboard_lists_a_given_up_call_with_retry_and_dismiss_buttons_that_work() {
    let app = app().await;
    let _refused = github_refuses_creations(&app, 422).await;
    let id = a_given_up_creation(&app).await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/", &cookie).await;
    assert!(page.contains(&format!("id=\"call-{id}\"")), "{page}");
    assert!(page.contains("action=\"/dashboard/calls/retry\""), "{page}");
    assert!(
        page.contains("action=\"/dashboard/calls/dismiss\""),
        "{page}"
    );
    let token = page
        .split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let dismiss = |token: String| {
        http.post(format!("{}/dashboard/calls/dismiss", app.url))
            .header("Cookie", &cookie)
            .form(&[("id", id.to_string()), ("form_token", token)])
            .send()
    };
    assert_eq!(
        dismiss(String::new()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        gauge(&app).await,
        "1",
        "a form without its token does nothing"
    );
    assert_eq!(
        dismiss(token).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(gauge(&app).await, "0");
    let (_, listed) = api(&app, reqwest::Method::GET, "/api/calls/failed").await;
    assert_eq!(
        listed["dismissed"][0]["dismissed_by"],
        "dashboard (client 127.0.0.1)"
    );
    let page = app.page("/", &cookie).await;
    assert!(!page.contains(&format!("id=\"call-{id}\"")), "{page}");
}

/// The CLI against `app`'s admin API, acting as maria.
fn deployhook(app: &TestApp, args: &[&str]) -> Command {
    let mut command = admin_cli(&app.url, ADMIN_TOKEN, args);
    command.env("USER", "maria");
    command
}

#[tokio::test]
async fn deployhook_calls_lists_retries_and_dismisses_through_the_server() {
    let app = app().await;
    let outage = github_refuses_creations(&app, 500).await;
    let id = a_given_up_creation(&app).await;

    let (ok, listed) = run_cli(deployhook(&app, &["calls"])).await;
    assert!(ok, "{listed}");
    assert!(listed.contains("create deployment"), "{listed}");
    assert!(listed.contains("acme/widgets"), "{listed}");
    assert!(listed.contains(&id.to_string()), "{listed}");

    let (ok, said) = run_cli(deployhook(&app, &["calls", "dismiss", "424242"])).await;
    assert!(!ok && said.contains("404"), "{said}");

    outage.store(false, Ordering::SeqCst);
    let (ok, said) = run_cli(deployhook(&app, &["calls", "retry", &id.to_string()])).await;
    assert!(ok, "{said}");
    assert!(said.contains(&format!("call {id} retried")), "{said}");
    wait_for_gauge(&app, "0").await;
    let (ok, listed) = run_cli(deployhook(&app, &["calls"])).await;
    assert!(ok && listed.contains("no call is given up"), "{listed}");
}
