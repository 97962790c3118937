//! The audit log against the real server: a lock, an unlock, a rollback and a retried call
//! through the admin API each leave one entry saying who, what, where and from which
//! address (an unlock of an environment not locked too, refused); the dashboard's sign-in
//! and sign-out are in it, wrong tokens are not; `/audit` shows the entries escaped, and
//! filters and pages them; the API refuses bad query values with a sentence; and
//! `deployhook audit` prints them as an aligned table, or as JSON.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{TestApp, WAIT, admin_cli, body_json, fixture_json, run_cli, spawn_app_with};

const ADMIN_TOKEN: &str = "an-admin-token-long-enough-for-audits";
const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// The test server with the admin API on, giving up a failing GitHub call after 300 ms.
async fn app() -> TestApp {
    spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.outbox.max_age = Duration::from_millis(300);
    })
    .await
}

/// An admin API request as `by` (in `X-Deployhook-By`, which the body's `by` overrides);
/// its status and JSON answer.
async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Deployhook-By", "jo");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status(), body_json(response).await)
}

/// The audit log's entries, newest first, as the API lists them.
async fn entries(app: &TestApp) -> Vec<Value> {
    let (status, answer) = api(app, reqwest::Method::GET, "/api/audit", None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["entries"].as_array().unwrap().clone()
}

/// The one entry added since `before` entries were listed: exactly one, or the test fails.
async fn one_more(app: &TestApp, before: usize) -> Value {
    let now = entries(app).await;
    assert_eq!(now.len(), before + 1, "one entry more: {now:#?}");
    now[0].clone()
}

/// Asserts who did what where: the entry's fields named in `expected`.
fn assert_entry(entry: &Value, expected: &Value) {
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&entry[key], value, "{key} of {entry:#}");
    }
}

/// Runs the deployment `id` of `sha` to production to its end.
async fn deployed(app: &TestApp, id: u64, sha: &str) {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    app.post_webhook("deployment", event.to_string().as_bytes())
        .await;
    app.wait_for_final_status(id).await;
}

/// GitHub answers every deployment creation with 500 while the flag returned is up.
async fn github_refuses_creations(app: &TestApp) -> Arc<AtomicBool> {
    struct While(Arc<AtomicBool>);
    impl wiremock::Match for While {
        fn matches(&self, _: &wiremock::Request) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }
    let refusing = Arc::new(AtomicBool::new(true));
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
        .and(While(refusing.clone()))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "boom"})))
        .with_priority(1)
        .mount(&app.github)
        .await;
    refusing
}

/// The id of the first call given up, once there is one.
async fn a_given_up_call(app: &TestApp) -> i64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, listed) = api(app, reqwest::Method::GET, "/api/calls/failed", None).await;
        if let Some(id) = listed["failed"][0]["id"].as_i64() {
            return id;
        }
        assert!(std::time::Instant::now() < deadline, "no call given up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_lock_an_unlock_a_rollback_and_a_retry_each_leave_one_entry_with_who_what_and_where() {
    let app = app().await;
    deployed(&app, 880_101, A).await;
    deployed(&app, 880_102, B).await;
    assert!(
        entries(&app).await.is_empty(),
        "deploys are not operator actions"
    );

    let lock = json!({"environment": "production", "reason": "incident 4711", "for": "2h",
                      "by": "maria"});
    let (status, _) = api(&app, reqwest::Method::POST, "/api/locks", Some(lock)).await;
    assert_eq!(status, StatusCode::CREATED);
    let locked = one_more(&app, 0).await;
    assert_entry(
        &locked,
        &json!({"actor": "maria", "via": "admin_token", "action": "lock",
                "repository": null, "environment": "production", "target": null,
                "address": "127.0.0.1", "outcome": "done"}),
    );
    let detail = locked["detail"].as_str().unwrap();
    assert!(detail.starts_with("incident 4711 (until "), "{detail}");

    let unlock = "/api/locks/production";
    let (status, _) = api(&app, reqwest::Method::DELETE, unlock, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_entry(
        &one_more(&app, 1).await,
        &json!({"actor": "jo", "action": "unlock", "environment": "production",
                "detail": "locked by maria: incident 4711", "outcome": "done"}),
    );
    // Unlocking what is not locked is refused, and the refusal is on record.
    let (status, _) = api(&app, reqwest::Method::DELETE, unlock, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_entry(
        &one_more(&app, 2).await,
        &json!({"actor": "jo", "action": "unlock", "environment": "production",
                "detail": "production is not locked", "outcome": "refused",
                "address": "127.0.0.1"}),
    );

    // The rollback's deployment cannot be created: its call is given up, then retried.
    let refusing = github_refuses_creations(&app).await;
    let rollback = json!({"repository": "acme/widgets", "environment": "production",
                          "by": "maria"});
    let (status, answer) = api(&app, reqwest::Method::POST, "/api/rollback", Some(rollback)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let rolled_back = one_more(&app, 3).await;
    assert_entry(
        &rolled_back,
        &json!({"actor": "maria", "action": "rollback", "repository": "acme/widgets",
                "environment": "production", "target": A, "outcome": "done",
                "address": "127.0.0.1"}),
    );
    let detail = rolled_back["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("rolled back by maria to aaaaaaa"),
        "{detail}"
    );

    let call = a_given_up_call(&app).await;
    refusing.store(false, Ordering::SeqCst);
    let retry = format!("/api/calls/{call}/retry");
    let (status, answer) = api(&app, reqwest::Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_entry(
        &one_more(&app, 4).await,
        &json!({"actor": "jo", "via": "admin_token", "action": "retry",
                "repository": "acme/widgets", "target": call.to_string(),
                "detail": "create deployment", "outcome": "done", "address": "127.0.0.1"}),
    );
    // A second retry: the call is no longer given up (pending, or sent and gone).
    let (status, _) = api(&app, reqwest::Method::POST, &retry, None).await;
    assert!(
        [StatusCode::CONFLICT, StatusCode::NOT_FOUND].contains(&status),
        "{status}"
    );
    let refused = one_more(&app, 5).await;
    assert_entry(
        &refused,
        &json!({"action": "retry", "target": call.to_string(), "outcome": "refused"}),
    );
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("call {call}")), "{detail}");
}

#[tokio::test]
async fn the_audit_page_shows_sign_ins_and_actions_escaped_filtered_and_a_page_at_a_time() {
    let app = app().await;
    let wrong = app
        .http
        .post(format!("{}/login", app.url))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(entries(&app).await.is_empty(), "a wrong token names no one");

    let cookie = app.sign_in(ADMIN_TOKEN).await;
    assert_entry(
        &one_more(&app, 0).await,
        &json!({"actor": "admin", "via": "admin_token", "action": "sign_in",
                "address": "127.0.0.1", "outcome": "done"}),
    );
    let lock = json!({"environment": "production", "by": "maria",
                      "reason": "<script>alert(1)</script> & more"});
    let (status, _) = api(&app, reqwest::Method::POST, "/api/locks", Some(lock)).await;
    assert_eq!(status, StatusCode::CREATED);

    let dashboard = app.page("/", &cookie).await;
    assert!(
        dashboard.contains(r#"href="/audit""#),
        "the dashboard links to it"
    );
    let page = app.page("/audit", &cookie).await;
    assert!(page.contains(r#"<table id="audit""#), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; more"),
        "{page}"
    );
    for shown in [
        r#"<td data-label="Who">maria <span class="muted">(admin token)</span></td>"#,
        r#"<td data-label="Who">admin <span class="muted">(admin token)</span></td>"#,
        r#"<td data-label="Action">sign_in</td>"#,
        r#"<td data-label="Action">lock</td>"#,
        r#"<td data-label="Environment">production</td>"#,
        r#"<td data-label="Address"><code>127.0.0.1</code></td>"#,
        r#"<td data-label="Outcome">done</td>"#,
    ] {
        assert!(page.contains(shown), "{shown} missing: {page}");
    }

    let locks_only = app.page("/audit?action=lock&actor=", &cookie).await;
    assert!(locks_only.contains("&#60;script&#62;"), "{locks_only}");
    assert!(
        !locks_only.contains(r#"<td data-label="Action">sign_in</td>"#),
        "{locks_only}"
    );
    assert!(locks_only.contains(r#"<option selected>lock</option>"#));
    let nobody = app.page("/audit?actor=nobody", &cookie).await;
    assert!(
        nobody.contains("No entry matching these filters."),
        "{nobody}"
    );

    // One a page: the newest, then a link to the one before, filters kept.
    let first = app.page("/audit?limit=1", &cookie).await;
    let ids = app_ids(&app).await;
    assert!(
        first.contains(&format!(r#"id="entry-{}""#, ids[0])),
        "{first}"
    );
    let older = format!(r#"href="/audit?limit=1&amp;before={}""#, ids[0]);
    assert!(first.contains(&older), "{first}");
    let second = app
        .page(&format!("/audit?limit=1&before={}", ids[0]), &cookie)
        .await;
    assert!(
        second.contains(&format!(r#"id="entry-{}""#, ids[1])),
        "{second}"
    );
    assert!(
        !second.contains("id=\"older-entries\""),
        "the oldest: {second}"
    );

    // Signing out is on record too.
    let signed_out = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/logout", app.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_entry(
        &one_more(&app, 2).await,
        &json!({"action": "sign_out", "via": "admin_token", "outcome": "done"}),
    );
    // And the page needs a session.
    let signed_out_page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/audit", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out_page.status(), StatusCode::SEE_OTHER);
}

/// The ids of the log's entries, newest first.
async fn app_ids(app: &TestApp) -> Vec<i64> {
    entries(app)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_api_pages_by_next_and_refuses_bad_query_values_saying_what_was_wrong() {
    let app = app().await;
    for environment in ["production", "production", "production"] {
        let lock = json!({"environment": environment, "reason": "r", "by": "maria"});
        let (status, _) = api(&app, reqwest::Method::POST, "/api/locks", Some(lock)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let ids = app_ids(&app).await;
    let (_, first) = api(&app, reqwest::Method::GET, "/api/audit?limit=2", None).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    assert_eq!(first["next"], ids[1]);
    let rest = format!("/api/audit?limit=2&before={}", ids[1]);
    let (_, last) = api(&app, reqwest::Method::GET, &rest, None).await;
    assert_eq!(last["entries"][0]["id"], ids[2]);
    assert_eq!(last["next"], Value::Null, "{last}");
    let (_, other) = api(&app, reqwest::Method::GET, "/api/audit?actor=jo", None).await;
    assert_eq!(other, json!({"entries": [], "next": null}));

    for (query, says) in [
        ("limit=0", "limit: \"0\" is not a number from 1 to 500"),
        (
            "limit=9999",
            "limit: \"9999\" is not a number from 1 to 500",
        ),
        (
            "before=yesterday",
            "before: \"yesterday\" is not an entry's id",
        ),
        (
            "action=delete",
            "action: \"delete\" is not an audited action",
        ),
        ("sort=asc", "\"sort\" is not a parameter of the audit log"),
    ] {
        let (status, answer) = api(
            &app,
            reqwest::Method::GET,
            &format!("/api/audit?{query}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(says), "{query}: {error}");
    }
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let response = app
        .http
        .get(format!("{}/audit?limit=0", app.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.unwrap();
    assert!(page.contains("is not a number from 1 to 500"), "{page}");

    let anonymous = app
        .http
        .get(format!("{}/api/audit", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The CLI against `app`'s admin API.
fn deployhook(app: &TestApp, args: &[&str]) -> Command {
    admin_cli(&app.url, ADMIN_TOKEN, args)
}

#[tokio::test]
async fn deployhook_audit_prints_an_aligned_table_with_control_characters_shown_or_json() {
    let app = app().await;
    let lock = json!({"environment": "production", "by": "a-rather-long-name",
                      "reason": "held \u{202e}txt.exe"});
    let (status, _) = api(&app, reqwest::Method::POST, "/api/locks", Some(lock)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api(&app, reqwest::Method::DELETE, "/api/locks/production", None).await;
    assert_eq!(status, StatusCode::OK);

    let (ok, printed) = run_cli(deployhook(&app, &["audit"])).await;
    assert!(ok, "{printed}");
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines[0].starts_with("#  WHEN"), "{printed}");
    assert_eq!(lines.len(), 3, "a header and two entries: {printed}");
    // Newest first, each column where its header is.
    let column = |line: &str, word: &str| line.find(word).unwrap();
    assert!(lines[1].contains("jo (admin token)") && lines[1].contains("unlock"));
    assert!(
        lines[2].contains("a-rather-long-name (admin token)"),
        "{printed}"
    );
    for (header, cell) in [
        ("ACTION", "unlock"),
        ("ADDRESS", "127.0.0.1"),
        ("OUTCOME", "done"),
    ] {
        assert_eq!(
            column(lines[0], header),
            column(lines[1], cell),
            "{header}:\n{printed}"
        );
    }
    assert_eq!(column(lines[0], "ACTION"), column(lines[2], "lock"));
    // The override is shown, not obeyed.
    assert!(!printed.contains('\u{202e}'), "{printed:?}");
    assert!(printed.contains(r"held \u{202e}txt.exe"), "{printed}");

    let (ok, printed) = run_cli(deployhook(
        &app,
        &["audit", "--action", "lock", "--limit", "1", "--json"],
    ))
    .await;
    assert!(ok, "{printed}");
    assert!(!printed.contains('\u{202e}'), "{printed:?}");
    let answer: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(answer["entries"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["entries"][0]["detail"], "held \u{202e}txt.exe");
    assert_eq!(answer["next"], Value::Null);

    let (ok, printed) = run_cli(deployhook(&app, &["audit", "--actor", "nobody"])).await;
    assert!(ok, "{printed}");
    assert_eq!(printed.trim(), "no audit entry matching these filters");
    let (ok, printed) = run_cli(deployhook(&app, &["audit", "--action", "delete"])).await;
    assert!(
        !ok && printed.contains("invalid value 'delete'"),
        "{printed}"
    );
}
