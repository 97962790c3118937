//! Approving through the web layer (issue 23): people give their verdicts with personal
//! tokens (the API and the CLI) against a fake GitHub that plays permissions and teams; a
//! deployment goes from `pending` ("waiting for approval by …") to deployed as GitHub and a
//! notification receiver see it; one and two approvals, the author's own change, people
//! who may not approve, a rejection; and the audit trail of a whole incident (lock →
//! rollback → approve → unlock), with the audit page in Chromium (`audit-incident.png`).

use std::collections::HashMap;
use std::time::Duration;

use deployhook::config::{NotifyConfig, NotifyKind};
use deployhook::model::{ApprovalRule, Grantee};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, WAIT, admin_cli, created_deployments, fixture_json, summary};
use crate::people::{ADMIN_TOKEN, REPO, call, make_token, people_app, sign_in_with_github};

const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "ccccccc3cccccccccccccccccccccccccccccccc";

/// The people app, production asking `required` approvals of `wes-writer` or `@acme/sre`,
/// a webhook receiver told of everything; personal tokens for everyone who can sign in.
async fn approval_app(required: u32) -> (TestApp, MockServer, HashMap<&'static str, String>) {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let hook = format!("{}/hooks/deployhook", receiver.uri());
    let app = people_app(move |config| {
        config.environments[0].approval = Some(ApprovalRule {
            reviewers: vec![
                Grantee::parse("wes-writer").unwrap(),
                Grantee::parse("@acme/sre").unwrap(),
            ],
            timeout: Duration::from_secs(3600),
            ..ApprovalRule::new(required)
        });
        config.notify = vec![NotifyConfig::new(
            NotifyKind::Webhook,
            "TEST_HOOK_URL",
            hook,
        )];
    })
    .await;
    let mut tokens = HashMap::new();
    for login in ["rita-reader", "wes-writer", "ada-admin", "sre-sam"] {
        let session = sign_in_with_github(&app, login).await;
        tokens.insert(login, make_token(&app, &session).await);
    }
    (app, receiver, tokens)
}

/// A `deployment` event of `acme/app` to production, made for `author`.
fn deployment(id: u64, sha: &str, author: &str) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    event["deployment"]["payload"]["deploy_user"] = json!(author);
    event["repository"]["full_name"] = json!(REPO);
    event["repository"]["name"] = json!("app");
    event.to_string().into_bytes()
}

/// The states and descriptions GitHub was told for `id`, in order.
async fn told(app: &TestApp, id: u64) -> Vec<(String, String)> {
    app.statuses()
        .await
        .into_iter()
        .filter(|s| s.deployment == id)
        .map(|s| (s.state, s.description))
        .collect()
}

async fn wait_until_told(app: &TestApp, id: u64, state: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !told(app, id).await.iter().any(|(s, _)| s == state) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "GitHub was never told {state} for {id}: {:?}",
            told(app, id).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The receiver's events, in order, as `event deployment description`.
async fn events(receiver: &MockServer) -> Vec<Value> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

async fn approve(app: &TestApp, token: &str, id: u64) -> (StatusCode, Value) {
    let path = format!("/api/deployments/{id}/approve");
    call(app, token, Method::POST, &path, None).await
}

/// Runs the CLI with `token` as the person's own; its success and what it printed.
async fn cli(app: &TestApp, token: &str, args: &[&str]) -> (bool, String) {
    let mut command = admin_cli(&app.url, "", args);
    command
        .env_remove("DEPLOYHOOK_ADMIN_TOKEN")
        .env("DEPLOYHOOK_TOKEN", token);
    crate::helpers::run_cli(command).await
}

#[tokio::test]
async fn an_approval_takes_a_deployment_from_pending_to_deployed_as_github_and_the_receiver_see_it()
{
    let (app, receiver, tokens) = approval_app(1).await;
    let answer = app
        .post_webhook("deployment", &deployment(7301, A, "octo-dev"))
        .await;
    assert!(answer.status().is_success());
    wait_until_told(&app, 7301, "pending").await;
    let (_, description) = told(&app, 7301).await.remove(0);
    assert_eq!(description, "waiting for approval by wes-writer, @acme/sre");
    // Nothing ran: the deploy command writes env.txt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!app.dir.path().join("env.txt").exists());
    let (ok, listed) = cli(&app, &tokens["wes-writer"], &["approvals"]).await;
    assert!(
        ok && listed.contains("7301") && listed.contains("0/1"),
        "{listed}"
    );
    let (ok, said) = cli(&app, &tokens["wes-writer"], &["approve", "7301"]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains("approved by wes-writer: queued to deploy"),
        "{said}"
    );
    let statuses = app.wait_for_final_status(7301).await;
    let states: Vec<&str> = statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["pending", "queued", "in_progress", "success"]);
    assert_eq!(statuses[1].description, "approved by wes-writer");
    assert!(app.dir.path().join("env.txt").exists());
    // The receiver: asked for the approval, then the deploy's start and end.
    let deadline = tokio::time::Instant::now() + WAIT;
    let kinds = loop {
        let got = events(&receiver).await;
        let kinds: Vec<String> = got
            .iter()
            .map(|e| e["event"].as_str().unwrap_or("").to_owned())
            .collect();
        if kinds.iter().any(|k| k == "deploy_succeeded") || tokio::time::Instant::now() > deadline {
            eprintln!("the receiver saw:");
            for e in &got {
                eprintln!("  {} {} {}", e["event"], e["who"], e["description"]);
            }
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        kinds,
        ["approval_requested", "deploy_started", "deploy_succeeded"]
    );
    eprintln!("GitHub saw (besides sign-ins and permission reads):");
    for status in &statuses {
        eprintln!(
            "  deployment 7301: {} {:?}",
            status.state, status.description
        );
    }
    let asked: Vec<String> = summary(&app.github_requests().await)
        .into_iter()
        .filter(|l| l.contains("/permission") || l.contains("/memberships/"))
        .collect();
    eprintln!(
        "  and {} permission or team reads, e.g. {:?}",
        asked.len(),
        asked.first()
    );
}

#[tokio::test]
async fn two_approvals_come_from_two_reviewers_and_never_from_the_wrong_people() {
    let (app, _receiver, tokens) = approval_app(2).await;
    app.post_webhook("deployment", &deployment(7311, A, "octo-dev"))
        .await;
    wait_until_told(&app, 7311, "pending").await;
    // May not approve: a reader (role), an admin who is no reviewer, the admin token.
    let (status, body) = approve(&app, &tokens["rita-reader"], 7311).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("needs write"),
        "{body}"
    );
    let (status, body) = approve(&app, &tokens["ada-admin"], 7311).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not a reviewer"),
        "{body}"
    );
    let (status, body) = approve(&app, ADMIN_TOKEN, 7311).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("given by people"),
        "{body}"
    );
    // One of two: nothing runs yet; the same person twice counts once.
    let (status, body) = approve(&app, &tokens["wes-writer"], 7311).await;
    assert_eq!(
        (status, body["queued"].clone()),
        (StatusCode::OK, json!(false)),
        "{body}"
    );
    let (status, body) = approve(&app, &tokens["wes-writer"], 7311).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("already approved"));
    assert_eq!(told(&app, 7311).await.len(), 1);
    // A member of @acme/sre is the second.
    let (status, body) = approve(&app, &tokens["sre-sam"], 7311).await;
    assert_eq!(
        (status, body["queued"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    let statuses = app.wait_for_final_status(7311).await;
    assert_eq!(statuses[1].description, "approved by wes-writer, sre-sam");
    assert_eq!(statuses.last().unwrap().state, "success");
    // The author of a change may not approve their own.
    app.post_webhook("deployment", &deployment(7312, B, "wes-writer"))
        .await;
    wait_until_told(&app, 7312, "pending").await;
    let (status, body) = approve(&app, &tokens["wes-writer"], 7312).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("author"), "{body}");
    // Nor by naming someone else in the payload: GitHub says who created it.
    let mut spoofed: Value = serde_json::from_slice(&deployment(7313, C, "octo-dev")).unwrap();
    spoofed["deployment"]["creator"]["login"] = json!("wes-writer");
    app.post_webhook("deployment", spoofed.to_string().as_bytes())
        .await;
    wait_until_told(&app, 7313, "pending").await;
    let (status, body) = approve(&app, &tokens["wes-writer"], 7313).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("author"), "{body}");
    // Each refusal is in the audit log with its reason.
    let (_, log) = call(
        &app,
        ADMIN_TOKEN,
        Method::GET,
        "/api/audit?action=approve",
        None,
    )
    .await;
    let refused = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .count();
    assert_eq!(refused, 5, "{log}");
}

#[tokio::test]
async fn a_rejection_ends_the_deployment_saying_who_and_why() {
    let (app, receiver, tokens) = approval_app(1).await;
    app.post_webhook("deployment", &deployment(7321, A, "octo-dev"))
        .await;
    wait_until_told(&app, 7321, "pending").await;
    let (ok, said) = cli(
        &app,
        &tokens["sre-sam"],
        &["reject", "7321", "--reason", "not during the sale"],
    )
    .await;
    assert!(ok, "{said}");
    let statuses = app.wait_for_final_status(7321).await;
    let last = statuses.last().unwrap();
    assert_eq!(last.state, "failure");
    assert_eq!(last.description, "rejected by sre-sam: not during the sale");
    assert!(!app.dir.path().join("env.txt").exists());
    let deadline = tokio::time::Instant::now() + WAIT;
    while !events(&receiver)
        .await
        .iter()
        .any(|e| e["event"] == "deploy_failed")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deploy_failed event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Too late to approve it now.
    let (status, body) = approve(&app, &tokens["wes-writer"], 7321).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

/// An incident, scripted: two deploys approved and run; then ada locks production, rolls
/// back, the rollback waits for approval and wes approves it; it runs through the lock;
/// ada unlocks. The audit log tells it in order, and the page shows it.
#[tokio::test]
async fn the_audit_log_tells_a_whole_incident_in_order() {
    let (app, _receiver, tokens) = approval_app(1).await;
    for (id, sha) in [(7331, A), (7332, B)] {
        app.post_webhook("deployment", &deployment(id, sha, "octo-dev"))
            .await;
        wait_until_told(&app, id, "pending").await;
        assert_eq!(
            approve(&app, &tokens["wes-writer"], id).await.0,
            StatusCode::OK
        );
        app.wait_for_final_status(id).await;
    }
    let ada = &tokens["ada-admin"];
    let lock = json!({"environment": "production", "reason": "incident 4711: checkout errors"});
    assert_eq!(
        call(&app, ada, Method::POST, "/api/locks", Some(lock))
            .await
            .0,
        StatusCode::CREATED
    );
    let rollback = json!({"repository": REPO, "environment": "production"});
    let (status, body) = call(&app, ada, Method::POST, "/api/rollback", Some(rollback)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sha"], A);
    // GitHub creates the rollback's deployment and sends its event.
    let requests = app
        .wait_for_github("the rollback's creation", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(7333);
    event["deployment"]["sha"] = json!(A);
    event["deployment"]["ref"] = json!(A);
    event["deployment"]["payload"] = created["payload"].clone();
    event["repository"]["full_name"] = json!(REPO);
    app.post_webhook("deployment", event.to_string().as_bytes())
        .await;
    wait_until_told(&app, 7333, "pending").await;
    // Its author is ada, who asked for it: someone else approves.
    assert_eq!(approve(&app, ada, 7333).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        approve(&app, &tokens["wes-writer"], 7333).await.0,
        StatusCode::OK
    );
    let statuses = app.wait_for_final_status(7333).await;
    assert_eq!(statuses.last().unwrap().state, "success", "{statuses:?}");
    let path = "/api/locks/production";
    assert_eq!(
        call(&app, ada, Method::DELETE, path, None).await.0,
        StatusCode::OK
    );
    let _ = C;

    let (_, log) = call(&app, ADMIN_TOKEN, Method::GET, "/api/audit?limit=100", None).await;
    let mut story: Vec<String> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !matches!(e["action"].as_str(), Some("sign_in" | "token_created")))
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap_or("-"),
                e["outcome"].as_str().unwrap(),
                e["via"].as_str().unwrap()
            )
        })
        .collect();
    story.reverse();
    assert_eq!(
        story,
        [
            "wes-writer approve 7331 done personal_token",
            "wes-writer approve 7332 done personal_token",
            "ada-admin lock - done personal_token",
            &format!("ada-admin rollback {A} done personal_token"),
            "ada-admin approve 7333 refused personal_token",
            "wes-writer approve 7333 done personal_token",
            "ada-admin unlock - done personal_token",
        ],
        "{log}"
    );
    if crate::browser::browser_available() {
        audit_page_screenshot(&app).await;
    }
}

/// The audit page after the incident, in Chromium, as ada sees it.
async fn audit_page_screenshot(app: &TestApp) {
    use fantoccini::Locator;
    let driver = crate::browser::Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 900).await;
    // ada signs in through the fake GitHub, as a browser does.
    crate::browser_people::mount_authorize(app, "ada-admin").await;
    browser
        .goto(&format!("{}/login/github", app.url))
        .await
        .unwrap();
    assert_eq!(
        crate::browser_people::signed_in_as(&browser).await,
        "ada-admin"
    );
    browser.goto(&format!("{}/audit", app.url)).await.unwrap();
    let table = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        table.contains("rollback") && table.contains("wes-writer"),
        "{table}"
    );
    crate::browser::screenshot(&browser, "audit-incident.png").await;
    browser.close().await.unwrap();
}

/// Two replicas on one PostgreSQL database: the deployment arrives at one, a person who
/// signed in on that one approves it through the other, and the deploy runs wherever the
/// leader is — the wait, the token and the verdict all live in the database.
#[tokio::test]
async fn an_approval_given_on_another_replica_releases_the_deploy() {
    let Some(database) =
        deployhook_testkit::postgres::shared().map(deployhook_testkit::postgres::Cluster::database)
    else {
        return;
    };
    let rule = ApprovalRule {
        reviewers: vec![Grantee::parse("wes-writer").unwrap()],
        ..ApprovalRule::new(1)
    };
    let (db, first_rule) = (database.clone(), rule.clone());
    let first = people_app(move |config| {
        config.database = db.parse().unwrap();
        config.environments[0].approval = Some(first_rule);
    })
    .await;
    let github = first.github.uri();
    let second = people_app(move |config| {
        config.database = database.parse().unwrap();
        // Both replicas talk to one GitHub: the first's.
        config.github.api_url = github;
        config.environments[0].approval = Some(rule);
    })
    .await;
    let answer = second
        .post_webhook("deployment", &deployment(7341, A, "octo-dev"))
        .await;
    assert!(answer.status().is_success());
    // Whichever replica leads sends the status, to the one GitHub.
    wait_until_told(&first, 7341, "pending").await;
    let session = sign_in_with_github(&second, "wes-writer").await;
    let token = make_token(&second, &session).await;
    let (_, listed) = call(&first, &token, Method::GET, "/api/approvals", None).await;
    assert_eq!(listed["waiting"][0]["deployment_id"], 7341, "{listed}");
    let (status, body) = approve(&first, &token, 7341).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let states = loop {
        let states: Vec<String> = told(&first, 7341)
            .await
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        if states.iter().any(|s| s == "success") || tokio::time::Instant::now() > deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(states, ["pending", "queued", "in_progress", "success"]);
    // It ran once, on one replica.
    let ran = [&first, &second]
        .iter()
        .filter(|app| app.dir.path().join("env.txt").exists())
        .count();
    assert_eq!(ran, 1);
}

/// Under `queue`, two deployments wait; the newer is approved and runs; approving the older
/// afterwards would put older code back: it ends `inactive`, saying why, and never runs.
#[tokio::test]
async fn approving_an_older_deployment_after_a_newer_one_ran_never_puts_it_back() {
    let app = people_app(|config| {
        config.environments[0].policy = deployhook::model::Policy::Queue;
        config.environments[0].approval = Some(ApprovalRule {
            reviewers: vec![Grantee::parse("wes-writer").unwrap()],
            ..ApprovalRule::new(1)
        });
    })
    .await;
    let session = sign_in_with_github(&app, "wes-writer").await;
    let wes = make_token(&app, &session).await;
    for (id, sha) in [(7351, A), (7352, B)] {
        app.post_webhook("deployment", &deployment(id, sha, "octo-dev"))
            .await;
        wait_until_told(&app, id, "pending").await;
    }
    assert_eq!(approve(&app, &wes, 7352).await.0, StatusCode::OK);
    app.wait_for_final_status(7352).await;
    let (status, body) = approve(&app, &wes, 7351).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("older code"),
        "{body}"
    );
    let statuses = app.wait_for_final_status(7351).await;
    let last = statuses.last().unwrap();
    assert_eq!(last.state, "inactive");
    assert!(
        last.description.contains("superseded by deployment 7352"),
        "{statuses:?}"
    );
    let env = std::fs::read_to_string(app.dir.path().join("env.txt")).unwrap();
    assert!(env.contains(&format!("DEPLOYHOOK_SHA={B}")), "{env}");
}
