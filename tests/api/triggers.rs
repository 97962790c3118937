//! Where merges deploy, against the fake GitHub with signed deliveries: an environment's
//! `paths` (the compare API read by the outbox worker, page by page, retried when GitHub
//! fails), and its `tags` and `releases` (a pushed tag, a published release).

use std::time::Duration;

use deployhook::config::{Config, Patterns};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::checks::{merged_pull_request, post, wait_for_created};
use crate::helpers::{TestApp, WAIT, fixture_json, spawn_app_with};

/// The commit production last deployed successfully.
const BASE: &str = "1111111111111111111111111111111111111111";
/// The merge commits of the merges under test.
const HEAD: &str = "2222222222222222222222222222222222222222";
const NEXT: &str = "3333333333333333333333333333333333333333";

/// Production deploys only merges that change `services/api/**` or `Cargo.lock`.
async fn monorepo_app() -> TestApp {
    spawn_app_with(|config: &mut Config, _| {
        config.environments[0].triggers.paths = Patterns::parse(
            &["services/api/**".to_owned(), "Cargo.lock".to_owned()],
            "paths",
        )
        .unwrap();
    })
    .await
}

/// Runs deployment `id` of `sha` to production through the server and waits for success:
/// the last successful deploy merges are compared with.
async fn deployed(app: &TestApp, id: u64, sha: &str) {
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(id);
    deployment["deployment"]["sha"] = json!(sha);
    deployment["deployment"]["ref"] = json!(sha);
    post(app, "deployment", deployment.to_string().as_bytes()).await;
    let statuses = app.wait_for_final_status(id).await;
    assert_eq!(statuses.last().unwrap().state, "success", "{statuses:?}");
}

/// `count` changed files named `{prefix}{n}`, as the compare API lists them.
fn files(prefix: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|n| json!({"filename": format!("{prefix}{n}"), "status": "modified"}))
        .collect()
}

/// Serves `pages` as the comparison of `base...head`, each page but the last with a
/// `Link: rel="next"`, as GitHub paginates it.
async fn mount_compare(app: &TestApp, base: &str, head: &str, pages: Vec<Vec<Value>>) {
    let bodies = pages
        .into_iter()
        .map(|files| {
            json!({"status": "ahead", "ahead_by": 1, "behind_by": 0, "total_commits": 1,
                   "commits": [], "files": files})
        })
        .collect();
    crate::helpers::mount_compare_pages(app, base, head, bodies).await;
}

fn compares(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.url.path().contains("/compare/"))
        .collect()
}

fn created(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/deployments"))
        .count()
}

/// The message of the newest `pull_request` delivery, once it contains `says`.
async fn merge_message(app: &TestApp, says: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message: String = app
            .database()
            .query_row(
                "SELECT message FROM deliveries WHERE event = 'pull_request'
                 ORDER BY received_at DESC, rowid DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .unwrap();
        if message.contains(says) {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{message:?} never said {says:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the fake GitHub received, one line per request: for the lead's closing note.
fn transcript(requests: &[Request]) -> String {
    requests
        .iter()
        .map(|r| {
            let query = r.url.query().map_or(String::new(), |q| format!("?{q}"));
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let said = match (body.get("ref"), body.get("state")) {
                (Some(git_ref), _) => format!(
                    " ref={} environment={}",
                    git_ref,
                    body["environment"].as_str().unwrap_or_default()
                ),
                (None, Some(state)) => format!(" state={state}"),
                (None, None) => String::new(),
            };
            format!("{} {}{query}{said}", r.method, r.url.path())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_merge_with_no_successful_deploy_before_it_deploys_without_comparing() {
    let app = monorepo_app().await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z"),
    )
    .await;
    let bodies = wait_for_created(&app, 1).await;
    assert_eq!(bodies[0]["ref"], HEAD);
    assert!(compares(&app.github_requests().await).is_empty());
}

#[tokio::test]
async fn a_merge_that_changes_a_matching_file_deploys_and_one_that_does_not_is_skipped() {
    let app = monorepo_app().await;
    deployed(&app, 900_001, BASE).await;
    mount_compare(&app, BASE, HEAD, vec![files("docs/page", 3)]).await;
    let merged = merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z");
    let ack = post(&app, "pull_request", &merged).await;
    crate::helpers::assert_ack(
        &ack,
        "accepted",
        "creating a deployment to production if it changed [\"services/api/**\", \"Cargo.lock\"]",
    );
    let message = merge_message(&app, "not deployed").await;
    assert!(
        message.contains(
            "production: not deployed, no file matching [\"services/api/**\", \"Cargo.lock\"] \
             changed since 1111111 (3 files compared)"
        ),
        "{message}"
    );
    assert_eq!(created(&app.github_requests().await), 0);
    let queued: i64 = app
        .database()
        .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(queued, 0, "the skipped creation is done, not left to retry");

    // The skipped merge holds nothing up: the next one, which changes the API, deploys.
    let mut changed = files("docs/other", 2);
    changed.push(json!({"filename": "services/api/src/main.rs", "status": "modified"}));
    mount_compare(&app, BASE, NEXT, vec![changed]).await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(8, NEXT, "2026-03-03T14:05:00Z"),
    )
    .await;
    let bodies = wait_for_created(&app, 1).await;
    assert_eq!(bodies[0]["ref"], NEXT);
    assert_eq!(bodies[0]["payload"]["pull_request"], 8);
    println!(
        "What the fake GitHub received (a skipped merge, then a matching one):\n{}",
        transcript(&app.github_requests().await)
    );
}

#[tokio::test]
async fn a_comparison_over_several_pages_is_read_until_a_file_matches() {
    let app = monorepo_app().await;
    deployed(&app, 900_001, BASE).await;
    let last = vec![json!({"filename": "Cargo.lock", "status": "modified"})];
    mount_compare(
        &app,
        BASE,
        HEAD,
        vec![files("web/a", 100), files("web/b", 100), last],
    )
    .await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z"),
    )
    .await;
    wait_for_created(&app, 1).await;
    let requests = app.github_requests().await;
    let pages: Vec<String> = compares(&requests)
        .iter()
        .map(|r| r.url.query().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        pages,
        [
            "per_page=100&page=1",
            "per_page=100&page=2",
            "per_page=100&page=3"
        ]
    );
}

#[tokio::test]
async fn many_pages_of_other_files_skip_but_a_comparison_at_githubs_cap_deploys() {
    let app = monorepo_app().await;
    deployed(&app, 900_001, BASE).await;
    mount_compare(
        &app,
        BASE,
        HEAD,
        vec![files("web/a", 100), files("web/b", 100), files("web/c", 50)],
    )
    .await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z"),
    )
    .await;
    merge_message(&app, "(250 files compared)").await;
    assert_eq!(compares(&app.github_requests().await).len(), 3);

    // 300 files is as many as GitHub lists: one that matches may be left out, so it deploys.
    mount_compare(
        &app,
        BASE,
        NEXT,
        vec![
            files("web/d", 100),
            files("web/e", 100),
            files("web/f", 100),
        ],
    )
    .await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(8, NEXT, "2026-03-03T14:05:00Z"),
    )
    .await;
    let bodies = wait_for_created(&app, 1).await;
    assert_eq!(bodies[0]["ref"], NEXT);
}

#[tokio::test]
async fn a_failing_compare_is_retried_before_the_deployment_is_created() {
    let app = monorepo_app().await;
    deployed(&app, 900_001, BASE).await;
    let route = format!("/repos/acme/widgets/compare/{BASE}...{HEAD}");
    Mock::given(method("GET"))
        .and(path(route.as_str()))
        .respond_with(ResponseTemplate::new(502).set_body_json(json!({"message": "Bad Gateway"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.github)
        .await;
    let changed = vec![json!({"filename": "services/api/Dockerfile", "status": "added"})];
    mount_compare(&app, BASE, HEAD, vec![changed]).await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z"),
    )
    .await;
    let bodies = wait_for_created(&app, 1).await;
    assert_eq!(bodies[0]["ref"], HEAD);
    assert_eq!(compares(&app.github_requests().await).len(), 3);
}

#[tokio::test]
async fn a_deployed_commit_github_cannot_compare_with_deploys_rather_than_guess() {
    let app = monorepo_app().await;
    deployed(&app, 900_001, BASE).await;
    // The deployed commit was force-pushed away: GitHub answers 404 for the comparison.
    Mock::given(method("GET"))
        .and(path(
            format!("/repos/acme/widgets/compare/{BASE}...{HEAD}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .mount(&app.github)
        .await;
    post(
        &app,
        "pull_request",
        &merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z"),
    )
    .await;
    let bodies = wait_for_created(&app, 1).await;
    assert_eq!(bodies[0]["ref"], HEAD);
    assert_eq!(
        compares(&app.github_requests().await).len(),
        1,
        "not retried"
    );
}

/// The commit the tags under test name, and an annotated tag's own object.
const TAGGED: &str = "4444444444444444444444444444444444444444";
const TAG_OBJECT: &str = "5555555555555555555555555555555555555555";

/// Production deploys pushed `v*` tags (and so, by default, no merges); with `releases`,
/// published releases instead.
async fn tagged_app(releases: bool) -> TestApp {
    spawn_app_with(move |config: &mut Config, _| {
        let production = &mut config.environments[0];
        production.deploy_on_merge = false;
        if releases {
            production.triggers.releases = true;
        } else {
            production.triggers.tags = Patterns::parse(&["v*".to_owned()], "tags").unwrap();
        }
    })
    .await
}

/// A `push` of `git_ref`, shaped as GitHub sends it: an annotated tag's `after` is the tag
/// object, its `head_commit` the tagged commit.
fn push(git_ref: &str, deleted: bool) -> Vec<u8> {
    let merged = fixture_json("pull_request.closed.merged.json");
    let (after, head_commit) = if deleted {
        (
            "0000000000000000000000000000000000000000".to_owned(),
            Value::Null,
        )
    } else {
        (
            TAG_OBJECT.to_owned(),
            json!({"id": TAGGED, "tree_id": BASE, "distinct": true, "message": "Release",
                   "timestamp": "2026-03-03T14:10:00Z"}),
        )
    };
    json!({
        "ref": git_ref, "before": if deleted { TAGGED } else { "0000000000000000000000000000000000000000" },
        "after": after, "created": !deleted, "deleted": deleted, "forced": false,
        "base_ref": null, "compare": "https://github.com/acme/widgets/compare/v1.2.0",
        "commits": [], "head_commit": head_commit,
        "pusher": {"name": "octo-dev", "email": "octo-dev@example.com"},
        "repository": merged["repository"], "sender": merged["sender"],
    })
    .to_string()
    .into_bytes()
}

/// A `release` event: `action` on release `tag`, a draft or a prerelease as told.
fn release(action: &str, tag: &str, draft: bool, prerelease: bool) -> Vec<u8> {
    let merged = fixture_json("pull_request.closed.merged.json");
    json!({
        "action": action,
        "release": {
            "id": 170001, "tag_name": tag, "target_commitish": "main", "name": "Spring",
            "draft": draft, "prerelease": prerelease, "author": merged["sender"],
            "created_at": "2026-03-03T14:10:00Z", "published_at": "2026-03-03T14:11:00Z",
            "assets": [], "body": "Notes",
        },
        "repository": merged["repository"], "sender": merged["sender"],
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_pushed_tag_that_matches_deploys_its_commit_and_others_do_not() {
    let app = tagged_app(false).await;
    for (body, says) in [
        (
            push("refs/tags/nightly-3", false),
            "tag nightly-3 of acme/widgets matches no environment's tags",
        ),
        (push("refs/tags/v1.1.0", true), "tag v1.1.0 was deleted"),
        (push("refs/heads/main", false), "only pushed tags deploy"),
        (
            merged_pull_request(7, HEAD, "2026-03-03T14:00:00Z"),
            "production deploys tags or releases, not merges",
        ),
    ] {
        let event = if says.contains("not merges") {
            "pull_request"
        } else {
            "push"
        };
        let ack = post(&app, event, &body).await;
        crate::helpers::assert_ack(&ack, "ignored", says);
    }
    let ack = post(&app, "push", &push("refs/tags/v1.2.0", false)).await;
    crate::helpers::assert_ack(
        &ack,
        "accepted",
        "tag v1.2.0 of acme/widgets: creating a deployment of 4444444 to production",
    );
    // The same push through a second webhook (an organisation's, say): a new delivery id
    // and hook, one deployment still.
    let again = app
        .post_delivery(
            "push",
            &push("refs/tags/v1.2.0", false),
            "org-hook-delivery-1",
            77,
        )
        .await;
    let again: Value = again.json().await.unwrap();
    crate::helpers::assert_ack(
        &again,
        "ignored",
        "already deployed through another delivery",
    );
    let bodies = wait_for_created(&app, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        created(&app.github_requests().await),
        1,
        "one deployment of the tag"
    );
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(
        bodies[0]["ref"], TAGGED,
        "the tagged commit, not the tag object"
    );
    assert_eq!(bodies[0]["payload"]["tag"], "v1.2.0");
    assert_eq!(bodies[0]["description"], "Deploy tag v1.2.0");
    assert!(
        bodies[0]["payload"].get("merged_at").is_none(),
        "{}",
        bodies[0]
    );

    // GitHub's `deployment` event for it runs the deploy command, which reads the tag.
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(900_002);
    deployment["deployment"]["sha"] = json!(TAGGED);
    deployment["deployment"]["ref"] = json!(TAGGED);
    deployment["deployment"]["payload"] = bodies[0]["payload"].clone();
    post(&app, "deployment", deployment.to_string().as_bytes()).await;
    let statuses = app.wait_for_final_status(900_002).await;
    assert_eq!(statuses.last().unwrap().state, "success", "{statuses:?}");
    let env = std::fs::read_to_string(app.dir.path().join("env.txt")).unwrap();
    assert!(
        env.lines()
            .any(|l| l.starts_with("DEPLOYHOOK_PAYLOAD=") && l.contains(r#""tag":"v1.2.0""#)),
        "{env}"
    );
}

#[tokio::test]
async fn a_published_release_deploys_its_tags_commit_and_drafts_and_prereleases_do_not() {
    let app = tagged_app(true).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/commits/v2.0.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"sha": TAGGED})))
        .mount(&app.github)
        .await;
    for (body, says) in [
        (
            release("published", "v2.0.0-rc.1", false, true),
            "prerelease v2.0.0-rc.1 of acme/widgets deploys nowhere",
        ),
        (
            release("created", "v2.0.0", true, false),
            "release v2.0.0 was a draft",
        ),
        (
            release("edited", "v2.0.0", false, false),
            "release v2.0.0 was edited",
        ),
    ] {
        let ack = post(&app, "release", &body).await;
        crate::helpers::assert_ack(&ack, "ignored", says);
    }
    let ack = post(
        &app,
        "release",
        &release("published", "v2.0.0", false, false),
    )
    .await;
    crate::helpers::assert_ack(
        &ack,
        "accepted",
        "creating a deployment of its commit, once resolved",
    );
    let bodies = wait_for_created(&app, 1).await;
    assert_eq!(bodies[0]["ref"], TAGGED);
    assert_eq!(bodies[0]["payload"]["tag"], "v2.0.0");
    assert_eq!(bodies[0]["description"], "Deploy release Spring (v2.0.0)");
    let requests = app.github_requests().await;
    println!(
        "What the fake GitHub received for a published release:\n{}",
        transcript(&requests)
    );
    let order: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        order,
        [
            "GET /repos/acme/widgets/commits/v2.0.0",
            "POST /repos/acme/widgets/deployments"
        ]
    );
}
