//! What is in each deploy, end to end against the fake GitHub with signed deliveries: the
//! changelog read from the compare API over several pages and capped, a force-push (no
//! common ancestor), a first deploy, a rollback, `DEPLOYHOOK_PREVIOUS_SHA` as the command
//! sees it, the deployment page (escaping a hostile title) and the API, and the
//! notifications that list the titles (capped) or only link the page when not read yet.

use std::time::{Duration, Instant};

use deployhook::config::{NotifyConfig, NotifyKind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    TestApp, WAIT, admin_cli, fixture_json, run_cli, spawn_app_with, write_script,
};

const ADMIN_TOKEN: &str = "admin-token-for-changelog-tests-01";
const PUBLIC_URL: &str = "https://deploy.example.com";
const FIRST: &str = "1111111111111111111111111111111111111111";
const SECOND: &str = "2222222222222222222222222222222222222222";

/// The server with an admin token (for the API and the page), and `configure`'s changes.
async fn app_with(configure: impl FnOnce(&mut deployhook::config::Config)) -> TestApp {
    spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        configure(config);
    })
    .await
}

/// Deployment `id` of `sha` to production, run to its end; its final state.
async fn deployed(app: &TestApp, id: u64, sha: &str, payload: Value) -> String {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    for (key, value) in payload.as_object().into_iter().flatten() {
        event["deployment"]["payload"][key] = value.clone();
    }
    let response = app
        .post_webhook("deployment", event.to_string().as_bytes())
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let statuses = app.wait_for_final_status(id).await;
    statuses.last().unwrap().state.clone()
}

/// `count` commits numbered from `from`, as the compare API lists them: every third a
/// squash merge naming its pull request.
fn commits(from: usize, count: usize) -> Vec<Value> {
    (from..from + count)
        .map(|n| {
            let message = if n % 3 == 0 {
                format!("Change {n} (#{n})\n\nDetails.")
            } else {
                format!("Change {n}")
            };
            json!({
                "sha": format!("{n:040x}"),
                "commit": {"message": message, "author": {"name": "Someone"}},
                "author": if n % 2 == 0 { json!({"login": format!("dev{n}")}) } else { Value::Null },
            })
        })
        .collect()
}

/// Serves `pages` as the comparison of `base...head` (status `status`, `total` commits in
/// all), each page but the last with a `Link: rel="next"`.
async fn mount_compare(
    app: &TestApp,
    (base, head): (&str, &str),
    status: &str,
    total: usize,
    pages: Vec<Vec<Value>>,
) {
    let bodies = pages
        .into_iter()
        .map(|commits| {
            json!({"status": status, "total_commits": total, "commits": commits, "files": []})
        })
        .collect();
    crate::helpers::mount_compare_pages(app, base, head, bodies).await;
}

/// `GET /api/deployments/{id}`'s `deployment`, once its changelog is read.
async fn with_changelog(app: &TestApp, id: u64) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body: Value = app
            .http
            .get(format!("{}/api/deployments/{id}", app.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !body["deployment"]["changelog"].is_null() {
            return body["deployment"].clone();
        }
        assert!(Instant::now() < deadline, "no changelog: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn page(app: &TestApp, id: u64) -> String {
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    app.page(&format!("/deployments/{id}"), &cookie).await
}

fn compare_pages(app_requests: &[wiremock::Request]) -> Vec<String> {
    app_requests
        .iter()
        .filter(|r| r.url.path().contains("/compare/"))
        .map(|r| r.url.query().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_changelog_of_many_commits_is_read_over_several_pages_and_capped() {
    let app = app_with(|_| {}).await;
    assert_eq!(deployed(&app, 1, FIRST, json!({})).await, "success");
    let pages = vec![commits(1, 100), commits(101, 100), commits(201, 100)];
    mount_compare(&app, (FIRST, SECOND), "ahead", 340, pages).await;
    assert_eq!(deployed(&app, 2, SECOND, json!({})).await, "success");

    let deployment = with_changelog(&app, 2).await;
    let log = &deployment["changelog"];
    assert_eq!(log["state"], "too_many", "{log}");
    assert_eq!(log["total"], 340);
    assert_eq!(
        log["summary"],
        "340 commits since 1111111; the first 250 are listed"
    );
    let listed = log["commits"].as_array().unwrap();
    assert_eq!(listed.len(), 250, "capped");
    assert_eq!(
        listed[2],
        json!({"sha": format!("{:040x}", 3), "title": "Change 3 (#3)", "author": null,
               "pull_request": 3})
    );
    assert_eq!(listed[249]["title"], "Change 250");
    assert_eq!(listed[249]["author"], "dev250");
    assert_eq!(
        deployment["previous"],
        json!({"deployment": 1, "sha": FIRST})
    );
    // Three pages for 250 commits; none past them.
    assert_eq!(
        compare_pages(&app.github_requests().await),
        [
            "per_page=100&page=1",
            "per_page=100&page=2",
            "per_page=100&page=3"
        ]
    );

    let html = page(&app, 2).await;
    println!("{html}");
    assert!(html.contains("340 commits since 1111111; the first 250 are listed"));
    let github = app.github.uri();
    assert!(html.contains(&format!("<a href=\"{github}/acme/widgets/pull/3\">#3</a>")));
    assert!(html.contains("<a href=\"/deployments/1\">deployment 1</a>"));
    assert_eq!(html.matches("<tr class=\"commit\">").count(), 250);
    assert!(html.contains("merge of pull request #42, by octo-dev"));

    // `deployhook log` says the same before the log, capped.
    let (ok, said) = run_cli(admin_cli(&app.url, ADMIN_TOKEN, &["log", "2"])).await;
    println!("{said}");
    assert!(ok, "{said}");
    assert!(said.contains(
        "deployment 2 follows 1111111 (deployment 1): 340 commits since 1111111; \
         the first 250 are listed\n  0000000 Change 1\n"
    ));
    assert!(said.contains("  and 330 more\n"));
    let (_, said) = run_cli(admin_cli(&app.url, ADMIN_TOKEN, &["log", "1", "--follow"])).await;
    assert!(said.contains("deployment 1: first deploy here: no previous success known"));
}

#[tokio::test]
async fn a_force_push_says_history_was_rewritten_and_a_first_deploy_says_so() {
    let app = app_with(|_| {}).await;
    assert_eq!(deployed(&app, 1, FIRST, json!({})).await, "success");
    let first = with_changelog(&app, 1).await;
    assert_eq!(first["changelog"]["state"], "first_deploy");
    assert_eq!(first["previous"], Value::Null);
    assert!(
        page(&app, 1)
            .await
            .contains("first deploy here: no previous success known")
    );

    // No common ancestor: GitHub answers 404.
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/acme/widgets/compare/{FIRST}...{SECOND}"
        )))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": format!("No common ancestor between {FIRST} and {SECOND}."),
        })))
        .mount(&app.github)
        .await;
    assert_eq!(deployed(&app, 2, SECOND, json!({})).await, "success");
    let log = with_changelog(&app, 2).await["changelog"].clone();
    assert_eq!(log["state"], "unrelated_history", "{log}");
    assert_eq!(
        log["summary"],
        "history was rewritten since 1111111: no changelog from it"
    );
    // One attempt: a refusal is an answer, not a failure to retry.
    assert_eq!(compare_pages(&app.github_requests().await).len(), 1);

    // Diverged: the previous commit is not an ancestor; what the branch added is listed.
    const THIRD: &str = "3333333333333333333333333333333333333333";
    mount_compare(&app, (SECOND, THIRD), "diverged", 2, vec![commits(1, 2)]).await;
    assert_eq!(deployed(&app, 3, THIRD, json!({})).await, "success");
    let log = with_changelog(&app, 3).await["changelog"].clone();
    assert_eq!(log["state"], "unrelated_history");
    assert_eq!(log["commits"].as_array().unwrap().len(), 2);
    assert!(
        page(&app, 3)
            .await
            .contains("history was rewritten since 2222222")
    );
}

#[tokio::test]
async fn a_rollback_lists_the_commits_it_removes_and_the_same_commit_lists_none() {
    let app = app_with(|_| {}).await;
    assert_eq!(deployed(&app, 1, FIRST, json!({})).await, "success");
    mount_compare(&app, (FIRST, SECOND), "ahead", 2, vec![commits(1, 2)]).await;
    assert_eq!(deployed(&app, 2, SECOND, json!({})).await, "success");
    with_changelog(&app, 2).await;
    // Back to FIRST: GitHub says `behind` and lists nothing; the other way round lists
    // what the rollback removes.
    mount_compare(&app, (SECOND, FIRST), "behind", 0, vec![vec![]]).await;
    let rollback = json!({"rollback": true, "rolled_back": SECOND, "force": true});
    assert_eq!(deployed(&app, 3, FIRST, rollback).await, "success");
    let log = with_changelog(&app, 3).await["changelog"].clone();
    assert_eq!(
        (log["state"].clone(), log["backwards"].clone()),
        (json!("listed"), json!(true))
    );
    assert_eq!(
        log["summary"],
        "rolls back 2 commits deployed since 2222222"
    );
    let html = page(&app, 3).await;
    assert!(html.contains("the commits below are removed"), "{html}");
    assert!(html.contains("rollback by octo-dev (from 2222222)"));

    // FIRST again: nothing changed, and GitHub is not asked.
    let asked = compare_pages(&app.github_requests().await).len();
    assert_eq!(deployed(&app, 4, FIRST, json!({})).await, "success");
    let log = with_changelog(&app, 4).await["changelog"].clone();
    assert_eq!(
        (log["total"].clone(), log["state"].clone()),
        (json!(0), json!("listed"))
    );
    assert!(log["summary"].as_str().unwrap().contains("nothing changed"));
    assert_eq!(compare_pages(&app.github_requests().await).len(), asked);
}

#[tokio::test]
async fn the_command_sees_the_previous_success_empty_for_a_first_deploy() {
    let app = app_with(|_| {}).await;
    let env_file = app.dir.path().join("env.txt");
    let previous = || {
        let env = std::fs::read_to_string(&env_file).unwrap();
        env.lines()
            .find_map(|line| line.strip_prefix("DEPLOYHOOK_PREVIOUS_SHA="))
            .map(str::to_owned)
    };
    assert_eq!(deployed(&app, 1, FIRST, json!({})).await, "success");
    assert_eq!(previous().as_deref(), Some(""), "set, and empty");
    assert_eq!(deployed(&app, 2, SECOND, json!({})).await, "success");
    assert_eq!(previous().as_deref(), Some(FIRST));
}

#[tokio::test]
async fn the_page_escapes_a_hostile_title() {
    let app = app_with(|_| {}).await;
    assert_eq!(deployed(&app, 1, FIRST, json!({})).await, "success");
    let hostile = json!([{
        "sha": SECOND,
        "commit": {"message": "<script>alert('owned')</script><img src=x onerror=alert(1)> (#5)"},
        "author": {"login": "<b>mallory</b>"},
    }]);
    let pages = vec![hostile.as_array().unwrap().clone()];
    mount_compare(&app, (FIRST, SECOND), "ahead", 1, pages).await;
    assert_eq!(deployed(&app, 2, SECOND, json!({})).await, "success");
    with_changelog(&app, 2).await;
    let html = page(&app, 2).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"));
    assert!(!html.contains("<b>mallory</b>"));
    // Escaped as text: shown, never run.
    assert!(
        html.contains("&#60;script&#62;alert(&#39;owned&#39;)&#60;/script&#62;"),
        "{html}"
    );
    assert!(html.contains("&#60;b&#62;mallory&#60;/b&#62;"));
}

/// The receiver's bodies, once it has `count`.
async fn messages(hook: &MockServer, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let received = hook.received_requests().await.unwrap_or_default();
        if received.len() >= count {
            return received
                .iter()
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "{} messages", received.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_success_notification_lists_ten_titles_and_a_start_not_read_yet_links_the_page() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let url = format!("{}/hooks/deployhook", hook.uri());
    let app = spawn_app_with(|config, dir| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.public_url = Some(PUBLIC_URL.into());
        config.notify = vec![NotifyConfig::new(NotifyKind::Webhook, "TEST_HOOK_URL", url)];
        // The command waits for `go` (or the first deploy), so that the test decides
        // whether the changelog is read before the deploy ends.
        let go = dir.join("go");
        let script = write_script(
            dir,
            "deploy-when-told.sh",
            &format!(
                "[ -z \"$DEPLOYHOOK_PREVIOUS_SHA\" ] && exit 0\n\
                 i=0; while [ ! -f '{}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done",
                go.display()
            ),
        );
        config.environments[0].command = vec![script.display().to_string()];
    })
    .await;
    assert_eq!(deployed(&app, 1, FIRST, json!({})).await, "success");
    // GitHub answers the comparison slowly: the start is told before it is read.
    let route = format!("/repos/acme/widgets/compare/{FIRST}...{SECOND}");
    Mock::given(method("GET"))
        .and(path(route.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "ahead", "total_commits": 14,
                                      "commits": commits(1, 14)}))
                .set_delay(Duration::from_millis(700)),
        )
        .mount(&app.github)
        .await;
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(2);
    event["deployment"]["sha"] = json!(SECOND);
    event["deployment"]["ref"] = json!(SECOND);
    app.post_webhook("deployment", event.to_string().as_bytes())
        .await;
    with_changelog(&app, 2).await;
    std::fs::write(app.dir.path().join("go"), "").unwrap();
    app.wait_for_final_status(2).await;

    let bodies = messages(&hook, 4).await;
    let of = |event: &str, deployment: u64| {
        bodies
            .iter()
            .find(|b| b["event"] == event && b["deployment"] == deployment)
            .unwrap_or_else(|| panic!("no {event} of {deployment} in {bodies:?}"))
            .clone()
    };
    let page_url = format!("{PUBLIC_URL}/deployments/2");
    assert_eq!(
        of("deploy_started", 2)["changelog"],
        json!({"summary": null, "titles": [], "url": page_url}),
        "not read yet: only where to read it"
    );
    let success = of("deploy_succeeded", 2)["changelog"].clone();
    println!("{success}");
    assert_eq!(success["summary"], "14 commits since 1111111");
    assert_eq!(success["url"], page_url);
    let titles = success["titles"].as_array().unwrap();
    assert_eq!(titles.len(), 11, "ten titles, then how many more");
    assert_eq!(titles[0], "0000000 Change 1");
    assert_eq!(titles[2], "Change 3 (#3)");
    assert_eq!(titles[10], "and 4 more");
    assert_eq!(
        of("deploy_succeeded", 1)["changelog"]["summary"],
        "first deploy here: no previous success known"
    );
}

/// A pull request's worth of commits, as a team would read them on the page.
fn readable_commits() -> Vec<Value> {
    let titles = [
        ("Make widgets 3x faster (#42)", Some("octo-dev")),
        (
            "Fix the cache key for widgets in Europe (#43)",
            Some("maria"),
        ),
        (
            "Merge pull request #44 from acme/bump-serde",
            Some("renovate-bot"),
        ),
        ("Bump serde from 1.0.210 to 1.0.215", None),
        ("Document the new cache in README (#45)", Some("wes")),
    ];
    titles
        .iter()
        .enumerate()
        .map(|(n, (title, login))| {
            json!({
                "sha": format!("{:x}{:039x}", n + 10, n * 7919),
                "commit": {"message": title},
                "author": login.map(|login| json!({"login": login})),
            })
        })
        .collect()
}

#[tokio::test]
async fn in_chromium_a_deployment_page_shows_its_changelog_and_fits_a_phone() {
    use crate::browser::{Driver, browser_available, screenshot, widths};
    use fantoccini::Locator;
    if !browser_available() {
        return;
    }
    let app = app_with(|_| {}).await;
    assert_eq!(deployed(&app, 880_001, FIRST, json!({})).await, "success");
    mount_compare(&app, (FIRST, SECOND), "ahead", 5, vec![readable_commits()]).await;
    assert_eq!(deployed(&app, 880_002, SECOND, json!({})).await, "success");
    with_changelog(&app, 880_002).await;

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 900).await;
    let outcome = async {
        browser.goto(&format!("{}/login", app.url)).await?;
        browser
            .find(Locator::Id("token"))
            .await?
            .send_keys(ADMIN_TOKEN)
            .await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        // From the dashboard's table to the page.
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(
                "#deployment-880002 a[href='/deployments/880002']",
            ))
            .await?
            .click()
            .await?;
        let rows = browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("changelog"))
            .await?
            .find_all(Locator::Css("tr.commit"))
            .await?;
        assert_eq!(rows.len(), 5);
        let summary = browser.find(Locator::Id("summary")).await?.text().await?;
        assert!(summary.starts_with("5 commits since 1111111"), "{summary}");
        screenshot(&browser, "deployment-1280.png").await;
        browser.set_window_size(400, 1400).await?;
        browser.refresh().await?;
        let (scroll, inner) = widths(&browser).await;
        assert!(
            scroll <= inner,
            "the page scrolls sideways at {inner}px: {scroll}"
        );
        screenshot(&browser, "deployment-400.png").await;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.unwrap();
    outcome.unwrap();
}
