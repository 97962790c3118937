//! Deploy windows and freezes against the real server and a mocked GitHub: merges'
//! deployments wait behind a freeze, saying so wherever a queued reason is shown, and run
//! in their policy's order when it ends; forced deploys and rollbacks go through it; a
//! closed window holds merges but not a person's deployment; the dashboard shows what is
//! frozen; a receiver is told once when
//! a freeze starts and once when it ends. Freezes are set a few seconds from now.

use std::time::Duration;

use deployhook::config::{NotifyConfig, NotifyKind};
use deployhook::model::window::{Freeze, Window, parse_days};
use deployhook::model::{Policy, Schedule};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, fixture_json, spawn_app_with};
use crate::locks::{ADMIN_TOKEN, api};

/// `now` moved by `ms` milliseconds, to the second (freezes are written to the second).
fn in_ms(ms: i64) -> jiff::Timestamp {
    let at = jiff::Timestamp::now().as_second() * 1000 + ms;
    jiff::Timestamp::from_millisecond(at).unwrap()
}

fn freeze(from_ms: i64, until_ms: i64) -> Schedule {
    Schedule {
        freezes: vec![Freeze {
            from: in_ms(from_ms),
            until: in_ms(until_ms),
            reason: "holidays".into(),
        }],
        ..Schedule::open()
    }
}

/// The server with `schedule` on production (policy `queue`) and the admin API on.
async fn app_with(schedule: Schedule, notify: Vec<NotifyConfig>) -> TestApp {
    spawn_app_with(move |config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.environments[0].schedule = schedule;
        config.environments[0].policy = Policy::Queue;
        config.notify = notify;
    })
    .await
}

/// A `deployment` event `id` to production, its payload `payload` with the environment and
/// who asked for it.
async fn deployment(app: &TestApp, id: u64, sha: &str, payload: Value) {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    event["deployment"]["payload"] =
        json!({"environment": "production", "deploy_user": "octo-dev"});
    for (key, value) in payload.as_object().unwrap() {
        event["deployment"]["payload"][key] = value.clone();
    }
    let response = app
        .post_webhook("deployment", event.to_string().as_bytes())
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
}

/// A merge's deployment: its payload names the pull request and its merge time.
async fn merge(app: &TestApp, id: u64, sha: &str, pull_request: u64, merged_at: &str) {
    let payload = json!({"pull_request": pull_request, "merged_at": merged_at});
    deployment(app, id, sha, payload).await;
}

async fn state_of(app: &TestApp, id: u64) -> Value {
    api(
        app,
        reqwest::Method::GET,
        &format!("/api/deployments/{id}"),
        None,
    )
    .await["deployment"]
        .clone()
}

/// When GitHub was first told `state` for `deployment` (its index among the statuses).
async fn told_at(app: &TestApp, deployment: u64, state: &str) -> Option<usize> {
    app.statuses()
        .await
        .iter()
        .position(|s| s.deployment == deployment && s.state == state)
}

const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "ccccccc3cccccccccccccccccccccccccccccccc";

#[tokio::test]
async fn merges_wait_behind_a_freeze_saying_so_and_run_in_order_when_it_ends() {
    let app = app_with(freeze(-60_000, 4_000), vec![]).await;
    merge(&app, 501, A, 41, "2026-12-07T10:00:00Z").await;
    merge(&app, 502, B, 42, "2026-12-07T10:01:00Z").await;
    for id in [501, 502] {
        let queued = state_of(&app, id).await;
        assert_eq!(queued["state"], "queued", "{queued}");
        let reason = queued["waiting"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("frozen until ") && reason.ends_with(" UTC: holidays"),
            "{queued}"
        );
        assert_eq!(queued["waiting"]["hold"]["kind"], "freeze", "{queued}");
        assert_eq!(queued["waiting"]["hold"]["reason"], "holidays", "{queued}");
    }
    // GitHub's `queued` status says why too.
    let statuses = app.statuses().await;
    let queued = statuses
        .iter()
        .find(|s| s.deployment == 501 && s.state == "queued")
        .unwrap();
    assert!(
        queued.description.contains("frozen until"),
        "{}",
        queued.description
    );
    assert_eq!(told_at(&app, 501, "in_progress").await, None);
    // The freeze ends: both run, the older first.
    app.wait_for_final_status(501).await;
    app.wait_for_final_status(502).await;
    let (first, second) = (
        told_at(&app, 501, "in_progress").await.unwrap(),
        told_at(&app, 502, "in_progress").await.unwrap(),
    );
    assert!(first < second, "{:#?}", app.statuses().await);
    // The story as GitHub saw it (`-- --nocapture` shows it).
    for s in app.statuses().await {
        eprintln!(
            "GitHub got: deployment {} {} {:?}",
            s.deployment, s.state, s.description
        );
    }
}

#[tokio::test]
async fn a_forced_deploy_and_a_rollback_go_through_a_freeze_and_a_merge_does_not() {
    let app = app_with(freeze(-60_000, 3_600_000), vec![]).await;
    merge(&app, 601, A, 41, "2026-12-07T10:00:00Z").await;
    deployment(&app, 602, B, json!({"force": true})).await;
    deployment(&app, 603, C, json!({"rollback": true, "rolled_back": B})).await;
    let forced = app.wait_for_final_status(602).await;
    assert_eq!(forced.last().unwrap().state, "success", "{forced:?}");
    let rollback = app.wait_for_final_status(603).await;
    assert_eq!(rollback.last().unwrap().state, "success", "{rollback:?}");
    let merge = state_of(&app, 601).await;
    assert_eq!(merge["state"], "queued", "{merge}");
    assert_eq!(told_at(&app, 601, "in_progress").await, None);
    // The dashboard says the environment is frozen, and why the merge waits.
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/dashboard/live", &cookie).await;
    assert!(page.contains(r#"id="hold-production""#), "{page}");
    assert!(page.matches(" UTC: holidays").count() >= 2, "{page}");
}

#[tokio::test]
async fn a_closed_window_holds_a_merge_but_not_a_persons_deployment() {
    // Open one minute a day, at 00:00 UTC, never when this runs but then.
    let mut schedule = Schedule::open();
    schedule.windows = vec![Window {
        days: parse_days("daily").unwrap(),
        from: 0,
        until: 1,
    }];
    if schedule.hold_at(jiff::Timestamp::now()).is_none() {
        return;
    }
    let app = app_with(schedule, vec![]).await;
    merge(&app, 701, A, 41, "2026-12-07T10:00:00Z").await;
    deployment(&app, 702, B, json!({"deploy_user": "maria"})).await;
    let by_hand = app.wait_for_final_status(702).await;
    assert_eq!(by_hand.last().unwrap().state, "success", "{by_hand:?}");
    let merge = state_of(&app, 701).await;
    assert_eq!(merge["state"], "queued", "{merge}");
    let reason = merge["waiting"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("waits for the deploy window (opens ")
            && reason.ends_with(" 00:00 UTC)"),
        "{merge}"
    );
}

#[tokio::test]
async fn a_receiver_is_told_once_when_a_freeze_starts_and_once_when_it_ends() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let hook = NotifyConfig::new(
        NotifyKind::Webhook,
        "TEST_HOOK_URL",
        format!("{}/hooks/deployhook", receiver.uri()),
    );
    let mut app = app_with(freeze(2_000, 4_000), vec![hook]).await;
    let events = |requests: &[wiremock::Request]| -> Vec<String> {
        requests
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .map(|b| b["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = events(&receiver.received_requests().await.unwrap_or_default());
        if got.len() >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "told only {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for a second notice of either edge, were one to come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(events(&requests), ["freeze_started", "freeze_ended"]);
    let started: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(started["environment"], "production");
    assert!(
        started["description"]
            .as_str()
            .unwrap()
            .ends_with("UTC: holidays"),
        "{started}"
    );
}

#[tokio::test]
async fn a_deploy_command_is_refused_in_a_freeze_saying_until_when() {
    let app = crate::people::people_app(|config| {
        config.public_url = Some("https://deployhook.acme.example".into());
        for environment in &mut config.environments {
            if environment.name.as_ref() == "production" {
                environment.schedule = freeze(-60_000, 3_600_000);
            }
        }
    })
    .await;
    crate::commands::mount_conversation(&app.github).await;
    let comment =
        crate::commands::comment(301, 42, "wes-writer", ".deploy to production", "created");
    app.post_webhook("issue_comment", &comment).await;
    let said = crate::commands::wait_for_end(&app, 301).await;
    let replies: Vec<String> = said
        .iter()
        .filter_map(|s| match s {
            crate::commands::Said::Reply(text) => Some(text.clone()),
            crate::commands::Said::Reaction(_) => None,
        })
        .collect();
    let last = replies.last().cloned().unwrap_or_default();
    assert!(
        last.contains("production is frozen until ")
            && last.contains("holidays; ask again once it ends"),
        "{said:?}"
    );
    let created = app
        .github_requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/deployments"))
        .count();
    assert_eq!(created, 0, "nothing deployed");
}

/// A weekly window that opens at the next whole minute (UTC): the merges queued before it
/// wait, saying when it opens, and start when it opens, oldest first — the deploy worker
/// wakes at the window's edge, not at its next idle poll. It waits up to a minute for that
/// edge (`-- --nocapture` prints what GitHub was told, and when).
#[tokio::test]
async fn a_window_opening_starts_the_merges_queued_behind_it_in_order() {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let minute = u16::try_from(now.hour()).unwrap() * 60 + u16::try_from(now.minute()).unwrap();
    // Leave at least five seconds to queue the merges before the window opens.
    let from = if now.second() < 55 {
        minute + 1
    } else {
        minute + 2
    };
    if from + 2 > 24 * 60 {
        return; // Too close to midnight for a window on one day; the unit tests cover it.
    }
    let mut schedule = Schedule::open();
    schedule.windows = vec![Window {
        days: parse_days("daily").unwrap(),
        from,
        until: from + 2,
    }];
    let app = app_with(schedule, vec![]).await;
    merge(&app, 801, A, 41, "2026-12-07T10:00:00Z").await;
    merge(&app, 802, B, 42, "2026-12-07T10:01:00Z").await;
    for id in [801, 802] {
        let queued = state_of(&app, id).await;
        assert_eq!(queued["state"], "queued", "{queued}");
        assert_eq!(queued["waiting"]["hold"]["kind"], "window", "{queued}");
        let reason = queued["waiting"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("waits for the deploy window (opens "),
            "{queued}"
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen = 0;
    loop {
        let statuses = app.statuses().await;
        for s in &statuses[seen..] {
            eprintln!(
                "{} GitHub got: deployment {} {} {:?}",
                jiff::Timestamp::now().strftime("%H:%M:%S%.3f"),
                s.deployment,
                s.state,
                s.description
            );
        }
        seen = statuses.len();
        let done = |id| {
            statuses
                .iter()
                .any(|s| s.deployment == id && s.state == "success")
        };
        if done(801) && done(802) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{statuses:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let at = u16::try_from(opened.hour()).unwrap() * 60 + u16::try_from(opened.minute()).unwrap();
    assert!(
        at >= from,
        "ran at {opened}, before the window opened at minute {from}"
    );
    let (first, second) = (
        told_at(&app, 801, "in_progress").await.unwrap(),
        told_at(&app, 802, "in_progress").await.unwrap(),
    );
    assert!(first < second, "{:#?}", app.statuses().await);
}
