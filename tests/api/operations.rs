//! Operating deployhook: `/readyz`, `/metrics` (parsed as Prometheus text, counters moving
//! as deliveries arrive and deploys run), and the dashboard's access control.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::{TestApp, fixture, fixture_json, spawn_app_with};

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";

/// One sample of the exposition: its name and labels, and its value.
type Samples = HashMap<String, f64>;

/// Parses the Prometheus/OpenMetrics text format strictly enough to fail on anything
/// malformed: every line is a `# HELP`/`# TYPE`/`# UNIT` comment, `# EOF`, or
/// `name{label="value",…} number`, and every sample belongs to a declared family.
fn parse_exposition(text: &str) -> Samples {
    let mut families: Vec<String> = Vec::new();
    let mut samples = Samples::new();
    let mut ended = false;
    for line in text.lines() {
        assert!(!ended, "a line after # EOF: {line}");
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let family = parts.next().expect("a family name");
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT"),
                "bad comment: {line}"
            );
            if kind == "TYPE" {
                let ty = parts.next().expect("a type");
                assert!(
                    [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "unknown"
                    ]
                    .contains(&ty),
                    "bad type: {line}"
                );
                families.push(family.to_owned());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line}"));
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(
                    !key.is_empty() && !value.contains('\n'),
                    "bad label in {line}"
                );
            }
        }
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "{name} has no # TYPE"
        );
        samples.insert(series.to_owned(), value);
    }
    assert!(ended, "the exposition must end with # EOF");
    samples
}

async fn scrape(app: &TestApp) -> Samples {
    let response = app
        .http
        .get(format!("{}/metrics", app.url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    parse_exposition(&response.text().await.unwrap())
}

fn value(samples: &Samples, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

async fn spawn_operated_app() -> TestApp {
    spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.metrics_token = Some(METRICS_TOKEN.to_owned().into());
    })
    .await
}

#[tokio::test]
async fn readyz_reports_the_database_schema_and_workers() {
    let app = spawn_operated_app().await;
    let (status, body) = crate::helpers::ready(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    // Every migration ran (their number grows with each release).
    let version = deployhook::store::SCHEMA_VERSION;
    assert_eq!(body["checks"]["schema"], format!("{version} of {version}"));
    assert_eq!(body["checks"]["deploy_worker"], "running");
    assert_eq!(body["checks"]["outbox_worker"], "running");
    assert_eq!(body["checks"]["gate_worker"], "running");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_deliveries_and_deploys() {
    let app = spawn_operated_app().await;
    let before = scrape(&app).await;
    let deployments_ok = r#"deployhook_deliveries_total{event="deployment",outcome="accepted"}"#;
    assert_eq!(value(&before, deployments_ok), 0.0);

    app.post_webhook("deployment", &fixture("deployment.created.json"))
        .await;
    app.post_webhook("pull_request", &fixture("pull_request.opened.json"))
        .await;
    let unsigned = app
        .http
        .post(format!("{}/event_handler", app.url))
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    app.wait_for_final_status(880_001).await;

    let after = scrape(&app).await;
    assert_eq!(value(&after, deployments_ok), 1.0);
    assert_eq!(
        value(
            &after,
            r#"deployhook_deliveries_total{event="pull_request",outcome="ignored"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"deployhook_deliveries_rejected_total{reason="missing_signature"}"#
        ),
        1.0
    );
    assert_eq!(value(&after, "deployhook_signature_failures_total"), 1.0);
    assert_eq!(
        value(
            &after,
            r#"deployhook_deploys_total{environment="production",state="success"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"deployhook_deploy_duration_seconds_count{environment="production"}"#
        ),
        1.0
    );
    // queued, in_progress and success were posted (the last perhaps just now).
    let statuses =
        r#"deployhook_github_calls_total{endpoint="create_deployment_status",status="201"}"#;
    assert!(value(&after, statuses) >= 2.0, "{after:?}");
    assert!(after.contains_key("deployhook_outbox_pending"), "{after:?}");
    assert!(after.contains_key("deployhook_outbox_oldest_age_seconds"));
}

#[tokio::test]
async fn a_merged_pull_request_deployed_counts_its_lead_time() {
    let app = spawn_operated_app().await;
    app.post_webhook("pull_request", &fixture("pull_request.closed.merged.json"))
        .await;
    let created = app
        .wait_for_github("the deployment", |r| {
            !crate::helpers::created_deployments(r).is_empty()
        })
        .await;
    // GitHub would now send the deployment, with the payload deployhook created it with.
    let request: serde_json::Value =
        serde_json::from_slice(&crate::helpers::created_deployments(&created)[0].body).unwrap();
    assert_eq!(request["payload"]["merged_at"], "2026-03-03T14:02:11Z");
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["payload"] = request["payload"].clone();
    app.post_webhook("deployment", deployment.to_string().as_bytes())
        .await;
    app.wait_for_final_status(880_001).await;
    let samples = scrape(&app).await;
    let count = r#"deployhook_lead_time_seconds_count{environment="production"}"#;
    assert_eq!(value(&samples, count), 1.0, "{samples:?}");
    let sum = r#"deployhook_lead_time_seconds_sum{environment="production"}"#;
    assert!(
        value(&samples, sum) > 3600.0,
        "merged in March: {samples:?}"
    );
}

#[tokio::test]
async fn metrics_need_their_token_when_one_is_set() {
    let app = spawn_operated_app().await;
    let url = format!("{}/metrics", app.url);
    let without = app.http.get(&url).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    scrape(&app).await; // the right one
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn log_in(app: &TestApp, http: &reqwest::Client, token: &str) -> reqwest::Response {
    http.post(format!("{}/login", app.url))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_dashboard_needs_the_admin_token_and_then_shows_deployments() {
    let app = spawn_operated_app().await;
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(880_042);
    app.post_webhook("deployment", deployment.to_string().as_bytes())
        .await;
    app.wait_for_final_status(880_042).await;
    let http = no_redirects();

    let anonymous = http.get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/login");
    let live = http
        .get(format!("{}/dashboard/live", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::UNAUTHORIZED);

    let wrong = log_in(&app, &http, "not-the-admin-token-at-all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));

    let right = log_in(&app, &http, ADMIN_TOKEN).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains(ADMIN_TOKEN),
        "the cookie must not carry the token"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = http
        .get(format!("{}/", app.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"id="deployment-880042""#), "{html}");
    assert!(html.contains(r#"<span class="state success">success</span>"#));
    assert!(html.contains("/deployments/880042/log?token="));

    // A forged session: right shape, wrong MAC.
    let (name_expiry, _) = session.split_once('.').unwrap();
    let forged = format!("{name_expiry}.{}", "ab".repeat(32));
    let refused = http
        .get(format!("{}/", app.url))
        .header(COOKIE, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn without_an_admin_token_the_dashboard_is_off_and_says_so() {
    let app = spawn_app_with(|_, _| {}).await;
    let response = app.http.get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let html = response.text().await.unwrap();
    assert!(html.contains("The dashboard is off"), "{html}");
    assert!(html.contains("DEPLOYHOOK_ADMIN_TOKEN"));
    let login = log_in(&app, &no_redirects(), "anything-at-all-0123").await;
    assert_eq!(login.status(), StatusCode::NOT_FOUND);
}
