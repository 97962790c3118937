//! The deploy runner: logs stored and served at `log_url` (live while the deploy runs),
//! timeouts that stop the whole process tree, tasks, and repositories an environment does
//! not list.

use std::path::Path;
use std::time::{Duration, Instant};

use deployhook::config::RepoPattern;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    TestApp, WAIT, assert_ack, body_json, deploy_with_script, fixture, fixture_json,
    spawn_app_with, write_script,
};

const DEPLOYMENT: &str = "deployment.created.json";
const DEPLOYMENT_ID: u64 = 880_001;
/// What statuses' links start with in these tests; requests go to the test server instead.
const PUBLIC_URL: &str = "https://deploy.example.test";

fn states(statuses: &[crate::helpers::PostedStatus]) -> Vec<&str> {
    statuses.iter().map(|s| s.state.as_str()).collect()
}

/// The test server's address for a `log_url` built on [`PUBLIC_URL`].
fn local(app: &TestApp, log_url: &str) -> String {
    let path = log_url
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{log_url} does not start with {PUBLIC_URL}"));
    format!("{}{path}", app.url)
}

/// Waits until the file at `path` exists.
async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `response` until its text contains `needle`; panics after [`WAIT`].
async fn read_until(response: &mut reqwest::Response, text: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} never came; read so far:\n{text}"))
            .unwrap();
        let Some(chunk) = chunk else {
            panic!("the log ended without {needle:?}:\n{text}");
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_log_streams_while_the_deploy_runs_and_is_complete_afterwards() {
    let app = spawn_app_with(|config, dir| {
        let (started, release) = (dir.join("started"), dir.join("release"));
        let body = format!(
            "echo 'first line'\necho 'a warning' >&2\ntouch '{}'\n\
             while [ ! -f '{}' ]; do sleep 0.05; done\necho 'last line'",
            started.display(),
            release.display()
        );
        deploy_with_script(config, dir, &body);
        config.public_url = Some(PUBLIC_URL.into());
        config.environments[0].environment_url =
            Some("https://{environment}.example.test/{sha}".into());
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    wait_for_file(&app.dir.path().join("started")).await;
    let requests = app
        .wait_for_github("in_progress", |r| {
            crate::helpers::statuses(r)
                .iter()
                .any(|s| s.state == "in_progress")
        })
        .await;
    let in_progress = crate::helpers::statuses(&requests).pop().unwrap();
    let log_url = in_progress.log_url.expect("in_progress carries a log_url");

    // While the command waits for `release`, the first lines can already be read.
    let mut live = app.http.get(local(&app, &log_url)).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/plain; charset=utf-8");
    let mut text = String::new();
    read_until(&mut live, &mut text, "a warning").await;
    assert!(text.contains("stdout     | first line"), "{text}");
    assert!(text.contains("stderr     | a warning"), "{text}");
    assert!(!text.contains("last line"), "{text}");
    assert!(!app.dir.path().join("release").exists());

    // The same response goes on once the command does, and ends with the deploy.
    std::fs::write(app.dir.path().join("release"), "").unwrap();
    read_until(&mut live, &mut text, "last line").await;
    let rest = tokio::time::timeout(WAIT, live.text())
        .await
        .unwrap()
        .unwrap();
    text.push_str(&rest);
    assert!(text.contains("deployhook | success: deployed in"), "{text}");

    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "success"]);
    assert_eq!(statuses[0].log_url, None, "queued: nothing to read yet");
    assert_eq!(statuses[2].log_url.as_deref(), Some(log_url.as_str()));
    assert_eq!(
        statuses[2].environment_url.as_deref(),
        Some("https://production.example.test/6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b")
    );
    assert_eq!(statuses[1].environment_url, None);

    // Afterwards: the whole log at once, in order.
    let after = app.http.get(local(&app, &log_url)).send().await.unwrap();
    let complete = after.text().await.unwrap();
    let order = [
        "running [",
        "first line",
        "a warning",
        "last line",
        "success:",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|needle| {
            complete
                .find(needle)
                .unwrap_or_else(|| panic!("{needle}: {complete}"))
        })
        .collect();
    assert!(positions.is_sorted(), "{complete}");
}

/// GitHub's status for a failure points at the log; the log's own last line says what
/// happened and does not point at itself.
#[tokio::test]
async fn a_failed_deploys_log_ends_with_what_happened_and_its_status_points_at_the_log() {
    let app = spawn_app_with(|config, dir| {
        deploy_with_script(config, dir, "echo 'it broke' >&2\nexit 3");
        config.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    let failure = &statuses[2];
    assert_eq!(failure.state, "failure");
    let description = &failure.description;
    assert!(description.ends_with("— see log"), "{description}");
    let url = local(&app, failure.log_url.as_deref().unwrap());
    let log = app.get_text(&url).await;
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("deployhook | failure: exit code 3 after 0s"),
        "{log}"
    );
    assert!(!log.contains("see log"), "{log}");
}

#[tokio::test]
async fn a_log_without_its_token_or_with_another_one_is_not_found() {
    let app = spawn_app_with(|config, _| config.public_url = Some(PUBLIC_URL.into())).await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    let url = local(&app, statuses[2].log_url.as_deref().unwrap());
    let ok = app.http.get(&url).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await.unwrap().contains("success:"));

    let (without_query, token) = url.split_once("?token=").unwrap();
    let mut other_token = token.to_owned();
    other_token.replace_range(0..1, if token.starts_with('0') { "1" } else { "0" });
    for wrong in [
        without_query.to_owned(),
        format!("{without_query}?token="),
        format!("{without_query}?token={other_token}"),
        // The right token on another deployment's log.
        format!("{}/deployments/880002/log?token={token}", app.url),
    ] {
        let response = app.http.get(&wrong).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{wrong}");
        assert!(
            response.text().await.unwrap().starts_with("no such log"),
            "{wrong}"
        );
    }
}

#[tokio::test]
async fn a_grandchild_that_ignores_sigterm_is_gone_after_the_timeout() {
    let app = spawn_app_with(|config, dir| {
        let pid_file = dir.join("grandchild.pid");
        // The grandchild ignores SIGTERM (as does the sleep it runs: ignored signals are
        // inherited); only the SIGKILL to the whole group stops it.
        let body = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; sleep 60; echo survived' &\necho started\nwait",
            pid_file.display()
        );
        deploy_with_script(config, dir, &body);
        config.environments[0].timeout = Duration::from_secs(1);
        config.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    // `echo $$ > file` creates the file before it writes the pid: wait for the line.
    let pid_file = app.dir.path().join("grandchild.pid");
    wait_for_file(&pid_file).await;
    let deadline = Instant::now() + WAIT;
    let pid: u32 = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap();
        if let Some(pid) = text.strip_suffix('\n').and_then(|t| t.parse().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pid in {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(is_alive(pid), "the grandchild should run until the timeout");

    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "error"]);
    assert_eq!(statuses[2].description, "timed out after 1s");
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!is_alive(pid), "grandchild {pid} survived the timeout");

    let log = app
        .get_text(&local(&app, statuses[2].log_url.as_deref().unwrap()))
        .await;
    assert!(log.contains("stdout     | started"), "{log}");
    assert!(log.contains("timed out after 1s: stopping"), "{log}");
    assert!(!log.contains("survived"), "{log}");
}

/// Whether `pid` is a live process (a zombie is dead, waiting only to be reaped).
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

#[tokio::test]
async fn a_long_log_keeps_its_beginning_and_its_end() {
    let app = spawn_app_with(|config, dir| {
        // 20 000 lines at once (more than the writer's buffer: the command is slowed, not
        // the server's memory filled), then one 200 KB line without a newline until the end.
        deploy_with_script(
            config,
            dir,
            "i=0\nwhile [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done\n\
             head -c 200000 /dev/zero | tr '\\0' 'x'\necho\necho 'after the long line'",
        );
        config.environments[0].log_limit = 64 * 1024;
        config.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    let log = app
        .get_text(&local(&app, statuses[2].log_url.as_deref().unwrap()))
        .await;
    assert!(log.contains("| line 0\n"), "the head is kept");
    assert!(log.contains("| line 19999\n"), "the tail is kept");
    assert!(!log.contains("| line 10000\n"), "the middle is dropped");
    assert!(log.contains("[…line cut at 8192 bytes]"), "{log}");
    assert!(log.contains("| after the long line\n"), "{log}");
    assert!(log.contains("lines omitted"), "{log}");
    assert!(log.contains("success:"), "the end of the run is kept");
    assert!(log.len() < 3 * 64 * 1024, "{} bytes", log.len());
}

#[tokio::test]
async fn a_task_runs_its_own_command_and_an_unknown_task_is_refused_naming_the_known_ones() {
    let app = spawn_app_with(|config, dir| {
        let marker = dir.join("migrated");
        let migrate = write_script(dir, "migrate.sh", &format!("touch '{}'", marker.display()));
        config.environments[0]
            .tasks
            .insert("deploy:migrate".into(), vec![migrate.display().to_string()]);
    })
    .await;
    let mut migrate = fixture_json(DEPLOYMENT);
    migrate["deployment"]["task"] = json!("deploy:migrate");
    app.post_webhook("deployment", migrate.to_string().as_bytes())
        .await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "success"]);
    assert!(app.dir.path().join("migrated").exists());
    assert!(
        !app.dir.path().join("env.txt").exists(),
        "the deploy command must not run for deploy:migrate"
    );

    let mut seed = fixture_json(DEPLOYMENT);
    seed["deployment"]["id"] = json!(880_003);
    seed["deployment"]["task"] = json!("deploy:seed");
    let response = app
        .post_webhook("deployment", seed.to_string().as_bytes())
        .await;
    assert_ack(
        &body_json(response).await,
        "accepted",
        "not run: unknown task",
    );
    let statuses = app.wait_for_final_status(880_003).await;
    assert_eq!(states(&statuses), ["error"]);
    assert_eq!(
        statuses[0].description,
        "unknown task \"deploy:seed\"; production runs: deploy, deploy:migrate"
    );
    assert!(!app.dir.path().join("env.txt").exists());
}

#[tokio::test]
async fn a_repository_the_environment_does_not_list_is_ignored_without_calling_github() {
    let app = spawn_app_with(|config, _| {
        config.environments[0].repositories = vec![RepoPattern::parse("acme/gadgets").unwrap()];
    })
    .await;
    let merged = app
        .post_webhook("pull_request", &fixture("pull_request.closed.merged.json"))
        .await;
    assert_ack(
        &body_json(merged).await,
        "ignored",
        "production does not list acme/widgets",
    );
    let deployment = app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    assert_ack(
        &body_json(deployment).await,
        "ignored",
        "environment production does not list acme/widgets",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.github_requests().await.is_empty());
    assert!(!app.dir.path().join("env.txt").exists(), "nothing ran");
}

#[tokio::test]
async fn the_command_runs_in_its_working_directory_with_the_configured_variables() {
    let app = spawn_app_with(|config, dir| {
        let workdir = dir.join("checkout");
        std::fs::create_dir(&workdir).unwrap();
        deploy_with_script(
            config,
            dir,
            "pwd > where.txt\necho \"$RAILS_ENV\" >> where.txt",
        );
        let environment = &mut config.environments[0];
        environment.working_directory = Some(workdir);
        environment
            .env
            .0
            .insert("RAILS_ENV".into(), "production".into());
    })
    .await;
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    app.wait_for_final_status(DEPLOYMENT_ID).await;
    let written = std::fs::read_to_string(app.dir.path().join("checkout/where.txt")).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert!(lines[0].ends_with("/checkout"), "{written}");
    assert_eq!(lines[1], "production");
}

#[tokio::test]
async fn a_background_process_holding_the_output_open_does_not_hold_up_the_deploy() {
    // `sleep` inherits the script's stdout and keeps the pipe open after the script exits,
    // as a daemon started by a deploy would.
    let app = spawn_app_with(|config, dir| {
        deploy_with_script(config, dir, "sleep 30 &\necho 'daemon started'");
        config.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    let started = Instant::now();
    app.post_webhook("deployment", &fixture(DEPLOYMENT)).await;
    let statuses = app.wait_for_final_status(DEPLOYMENT_ID).await;
    assert_eq!(states(&statuses), ["queued", "in_progress", "success"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the deploy waited {:?} for its daemon's output",
        started.elapsed()
    );
    let log = app
        .get_text(&local(&app, statuses[2].log_url.as_deref().unwrap()))
        .await;
    assert!(log.contains("| daemon started"), "{log}");
}
