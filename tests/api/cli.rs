//! The binary itself: `serve`'s refusals and `replay` against a running server.

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::{SECRET, created_deployments, spawn_app};

fn deployhook() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    // A clean slate: no setting of the developer's shell or .env leaks into the test.
    command.env_clear().current_dir(env!("CARGO_TARGET_TMPDIR"));
    command
}

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn serve_refuses_to_start_without_a_webhook_secret() {
    let output = deployhook()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GITHUB_TOKEN", "ghp_x")
        .env("DEPLOY_COMMAND", "true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GITHUB_WEBHOOK_SECRET is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure-skip-signature"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_a_deploy_command() {
    let output = deployhook()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GITHUB_TOKEN", "ghp_x")
        .env("GITHUB_WEBHOOK_SECRET", "s")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DEPLOY_COMMAND is not set"), "{stderr}");
}

/// `serve` with working settings and the given database; returns its stderr.
fn serve_with_database(database: &std::path::Path) -> (bool, String) {
    let output = deployhook()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GITHUB_TOKEN", "ghp_x")
        .env("GITHUB_WEBHOOK_SECRET", "s")
        .env("DEPLOY_COMMAND", "true")
        .env("DEPLOYHOOK_DATABASE", database)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

#[test]
fn serve_stops_with_a_clear_message_when_the_database_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = serve_with_database(&dir.path().join("missing-dir/deployhook.db"));
    assert!(!ok);
    // The directory is what to fix, not the file (SQLite named only the file, or its lock).
    let missing = dir.path().join("missing-dir");
    assert!(
        stderr.contains(&format!(
            "the database's directory {} does not exist: create it (mkdir -p {})",
            missing.display(),
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn serve_stops_with_a_clear_message_on_a_database_from_a_newer_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployhook.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let (ok, stderr) = serve_with_database(&path);
    assert!(!ok);
    assert!(
        stderr.contains("schema version 99") && stderr.contains("newer release"),
        "{stderr}"
    );
}

#[test]
fn serve_help_lists_every_setting_and_the_secrets() {
    let output = deployhook().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for name in [
        "DEPLOYHOOK_LISTEN",
        "GITHUB_API_URL",
        "DEPLOYHOOK_ENVIRONMENT",
        "DEPLOYHOOK_BRANCH",
        "DEPLOYHOOK_REQUIRED_CONTEXTS",
        "DEPLOY_COMMAND",
        "DEPLOYHOOK_DEPLOY_TIMEOUT",
        "DEPLOYHOOK_PASS_ENV",
        "DEPLOYHOOK_SHUTDOWN_TIMEOUT",
        "DEPLOYHOOK_DATABASE",
        "DEPLOYHOOK_DATABASE_SYNC",
        "DEPLOYHOOK_MAX_CONCURRENT_DEPLOYS",
        "DEPLOYHOOK_POLICY",
        "DEPLOYHOOK_ON_INTERRUPT",
        "DEPLOYHOOK_OUTBOX_MAX_AGE",
        "DEPLOYHOOK_LOG_FORMAT",
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_TOKEN",
    ] {
        assert!(help.contains(name), "{name} missing from serve --help");
    }
}

#[test]
fn every_setting_in_help_is_documented_in_the_readme_and_env_example() {
    let output = deployhook().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let env_example = std::fs::read_to_string(format!("{root}/.env.example")).unwrap();
    let settings: Vec<&str> = help
        .split("env: ")
        .skip(1)
        .filter_map(|rest| rest.split([']', '=']).next())
        .collect();
    assert!(settings.len() >= 15, "{settings:?}");
    for name in settings {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} is not in the README's table"
        );
        assert!(
            env_example.contains(&format!("{name}=")),
            "{name} is not in .env.example"
        );
    }
}

/// Runs the binary on a blocking thread, so the test's server keeps answering meanwhile.
async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn replay_signs_a_saved_payload_and_prints_the_servers_answer() {
    let mut app = spawn_app().await;
    let cases = [
        (false, "pull_request.closed.merged.json", "pull request #42"),
        (
            true,
            "pull_request.closed.merged-fork.json",
            "pull request #43",
        ),
    ];
    for (form, file, says) in cases {
        let mut command = deployhook();
        command.args([
            "replay",
            &fixture_path(file),
            "--event",
            "pull_request",
            "--url",
            &format!("{}/event_handler", app.url),
        ]);
        command.env("GITHUB_WEBHOOK_SECRET", SECRET);
        if form {
            command.arg("--form");
        }
        let output = run(command).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with("202 Accepted"), "{stdout}");
        assert!(stdout.contains(says), "{stdout}");
    }
    app.stop().await;
    assert_eq!(created_deployments(&app.github_requests().await).len(), 2);
}

#[tokio::test]
async fn replay_with_a_wrong_secret_prints_the_refusal_and_fails() {
    let app = spawn_app().await;
    let mut command = deployhook();
    command.args([
        "replay",
        &fixture_path("ping.json"),
        "--event",
        "ping",
        "--secret",
        "wrong",
        "--url",
        &format!("{}/event_handler", app.url),
    ]);
    let output = run(command).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.starts_with(&StatusCode::UNAUTHORIZED.to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("secret mismatch"), "{stdout}");
}
