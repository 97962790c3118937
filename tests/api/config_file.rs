//! `deployhook.toml` through the binary: `check-config` reports errors with line and
//! column, `serve` refuses an invalid file, and a deploy run from a file's environment sees
//! only what the file allows of the server's environment.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wiremock::MockServer;

use crate::crash::Server;
use crate::helpers::{
    SECRET, TOKEN, WAIT, fixture, mount_github_defaults, send_signed, write_script,
};

fn deployhook(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command.env_clear().current_dir(dir);
    command
}

const VALID: &str = r#"
[[environment]]
name = "production"
repositories = ["acme/widgets"]
command = ["./deploy.sh"]
timeout = "15m"
"#;

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = format!("{}/deployhook.example.toml", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let output = deployhook(dir.path())
        .args(["check-config", &example])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Valid, but it names /srv/deploy, which this machine lacks: said as a warning, with
    // what to edit, and an error under --strict.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains(": valid, with 2 warnings"), "{stdout}");
    assert!(
        stderr.contains(
            "warning: environment staging: working directory /srv/deploy does not exist: \
             create it, or change `working_directory`"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("staging:") && stdout.contains("production:"),
        "{stdout}"
    );
    let strict = deployhook(dir.path())
        .args(["check-config", "--strict", &example])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("error: environment staging"));
}

#[test]
fn check_config_reports_each_kind_of_error_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            VALID.replace("timeout", "timout"),
            "deployhook.toml:6:1: unknown field `timout`",
        ),
        (
            VALID.replace("\"15m\"", "\"15 minutes or so\""),
            "deployhook.toml:6:11: expected number at 11 (examples: 90s, 15m, 1h)",
        ),
        (
            format!("{VALID}{VALID}"),
            "deployhook.toml:9:8: duplicate environment \"production\" (first defined at line 3)",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(dir.path().join("deployhook.toml"), &text).unwrap();
        let output = deployhook(dir.path())
            .args(["check-config", "deployhook.toml"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn serve_refuses_to_start_on_an_invalid_file_or_one_mixed_with_single_environment_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployhook.toml");
    std::fs::write(&path, VALID.replace("timeout", "timout")).unwrap();
    let serve = |extra: &[(&str, &str)]| {
        let output = deployhook(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GITHUB_TOKEN", "ghp_x")
            .env("GITHUB_WEBHOOK_SECRET", "s")
            .env("DEPLOYHOOK_CONFIG", &path)
            .env("DEPLOYHOOK_DATABASE", dir.path().join("deployhook.db"))
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = serve(&[]);
    assert!(stderr.contains(":6:1: unknown field `timout`"), "{stderr}");

    std::fs::write(&path, VALID).unwrap();
    let stderr = serve(&[
        ("DEPLOY_COMMAND", "./deploy.sh"),
        ("DEPLOYHOOK_POLICY", "queue"),
    ]);
    assert!(
        stderr.contains("DEPLOY_COMMAND, DEPLOYHOOK_POLICY set as well as the config file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_deploy_sees_env_and_pass_env_but_never_the_servers_secrets() {
    let github = MockServer::start().await;
    mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env.txt");
    write_script(
        dir.path(),
        "deploy.sh",
        &format!("env > '{}'", dump.display()),
    );
    let file = format!("{VALID}env = {{ APP_MODE = \"blue\" }}\npass_env = [\"SSH_AUTH_SOCK\"]\n");
    std::fs::write(dir.path().join("deployhook.toml"), file).unwrap();
    let server = Server::start_with(
        &github,
        dir.path(),
        &[
            ("DEPLOYHOOK_CONFIG", "deployhook.toml".into()),
            ("SSH_AUTH_SOCK", "/run/agent.sock".into()),
            ("DATABASE_PASSWORD", "hunter2".into()),
        ],
    );
    let response = send_signed(
        &reqwest::Client::new(),
        &server.url,
        "deployment",
        &fixture("deployment.created.json"),
        "d-env-1",
        1,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + WAIT;
    while !dump.exists() {
        assert!(std::time::Instant::now() < deadline, "the deploy never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // let `env` finish writing
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.lines().any(|l| l == "APP_MODE=blue"), "{env}");
    assert!(
        env.lines().any(|l| l == "SSH_AUTH_SOCK=/run/agent.sock"),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == "DEPLOYHOOK_DEPLOYMENT_ID=880001"),
        "{env}"
    );
    for leaked in [
        "GITHUB_",
        "DATABASE_PASSWORD",
        SECRET,
        TOKEN,
        "hunter2",
        "DEPLOYHOOK_CONFIG",
    ] {
        assert!(!env.contains(leaked), "{leaked} leaked into:\n{env}");
    }
}
