//! Preview environments against the fake GitHub, with signed deliveries: a pull request
//! opened deploys its head to `pr-42` (transient, not production, its URL filled); pushed
//! to twice, the newest head wins; closed, its `destroy_command` runs with the deploy's
//! variables and its deployments are marked `inactive`. The cap, forks, a missed `closed`
//! found by the periodic check, and the CI gate.
//!
//! The fake GitHub numbers the deployments it creates; the test then delivers each one's
//! `deployment` event, as GitHub would.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deployhook::config::{Config, EnvironmentConfig, PreviewConfig};
use deployhook::model::{Environment, Required};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{
    TestApp, WAIT, assert_ack, body_json, created_deployments, spawn_app_with, statuses,
    write_script,
};

const REPO: &str = "acme/widgets";
const HEAD_A: &str = "aaaaaaaaaa1111111111aaaaaaaaaa1111111111";
const HEAD_B: &str = "bbbbbbbbbb2222222222bbbbbbbbbb2222222222";
const HEAD_C: &str = "cccccccccc3333333333cccccccccc3333333333";
/// Signs in to the dashboard and the API.
const ADMIN_TOKEN: &str = "previews-admin-token-0123456789abcdef";
/// The first id the fake GitHub gives a deployment it creates.
const FIRST_ID: u64 = 900_001;

/// Answers a deployment's creation with the next id.
struct Numbered(AtomicU64);

impl Respond for Numbered {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = self.0.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        ResponseTemplate::new(201).set_body_json(json!({
            "id": id, "sha": body["ref"], "ref": body["ref"], "environment": body["environment"],
            "task": body["task"],
        }))
    }
}

/// The server with `production` and a preview environment `preview` (`pr-{pr}`), whose
/// deploy writes its environment to `deploy-<environment>.txt` and waits while `hold`
/// exists, and whose destroy writes it to `destroy.txt`.
async fn spawn(configure: impl FnOnce(&mut EnvironmentConfig)) -> TestApp {
    let app = spawn_app_with(|config: &mut Config, dir: &Path| {
        add_preview(config, dir, configure);
    })
    .await;
    mount_numbered(&app.github).await;
    app
}

/// Deployments created get ids from [`FIRST_ID`] on.
async fn mount_numbered(github: &wiremock::MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
        .respond_with(Numbered(AtomicU64::new(FIRST_ID)))
        .with_priority(1)
        .mount(github)
        .await;
}

/// Adds the environment `preview` to `config`, with its scripts in `dir`.
fn add_preview(config: &mut Config, dir: &Path, configure: impl FnOnce(&mut EnvironmentConfig)) {
    config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
    let deploy = write_script(
        dir,
        "preview-deploy.sh",
        &format!(
            "env > '{0}/deploy-'\"$DEPLOYHOOK_ENVIRONMENT\"'.txt'\n\
             while [ -e '{0}/hold' ]; do sleep 0.05; done\necho previewed",
            dir.display()
        ),
    );
    let destroy = write_script(
        dir,
        "preview-destroy.sh",
        &format!("env > '{}/destroy.txt'\necho destroyed", dir.display()),
    );
    let mut preview = EnvironmentConfig::new(
        Environment::parse("preview").unwrap(),
        vec![deploy.display().to_string()],
    );
    preview.timeout = Duration::from_secs(30);
    preview.environment_url = Some("https://{environment}.preview.example.com/?pr={pr}".into());
    preview.preview = Some(PreviewConfig::new(vec![destroy.display().to_string()]));
    configure(&mut preview);
    config.environments.push(preview);
}

/// A `pull_request` delivery for pull request `number` with head `sha`, from `from`.
fn pull_request(action: &str, number: u64, sha: &str, from: Option<&str>) -> Vec<u8> {
    json!({
        "action": action, "number": number,
        "pull_request": {
            "number": number, "title": "Add the blue widget", "merged": false,
            "merge_commit_sha": null, "user": {"login": "octo-dev", "type": "User"},
            "base": {"ref": "main", "sha": "1111111111aaaaaaaaaa2222222222bbbbbbbbbb"},
            "head": {"ref": "blue-widget", "sha": sha,
                     "repo": from.map(|f| json!({"full_name": f}))},
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
        "sender": {"login": "octo-dev", "type": "User"},
    })
    .to_string()
    .into_bytes()
}

/// Posts a pull request event; its answer.
async fn send(app: &TestApp, action: &str, number: u64, sha: &str) -> Value {
    body_json(
        app.post_webhook(
            "pull_request",
            &pull_request(action, number, sha, Some(REPO)),
        )
        .await,
    )
    .await
}

/// The bodies of the deployments created so far, in order.
async fn created(app: &TestApp) -> Vec<Value> {
    created_deployments(&app.github_requests().await)
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Waits until `count` deployments were created; their bodies.
async fn wait_created(app: &TestApp, count: usize) -> Vec<Value> {
    app.wait_for_github(&format!("{count} deployments created"), |r| {
        created_deployments(r).len() >= count
    })
    .await;
    created(app).await
}

/// Delivers the `deployment` event of the `index`th deployment created (from 0).
async fn deliver_created(app: &TestApp, index: usize) -> Value {
    let bodies = wait_created(app, index + 1).await;
    let body = &bodies[index];
    let event = json!({
        "action": "created",
        "deployment": {
            "id": FIRST_ID + index as u64, "sha": body["ref"], "ref": body["ref"],
            "task": body["task"], "environment": body["environment"],
            "payload": body["payload"], "description": body["description"],
            "creator": {"login": "deployhook-bot-owner", "type": "User"},
            "performed_via_github_app": null,
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
    });
    body_json(
        app.post_webhook("deployment", event.to_string().as_bytes())
            .await,
    )
    .await
}

/// Waits until `deployment` has a status in `state`.
async fn wait_state(app: &TestApp, deployment: u64, state: &str) {
    app.wait_for_github(&format!("{state} on {deployment}"), |r| {
        statuses(r)
            .iter()
            .any(|s| s.deployment == deployment && s.state == state)
    })
    .await;
}

/// The states posted for `deployment`, in order.
async fn states(app: &TestApp, deployment: u64) -> Vec<String> {
    app.statuses()
        .await
        .into_iter()
        .filter(|s| s.deployment == deployment)
        .map(|s| s.state)
        .collect()
}

/// The `previews` rows: (pull request, state), by pull request.
fn preview_states(app: &TestApp) -> Vec<(u64, String)> {
    let db = app.database();
    let mut statement = db
        .prepare("SELECT pull_request, state FROM previews ORDER BY pull_request")
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get::<_, i64>(0)?.unsigned_abs(), r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `NAME=value` lines of a file an `env > file` wrote.
fn variables(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What GitHub received about deployments, one line each: what the closing note shows.
async fn life(app: &TestApp) -> Vec<String> {
    app.github_requests()
        .await
        .iter()
        .filter(|r| r.url.path().contains("/deployments"))
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let what = if r.url.path().ends_with("/statuses") {
                format!("state={}", body["state"].as_str().unwrap_or_default())
            } else {
                format!(
                    "task={} environment={} ref={} transient={} production={} payload={}",
                    body["task"].as_str().unwrap_or_default(),
                    body["environment"].as_str().unwrap_or_default(),
                    &body["ref"].as_str().unwrap_or_default()
                        [..7.min(body["ref"].as_str().unwrap_or_default().len())],
                    body["transient_environment"],
                    body["production_environment"],
                    body["payload"]["preview"]
                )
            };
            format!("{} {} {what}", r.method, r.url.path())
        })
        .collect()
}

#[tokio::test]
async fn a_preview_opens_follows_its_pushes_and_is_destroyed_when_its_pull_request_closes() {
    let mut app = spawn(|_| {}).await;
    let ack = send(&app, "opened", 42, HEAD_A).await;
    assert_ack(&ack, "accepted", "previewing acme/widgets@aaaaaaa in pr-42");

    let first = &wait_created(&app, 1).await[0];
    assert_eq!(first["environment"], "pr-42");
    assert_eq!(first["ref"], HEAD_A);
    assert_eq!(first["task"], "deploy");
    assert_eq!(first["transient_environment"], true);
    assert_eq!(first["production_environment"], false);
    assert_eq!(first["payload"]["preview"]["pull_request"], 42);
    assert_eq!(first["payload"]["preview"]["environment"], "preview");

    // The first deploy runs and holds while two pushes arrive: both queue behind it.
    std::fs::write(app.dir.path().join("hold"), "").unwrap();
    deliver_created(&app, 0).await;
    wait_state(&app, FIRST_ID, "in_progress").await;
    send(&app, "synchronize", 42, HEAD_B).await;
    send(&app, "synchronize", 42, HEAD_C).await;
    let bodies = wait_created(&app, 3).await;
    assert_eq!(
        (bodies[1]["ref"].clone(), bodies[2]["ref"].clone()),
        (json!(HEAD_B), json!(HEAD_C))
    );
    deliver_created(&app, 1).await;
    deliver_created(&app, 2).await;
    std::fs::remove_file(app.dir.path().join("hold")).unwrap();

    // The newest push wins; the one between is retired without running.
    wait_state(&app, FIRST_ID + 2, "success").await;
    assert_eq!(states(&app, FIRST_ID + 1).await, ["queued", "inactive"]);
    let success = app
        .statuses()
        .await
        .into_iter()
        .find(|s| s.deployment == FIRST_ID + 2 && s.state == "success")
        .unwrap();
    assert_eq!(
        success.environment_url.as_deref(),
        Some("https://pr-42.preview.example.com/?pr=42")
    );
    assert_eq!(preview_states(&app), [(42, "live".to_owned())]);

    // Closed without merging: the destroy is a deployment of the last head, task destroy.
    let ack = send(&app, "closed", 42, HEAD_C).await;
    assert_ack(
        &ack,
        "accepted",
        "pr-42 its pull request closed: destroy queued",
    );
    let destroy = &wait_created(&app, 4).await[3];
    assert_eq!(destroy["task"], "destroy");
    assert_eq!(destroy["environment"], "pr-42");
    assert_eq!(destroy["ref"], HEAD_C);
    assert_eq!(destroy["required_contexts"], json!([]));
    deliver_created(&app, 3).await;
    wait_state(&app, FIRST_ID + 3, "inactive").await;
    wait_state(&app, FIRST_ID + 2, "inactive").await;
    wait_state(&app, FIRST_ID, "inactive").await;

    let destroyed = variables(&app.dir.path().join("destroy.txt"));
    for expected in [
        "DEPLOYHOOK_TASK=destroy".to_owned(),
        "DEPLOYHOOK_ENVIRONMENT=pr-42".to_owned(),
        format!("DEPLOYHOOK_SHA={HEAD_C}"),
        format!("DEPLOYHOOK_REPOSITORY={REPO}"),
        format!("DEPLOYHOOK_DEPLOYMENT_ID={}", FIRST_ID + 3),
        "DEPLOYHOOK_DEPLOY_USER=octo-dev".to_owned(),
    ] {
        assert!(
            destroyed.contains(&expected),
            "{expected} in {destroyed:#?}"
        );
    }
    let deployed = variables(&app.dir.path().join("deploy-pr-42.txt"));
    let names = |lines: &[String]| -> Vec<String> {
        let mut names: Vec<String> = lines
            .iter()
            .filter_map(|l| l.split_once('=').map(|(n, _)| n.to_owned()))
            .filter(|n| n.starts_with("DEPLOYHOOK_"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&deployed), names(&destroyed), "the same variables");
    assert_eq!(
        states(&app, FIRST_ID + 3).await,
        ["queued", "in_progress", "success", "inactive"]
    );
    app.stop().await;
    assert_eq!(preview_states(&app), [(42, "closed".to_owned())]);
    // The life of one preview as GitHub received it, for the closing note.
    println!("{}", life(&app).await.join("\n"));
}

#[tokio::test]
async fn past_the_limit_a_preview_waits_and_starts_when_one_closes() {
    let app = spawn(|preview| {
        if let Some(p) = preview.preview.as_mut() {
            p.limit = 2;
        }
    })
    .await;
    send(&app, "opened", 1, HEAD_A).await;
    send(&app, "opened", 2, HEAD_B).await;
    let ack = send(&app, "opened", 3, HEAD_C).await;
    assert_ack(
        &ack,
        "accepted",
        "pr-3 waits for room: 2 of 2 previews of preview alive",
    );
    wait_created(&app, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(created(&app).await.len(), 2, "the third waits");
    assert_eq!(
        preview_states(&app),
        [
            (1, "live".into()),
            (2, "live".into()),
            (3, "waiting".into())
        ]
    );
    // A push to the waiting one moves its head but starts nothing.
    send(&app, "synchronize", 3, HEAD_A).await;

    let ack = send(&app, "closed", 1, HEAD_A).await;
    assert_ack(&ack, "accepted", "pr-3 starts: a preview closed");
    let bodies = wait_created(&app, 4).await;
    let made: Vec<(String, String, String)> = bodies[2..]
        .iter()
        .map(|b| {
            (
                b["task"].as_str().unwrap().to_owned(),
                b["environment"].as_str().unwrap().to_owned(),
                b["ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        made.contains(&("destroy".into(), "pr-1".into(), HEAD_A.into())),
        "{made:?}"
    );
    assert!(
        made.contains(&("deploy".into(), "pr-3".into(), HEAD_A.into())),
        "{made:?}"
    );
    assert_eq!(
        preview_states(&app),
        [
            (1, "closing".into()),
            (2, "live".into()),
            (3, "live".into())
        ]
    );
    // Closing one that never started destroys nothing.
    send(&app, "opened", 4, HEAD_B).await;
    let ack = send(&app, "closed", 4, HEAD_B).await;
    assert_ack(&ack, "accepted", "pr-4 closed before it had room");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(created(&app).await.len(), 4);
}

#[tokio::test]
async fn a_pull_request_from_a_fork_gets_no_preview_unless_forks_are_allowed() {
    let app = spawn(|_| {}).await;
    let fork = pull_request("opened", 7, HEAD_A, Some("outsider/widgets"));
    let ack = body_json(app.post_webhook("pull_request", &fork).await).await;
    assert_ack(
        &ack,
        "ignored",
        "preview does not preview pull requests from forks (this one is from outsider/widgets)",
    );
    let deleted = pull_request("opened", 8, HEAD_A, None);
    let ack = body_json(app.post_webhook("pull_request", &deleted).await).await;
    assert_ack(&ack, "ignored", "from a deleted fork");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(created(&app).await.is_empty());

    let allowed = spawn(|preview| {
        if let Some(p) = preview.preview.as_mut() {
            p.forks = true;
        }
    })
    .await;
    let ack = body_json(allowed.post_webhook("pull_request", &fork).await).await;
    assert_ack(&ack, "accepted", "in pr-7");
    assert_eq!(wait_created(&allowed, 1).await[0]["environment"], "pr-7");
}

#[tokio::test]
async fn a_close_that_was_never_delivered_is_found_by_the_periodic_check() {
    let app = spawn(|preview| {
        if let Some(p) = preview.preview.as_mut() {
            p.check_every = Duration::from_millis(200);
        }
    })
    .await;
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = closed.clone();
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/pulls/42"))
        .respond_with(move |_: &Request| {
            let state = if state.load(Ordering::SeqCst) {
                "closed"
            } else {
                "open"
            };
            ResponseTemplate::new(200).set_body_json(json!({"number": 42, "state": state}))
        })
        .mount(&app.github)
        .await;
    send(&app, "opened", 42, HEAD_A).await;
    wait_created(&app, 1).await;
    // Asked again and again while open: nothing happens.
    app.wait_for_github("two reads of the pull request", |r| {
        r.iter()
            .filter(|r| r.url.path() == "/repos/acme/widgets/pulls/42")
            .count()
            >= 2
    })
    .await;
    assert_eq!(created(&app).await.len(), 1);
    // The pull request closed, and its delivery was lost.
    closed.store(true, Ordering::SeqCst);
    let destroy = &wait_created(&app, 2).await[1];
    assert_eq!(destroy["task"], "destroy");
    assert_eq!(destroy["environment"], "pr-42");
    assert_eq!(preview_states(&app), [(42, "closing".into())]);
}

#[tokio::test]
async fn a_gated_preview_deploys_its_head_once_its_checks_pass() {
    let app = spawn(|preview| preview.checks = Some(Required::Named(vec!["test".into()]))).await;
    let ack = send(&app, "opened", 42, HEAD_A).await;
    assert_ack(&ack, "accepted", "pr-42 opened");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(created(&app).await.is_empty(), "waits for its checks");
    let check = crate::checks::check_run_event(HEAD_A, "test", 77, Some("success"));
    let check: Value = {
        let mut v: Value = serde_json::from_slice(&check).unwrap();
        v["repository"] = json!({"full_name": REPO, "default_branch": "main"});
        v
    };
    app.post_webhook("check_run", check.to_string().as_bytes())
        .await;
    let made = &wait_created(&app, 1).await[0];
    assert_eq!(made["environment"], "pr-42");
    assert_eq!(made["ref"], HEAD_A);
    assert_eq!(made["required_contexts"], json!([]));
}

#[tokio::test]
async fn the_dashboard_and_the_api_list_the_previews_open_ones_first() {
    let mut app = spawn(|preview| {
        if let Some(p) = preview.preview.as_mut() {
            p.limit = 2;
        }
    })
    .await;
    // #40 opened and closed (destroyed); #41 and #42 live; #43 waits for room.
    send(&app, "opened", 40, HEAD_A).await;
    deliver_created(&app, 0).await;
    wait_state(&app, FIRST_ID, "success").await;
    send(&app, "closed", 40, HEAD_A).await;
    deliver_created(&app, 1).await;
    wait_state(&app, FIRST_ID + 1, "inactive").await;
    send(&app, "opened", 41, HEAD_B).await;
    deliver_created(&app, 2).await;
    send(&app, "opened", 42, HEAD_C).await;
    deliver_created(&app, 3).await;
    send(&app, "opened", 43, HEAD_A).await;
    wait_state(&app, FIRST_ID + 3, "success").await;

    let listed = body_json(
        app.http
            .get(format!("{}/api/previews", app.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let rows: Vec<(u64, String)> = listed["previews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pull_request"].as_u64().unwrap(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(rows.last(), Some(&(40, "closed".to_owned())), "{listed}");
    let mut open = rows[..3].to_vec();
    open.sort();
    assert_eq!(
        open,
        [
            (41, "live".into()),
            (42, "live".into()),
            (43, "waiting".into())
        ]
    );
    let live = &listed["previews"][rows.iter().position(|r| r.0 == 42).unwrap()];
    assert_eq!(
        live["environment_url"],
        "https://pr-42.preview.example.com/?pr=42"
    );
    let anonymous = app
        .http
        .get(format!("{}/api/previews", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);

    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/", &cookie).await;
    assert!(page.contains("<h2>Previews</h2>"), "{page}");
    assert!(page.contains("id=\"preview-pr-43\""), "{page}");
    assert!(
        page.contains("waits for room: 2 of 2 previews of preview alive"),
        "{page}"
    );
    if crate::browser::browser_available() {
        previews_screenshot(&app).await;
    }
    app.stop().await;
}

/// The dashboard's Previews table in Chromium: `target/test-artifacts/previews.png`
/// (README's `docs/previews.png`).
async fn previews_screenshot(app: &TestApp) {
    use fantoccini::Locator;
    let driver = crate::browser::Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 700).await;
    browser.goto(&format!("{}/login", app.url)).await.unwrap();
    browser
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(ADMIN_TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let table = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("previews"))
        .await
        .unwrap();
    let text = table.text().await.unwrap();
    assert!(
        text.contains("acme/widgets#43") && text.contains("waiting"),
        "{text}"
    );
    browser
        .execute(
            "document.getElementById('previews').previousElementSibling.scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    crate::browser::screenshot(&browser, "previews.png").await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_merged_pull_request_deploys_its_merge_and_destroys_its_preview_in_one_delivery() {
    let app = spawn(|_| {}).await;
    send(&app, "opened", 42, HEAD_A).await;
    wait_created(&app, 1).await;
    let mut merged: Value =
        serde_json::from_slice(&pull_request("closed", 42, HEAD_A, Some(REPO))).unwrap();
    merged["pull_request"]["merged"] = json!(true);
    merged["pull_request"]["merge_commit_sha"] = json!(HEAD_B);
    merged["pull_request"]["merged_at"] = json!("2026-03-03T14:02:11Z");
    let ack = body_json(
        app.post_webhook("pull_request", merged.to_string().as_bytes())
            .await,
    )
    .await;
    assert_ack(
        &ack,
        "accepted",
        "pull request #42 merged acme/widgets@bbbbbbb: creating a deployment to production; closing the previews of pull request #42",
    );
    let bodies = wait_created(&app, 3).await;
    let mut made: Vec<(String, String)> = bodies[1..]
        .iter()
        .map(|b| {
            (
                b["environment"].as_str().unwrap().to_owned(),
                b["task"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    made.sort();
    assert_eq!(
        made,
        [
            ("pr-42".into(), "destroy".into()),
            ("production".into(), "deploy".into())
        ]
    );
}

#[tokio::test]
async fn a_pull_request_closed_while_the_server_was_down_is_destroyed_after_the_restart() {
    let github = wiremock::MockServer::start().await;
    crate::helpers::mount_github_defaults(&github).await;
    mount_numbered(&github).await;
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = closed.clone();
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/pulls/42"))
        .respond_with(move |_: &Request| {
            let state = if state.load(Ordering::SeqCst) {
                "closed"
            } else {
                "open"
            };
            ResponseTemplate::new(200).set_body_json(json!({"number": 42, "state": state}))
        })
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let start = |every: Duration| {
        let mut config = crate::helpers::test_config(&github, vec!["true".into()], dir.path());
        add_preview(&mut config, dir.path(), |p| {
            if let Some(preview) = p.preview.as_mut() {
                preview.check_every = every;
            }
        });
        async move {
            let app = deployhook::web::Application::build(config).await.unwrap();
            let url = format!("http://{}", app.local_addr().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(app.run_until(async {
                let _ = stopped.await;
            }));
            (url, stop, server)
        }
    };
    let (url, stop, server) = start(Duration::from_secs(3600)).await;
    let http = reqwest::Client::new();
    let body = pull_request("opened", 42, HEAD_A, Some(REPO));
    crate::helpers::send_signed(&http, &url, "pull_request", &body, "open-42", 1)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while created_deployments(&github.received_requests().await.unwrap()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deployment created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT * 3, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Closed while nobody listened; the next server finds out by itself.
    closed.store(true, Ordering::SeqCst);
    let (_url, stop, server) = start(Duration::from_millis(200)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let requests = github.received_requests().await.unwrap();
        let made: Vec<Value> = created_deployments(&requests)
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        if let Some(destroy) = made.iter().find(|b| b["task"] == "destroy") {
            assert_eq!(destroy["environment"], "pr-42");
            assert_eq!(destroy["ref"], HEAD_A);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no destroy after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT * 3, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
