//! Locks and rollbacks, through the admin API and the dashboard's forms, against the real
//! server and a mocked GitHub: what waits while an environment is locked, what still runs,
//! what releases it, and who may do it.

use std::time::{Duration, Instant};

use deployhook::config::{Config, EnvironmentConfig};
use deployhook::model::Environment;
use deployhook::web::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::helpers::{
    TestApp, WAIT, assert_ack, body_json, created_deployments, fixture_json, spawn_app_with,
    test_config, write_script,
};

pub(crate) const ADMIN_TOKEN: &str = "an-admin-token-long-enough-for-tests";
const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "ccccccc3cccccccccccccccccccccccccccccccc";

/// The test server with the admin API on, and a second environment, `staging`, that is
/// never locked: its deploys show that the queue went round while production waited.
async fn admin_app() -> TestApp {
    admin_app_with(|_, _| {}).await
}

async fn admin_app_with(configure: impl FnOnce(&mut Config, &std::path::Path)) -> TestApp {
    spawn_app_with(|config, dir| {
        configure(config, dir);
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        let mut staging = EnvironmentConfig::new(
            Environment::parse("staging").unwrap(),
            config.environments[0].command.clone(),
        );
        staging.timeout = config.environments[0].timeout;
        config.environments.push(staging);
    })
    .await
}

/// An admin API call with the admin token; its JSON answer, asserted a success.
pub(crate) async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = body_json(response).await;
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn lock(app: &TestApp, duration: Option<&str>) -> Value {
    let mut body = json!({"environment": "production", "reason": "incident 4711", "by": "maria"});
    if let Some(duration) = duration {
        body["for"] = json!(duration);
    }
    api(app, reqwest::Method::POST, "/api/locks", Some(body)).await
}

/// A `deployment` event for `id` of `sha` to `environment`, `force` in its payload or not.
fn deployment(id: u64, sha: &str, environment: &str, force: bool) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    event["deployment"]["environment"] = json!(environment);
    event["deployment"]["payload"]["environment"] = json!(environment);
    if force {
        event["deployment"]["payload"]["force"] = json!(true);
    }
    event.to_string().into_bytes()
}

/// The states GitHub was told for `deployment`, in order.
async fn states(app: &TestApp, deployment: u64) -> Vec<String> {
    app.statuses()
        .await
        .into_iter()
        .filter(|s| s.deployment == deployment)
        .map(|s| s.state)
        .collect()
}

/// Waits until the deploy of `deployment` has started (GitHub was told `in_progress`).
async fn wait_until_started(app: &TestApp, deployment: u64) {
    app.wait_for_github("a deploy to start", |r| {
        crate::helpers::statuses(r)
            .iter()
            .any(|s| s.deployment == deployment && s.state == "in_progress")
    })
    .await;
}

/// Runs a staging deploy to its end: proof that the queue was looked at since.
async fn a_staging_deploy_ran(app: &TestApp, id: u64) {
    app.post_webhook("deployment", &deployment(id, A, "staging", false))
        .await;
    app.wait_for_final_status(id).await;
}

/// A merge into a locked environment creates its deployment, but the deploy waits in the
/// queue — while the queue runs other environments' — and runs once the lock is lifted.
#[tokio::test]
async fn a_merge_to_a_locked_environment_is_created_but_runs_only_after_the_unlock() {
    let mut app = admin_app().await;
    let locked = lock(&app, None).await;
    assert_eq!(locked["lock"]["environment"], "production");
    assert_eq!(locked["lock"]["locked_by"], "maria");
    assert_eq!(locked["lock"]["until"], Value::Null);

    let ack = body_json(
        app.post_webhook(
            "pull_request",
            &crate::helpers::fixture("pull_request.closed.merged.json"),
        )
        .await,
    )
    .await;
    assert_ack(&ack, "accepted", "creating a deployment to production");
    app.wait_for_github("the deployment's creation", |r| {
        !created_deployments(r).is_empty()
    })
    .await;
    // GitHub sends its deployment event: queued, not run.
    let ack = body_json(
        app.post_webhook("deployment", &deployment(880_001, B, "production", false))
            .await,
    )
    .await;
    // Its answer says what holds it, not "deploying".
    assert_ack(
        &ack,
        "accepted",
        "deployment 880001 of acme/widgets@bbbbbbb to production queued: production is \
         locked by maria since ",
    );
    a_staging_deploy_ran(&app, 990_001).await;
    assert_eq!(states(&app, 880_001).await, ["queued"]);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("deployhook_environment_locked{environment=\"production\"} 1"),
        "{metrics}"
    );

    let unlocked = api(&app, reqwest::Method::DELETE, "/api/locks/production", None).await;
    assert_eq!(unlocked["unlocked"]["reason"], "incident 4711");
    app.wait_for_final_status(880_001).await;
    assert_eq!(
        states(&app, 880_001).await,
        ["queued", "in_progress", "success"]
    );
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"], json!([]));
    app.stop().await;
}

/// A lock with `for` releases by itself when it expires, and what waited runs then.
#[tokio::test]
async fn an_expired_lock_releases_what_waited() {
    let mut app = admin_app().await;
    let locked_at = Instant::now();
    let locked = lock(&app, Some("1s")).await;
    assert!(locked["lock"]["until"].is_string(), "{locked}");
    app.post_webhook("deployment", &deployment(880_002, B, "production", false))
        .await;
    app.wait_for_final_status(880_002).await;
    assert!(
        locked_at.elapsed() >= Duration::from_millis(950),
        "ran {:?} after the lock of 1 s",
        locked_at.elapsed()
    );
    app.stop().await;
}

/// A forced deployment (`deployhook deploy --force`) runs in a locked environment while the
/// others wait.
#[tokio::test]
async fn a_forced_deployment_runs_through_the_lock_and_the_others_wait() {
    let mut app = admin_app().await;
    lock(&app, None).await;
    app.post_webhook("deployment", &deployment(880_003, B, "production", false))
        .await;
    app.post_webhook("deployment", &deployment(880_004, C, "production", true))
        .await;
    app.wait_for_final_status(880_004).await;
    assert_eq!(
        states(&app, 880_004).await,
        ["queued", "in_progress", "success"]
    );
    a_staging_deploy_ran(&app, 990_002).await;
    assert_eq!(states(&app, 880_003).await, ["queued"]);
    app.stop().await;
}

/// The admin API refuses a missing or wrong token, a cross-site request, a form post, an
/// unknown environment, and is off without an admin token.
#[tokio::test]
async fn the_admin_api_refuses_what_is_not_the_admin() {
    let mut app = admin_app().await;
    let url = format!("{}/api/locks", app.url);
    let body = json!({"environment": "production", "reason": "r"});
    let cases = [
        (
            app.http.post(&url).json(&body),
            StatusCode::UNAUTHORIZED,
            "missing Authorization",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth("not-the-token-at-all")
                .json(&body),
            StatusCode::UNAUTHORIZED,
            "wrong admin token",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .header("Sec-Fetch-Site", "cross-site")
                .json(&body),
            StatusCode::FORBIDDEN,
            "cross-site",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .form(&[("environment", "production"), ("reason", "r")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"environment": "prodcution", "reason": "r"})),
            StatusCode::NOT_FOUND,
            "no environment prodcution here; this server deploys production, staging",
        ),
    ];
    for (request, status, says) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{says}");
        let text = response.text().await.unwrap();
        assert!(text.contains(says), "{text:?} should say {says:?}");
    }
    // Nothing of that locked anything.
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"], json!([]));
    app.stop().await;

    let mut off = spawn_app_with(|_, _| {}).await;
    let response = off
        .http
        .get(format!("{}/api/locks", off.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("DEPLOYHOOK_ADMIN_TOKEN")
    );
    off.stop().await;
}

/// The dashboard's lock form needs the session's form token and the same site; with both,
/// it locks, and its unlock button unlocks.
#[tokio::test]
async fn the_dashboards_lock_form_needs_its_token_and_the_same_site() {
    let mut app = admin_app().await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/", &cookie).await;
    let token = page
        .split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a form token")
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |form: Vec<(&'static str, String)>, cross: bool| {
        let mut request = http
            .post(format!("{}/dashboard/lock", app.url))
            .header("Cookie", &cookie)
            .form(&form);
        if cross {
            request = request.header("Sec-Fetch-Site", "cross-site");
        }
        request.send()
    };
    let form = |token: &str| {
        vec![
            ("environment", "production".to_owned()),
            ("reason", "release freeze".to_owned()),
            ("for", String::new()),
            ("form_token", token.to_owned()),
        ]
    };
    assert_eq!(
        post(form(""), false).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(form("00ff"), false).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(form(&token), true).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"], json!([]), "no refused form locked anything");

    let response = post(form(&token), false).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"][0]["reason"], "release freeze");
    // The shared admin token names no one: the client it came from is what is true.
    assert_eq!(
        locks["locks"][0]["locked_by"],
        "dashboard (client 127.0.0.1)"
    );
    let page = app.page("/dashboard/live", &cookie).await;
    assert!(page.contains("id=\"lock-production\""), "{page}");
    assert!(page.contains("release freeze"), "{page}");

    let response = http
        .post(format!("{}/dashboard/unlock", app.url))
        .header("Cookie", &cookie)
        .form(&[
            ("environment", "production"),
            ("form_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"], json!([]));
    app.stop().await;
}

/// A lock is in the database: a restarted server still holds the environment.
#[tokio::test]
async fn a_lock_survives_a_restart() {
    let github = wiremock::MockServer::start().await;
    crate::helpers::mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "deploy.sh", "echo deployed");
    let start = || {
        let mut config = test_config(&github, vec![script.display().to_string()], dir.path());
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        async move {
            let app = Application::build(config).await.unwrap();
            let url = format!("http://{}", app.local_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(app.run_until(async {
                let _ = stopped.await;
            }));
            (url, stop, server)
        }
    };
    let http = reqwest::Client::new();
    let (url, stop, server) = start().await;
    let response = http
        .post(format!("{url}/api/locks"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"environment": "production", "reason": "before the restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let (url, stop, server) = start().await;
    let locks: Value = http
        .get(format!("{url}/api/locks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(locks["locks"][0]["reason"], "before the restart");
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// After A, B and C deployed, a rollback deploys B — a forced deployment whose payload says
/// so, run with DEPLOYHOOK_ROLLBACK=1 — and locks the environment, so the next merge's
/// deploy waits until someone unlocks.
#[tokio::test]
async fn a_rollback_deploys_the_previous_success_and_locks_the_environment() {
    // Production rolls back with a command of its own, which records its environment.
    let mut app = admin_app_with(|config, dir| {
        let script = write_script(
            dir,
            "rollback.sh",
            &format!("env > '{}'", dir.join("rollback-env.txt").display()),
        );
        config.environments[0].rollback_command = Some(vec![script.display().to_string()]);
    })
    .await;
    for (id, sha) in [(880_011, A), (880_012, B), (880_013, C)] {
        app.post_webhook("deployment", &deployment(id, sha, "production", false))
            .await;
        app.wait_for_final_status(id).await;
    }
    let answer = api(
        &app,
        reqwest::Method::POST,
        "/api/rollback",
        Some(json!({"repository": "acme/widgets", "environment": "production", "by": "maria"})),
    )
    .await;
    assert_eq!(answer["sha"], B);
    assert_eq!(answer["rolled_back"], C);
    let requests = app
        .wait_for_github("the rollback's creation", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    assert_eq!(created["ref"], B);
    assert_eq!(created["environment"], "production");
    assert_eq!(
        created["payload"],
        json!({"environment": "production", "deploy_user": "maria", "rollback": true,
               "rolled_back": C, "force": true})
    );
    let locks = api(&app, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(
        locks["locks"][0]["reason"],
        "rolled back by maria to bbbbbbb (from ccccccc)"
    );

    // GitHub sends the rollback's deployment event: it runs through the lock, told so.
    let mut rollback = fixture_json("deployment.created.json");
    rollback["deployment"]["id"] = json!(880_014);
    rollback["deployment"]["sha"] = json!(B);
    rollback["deployment"]["ref"] = json!(B);
    rollback["deployment"]["payload"] = created["payload"].clone();
    app.post_webhook("deployment", rollback.to_string().as_bytes())
        .await;
    app.wait_for_final_status(880_014).await;
    // The deploy command last ran for C, before the rollback: it did not run the rollback.
    let env = std::fs::read_to_string(app.dir.path().join("env.txt")).unwrap();
    assert!(
        env.lines().any(|l| l == format!("DEPLOYHOOK_SHA={C}")),
        "{env}"
    );
    let env = std::fs::read_to_string(app.dir.path().join("rollback-env.txt")).unwrap();
    assert!(env.lines().any(|l| l == "DEPLOYHOOK_ROLLBACK=1"), "{env}");
    assert!(
        env.lines().any(|l| l == format!("DEPLOYHOOK_SHA={B}")),
        "{env}"
    );

    // A second rollback goes further back, to A — not forward to C, which the first undid.
    let again = api(
        &app,
        reqwest::Method::POST,
        "/api/rollback",
        Some(json!({"repository": "acme/widgets", "environment": "production"})),
    )
    .await;
    assert_eq!(again["sha"], A);
    assert_eq!(again["rolled_back"], B);

    // The next merge's deploy waits for the unlock.
    app.post_webhook("deployment", &deployment(880_015, C, "production", false))
        .await;
    a_staging_deploy_ran(&app, 990_003).await;
    assert_eq!(states(&app, 880_015).await, ["queued"]);
    api(&app, reqwest::Method::DELETE, "/api/locks/production", None).await;
    wait_until_started(&app, 880_015).await;
    app.wait_for_final_status(880_015).await;
    app.stop().await;
}

/// `deployhook lock`, `locks` and `unlock` drive the running server's admin API, and say
/// what went wrong when the token is wrong.
#[tokio::test]
async fn the_lock_commands_talk_to_the_running_server() {
    let mut app = admin_app().await;
    let cli = |args: &[&str], token: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_deployhook"));
        command
            .env_clear()
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .env("DEPLOYHOOK_SERVER", &app.url)
            .env("DEPLOYHOOK_ADMIN_TOKEN", token)
            .args(args);
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            (output.status.success(), text)
        }
    };
    let (ok, out) = cli(
        &[
            "lock",
            "production",
            "--reason",
            "deploy freeze",
            "--for",
            "1h",
            "--by",
            "maria",
        ],
        ADMIN_TOKEN,
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.starts_with("production locked until 20"), "{out}");
    assert!(out.contains("deploy freeze (by maria)"), "{out}");
    let (ok, out) = cli(&["locks"], ADMIN_TOKEN).await;
    assert!(
        ok && out.contains("production") && out.contains("deploy freeze"),
        "{out}"
    );
    let (ok, out) = cli(&["unlock", "production"], "wrong-token-of-enough-length").await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("deployhook answered 401 Unauthorized: wrong admin token"),
        "{out}"
    );
    let (ok, out) = cli(&["unlock", "production"], ADMIN_TOKEN).await;
    assert!(ok, "{out}");
    assert!(out.starts_with("production unlocked"), "{out}");
    let (ok, out) = cli(&["locks"], ADMIN_TOKEN).await;
    assert!(ok && out.contains("no environment is locked"), "{out}");
    app.stop().await;
}
