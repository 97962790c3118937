//! What a newcomer and an operator meet: the first run's log (deploy output and a log link
//! with no public URL), the messages of start-up and of the commands, the answers to
//! requests at the wrong place, the second Ctrl-C, and following a deploy from the
//! terminal (`log --follow`, `deploy --follow`). The binary is run as a user would run it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    SECRET, TOKEN, WAIT, deploy_with_script, fixture_json, spawn_app_with, statuses, write_script,
};
use crate::logged::Logged;

const ADMIN_TOKEN: &str = "operator-admin-token-0123456789";

/// The binary with nothing of the test's environment but `PATH`, run in `dir` (so no
/// `.env` of the checkout is read).
fn deployhook(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir);
    command
}

/// `deployhook serve` as a child, its log (text, as on a terminal) collected line by line.
struct Serve(Logged);

impl Serve {
    fn start(mut command: Command) -> Self {
        Self(Logged::spawn(command.arg("serve")))
    }

    /// The first line of the log containing `text`, waiting up to `wait` for it.
    fn line(&self, text: &str, wait: Duration) -> String {
        self.0.line(text, wait)
    }

    /// The address from "deployhook listening … addr=IP:PORT".
    fn addr(&self) -> String {
        let line = self.line("deployhook listening", WAIT);
        let addr = line.split("addr=").nth(1).unwrap();
        addr.split_whitespace().next().unwrap().to_owned()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to exit; its exit status and how long it took.
    fn wait_exit(&mut self, wait: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < wait,
                "the server did not exit within {wait:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The README's quick start, with GitHub mocked and a free port: `serve` with the secret,
/// a token and `DEPLOY_COMMAND`, nothing else.
fn quick_start(dir: &Path, github: &MockServer, command: &Path) -> Command {
    let mut serve = deployhook(dir);
    serve
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", github.uri())
        .env("DEPLOY_COMMAND", command)
        .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0");
    serve
}

/// `deployhook replay` of the deployment fixture, signed; the caller says where to.
fn replay_deployment(dir: &Path) -> Command {
    let mut replay = deployhook(dir);
    replay
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .args(["replay", "--event", "deployment"])
        .arg(format!(
            "{}/tests/fixtures/deployment.created.json",
            env!("CARGO_MANIFEST_DIR")
        ));
    replay
}

async fn github_accepting_statuses() -> MockServer {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(r"^/repos/.*/statuses$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 1 })))
        .mount(&github)
        .await;
    github
}

#[tokio::test]
async fn the_first_run_shows_the_deploys_output_and_a_log_link_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let github = github_accepting_statuses().await;
    let script = write_script(
        dir.path(),
        "deploy.sh",
        "echo \"building $DEPLOYHOOK_SHA\"\necho done-deploying",
    );
    let server = Serve::start(quick_start(dir.path(), &github, &script));
    let addr = server.addr();
    // Said at start: where log links will point, and that the dashboard is off and why.
    server.line(
        &format!("deploy log links are printed here, on http://{addr}"),
        WAIT,
    );
    server.line(
        "the dashboard at / is off: set DEPLOYHOOK_ADMIN_TOKEN",
        WAIT,
    );

    // `replay` without --url reaches the server through DEPLOYHOOK_LISTEN, as `serve` does.
    let replay = replay_deployment(dir.path())
        .env("DEPLOYHOOK_LISTEN", &addr)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&replay.stdout);
    assert!(
        answer.starts_with("202 Accepted"),
        "{answer}{}",
        String::from_utf8_lossy(&replay.stderr)
    );

    // The script's lines are in the server's log at info level, under the deploy's span.
    let output = server.line("done-deploying", WAIT);
    assert!(
        output.contains(" INFO ") && output.contains("deployment=880001"),
        "{output}"
    );
    let link_line = server.line("deploy log: http://", WAIT);
    assert!(
        link_line.contains("DEPLOYHOOK_PUBLIC_URL is not set"),
        "{link_line}"
    );
    let link = link_line
        .split("deploy log: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        link.starts_with(&format!("http://{addr}/deployments/880001/log?token=")),
        "{link}"
    );
    server.line("deploy ended: deployed", WAIT);
    let log = reqwest::get(link).await.unwrap().text().await.unwrap();
    assert!(
        log.contains("building 6f1e3c9a") && log.contains("done-deploying"),
        "{log}"
    );
}

#[tokio::test]
async fn deploy_output_stays_out_of_the_server_log_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let github = github_accepting_statuses().await;
    let script = write_script(dir.path(), "deploy.sh", "echo secret-ish-output-line");
    let mut command = quick_start(dir.path(), &github, &script);
    command.env("DEPLOYHOOK_LOG_DEPLOY_OUTPUT", "false");
    let server = Serve::start(command);
    let addr = server.addr();
    let replay = replay_deployment(dir.path())
        .args(["--url", &format!("http://{addr}/event_handler")])
        .output()
        .unwrap();
    assert!(replay.status.success());
    server.line("deploy ended: deployed", WAIT);
    let log = server.0.lines().join("\n");
    assert!(!log.contains("secret-ish-output-line"), "{log}");
}

#[tokio::test]
async fn a_second_ctrl_c_stops_running_deploys_at_once_and_the_first_says_it_would() {
    let dir = tempfile::tempdir().unwrap();
    let github = github_accepting_statuses().await;
    let script = write_script(
        dir.path(),
        "deploy.sh",
        "echo started-long-deploy\nsleep 120",
    );
    let mut command = quick_start(dir.path(), &github, &script);
    command.env("DEPLOYHOOK_SHUTDOWN_TIMEOUT", "5m");
    let mut server = Serve::start(command);
    let addr = server.addr();
    let replay = replay_deployment(dir.path())
        .args(["--url", &format!("http://{addr}/event_handler")])
        .output()
        .unwrap();
    assert!(replay.status.success());
    server.line("started-long-deploy", WAIT);

    server.signal(libc::SIGINT);
    let first = server.line("SIGINT received", WAIT);
    assert!(
        first.contains("waiting up to 5m for the running deploys")
            && first.contains("Ctrl-C again (or another SIGTERM) stops them now"),
        "{first}"
    );
    // Still waiting for the deploy: the shutdown timeout is five minutes.
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.0.child.try_wait().unwrap().is_none());

    let second = Instant::now();
    server.signal(libc::SIGINT);
    server.line("received again: stopping the running deploys now", WAIT);
    let (status, _) = server.wait_exit(Duration::from_secs(40));
    let took = second.elapsed();
    eprintln!("the server exited {took:?} after the second SIGINT (shutdown timeout 5m)");
    assert!(status.success(), "{status:?}");
    // The kill grace is 10 s at most; nowhere near the 5 minutes of the timeout.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let final_state = statuses(&github.received_requests().await.unwrap())
        .into_iter()
        .find(|s| s.deployment == 880_001 && s.state == "error")
        .expect("the deploy was reported error");
    assert!(
        final_state.description.contains("interrupted"),
        "{final_state:?}"
    );
}

#[tokio::test]
async fn start_up_problems_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let github = github_accepting_statuses().await;
    let script = write_script(dir.path(), "deploy.sh", "true");

    // A port taken by another program.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut command = quick_start(dir.path(), &github, &script);
    command.env("DEPLOYHOOK_LISTEN", format!("127.0.0.1:{port}"));
    let output = command.arg("serve").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("could not listen on 127.0.0.1:{port}"))
            && stderr.contains("another program (another deployhook?) listens there")
            && stderr.contains("set DEPLOYHOOK_LISTEN to a free port"),
        "{stderr}"
    );
    drop(taken);

    // A host name is an address like any other.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = quick_start(dir.path(), &github, &script);
    command.env("DEPLOYHOOK_LISTEN", format!("localhost:{free}"));
    let server = Serve::start(command);
    assert_eq!(server.addr(), format!("127.0.0.1:{free}"));
    let health = reqwest::get(format!("http://localhost:{free}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(server);

    // A config file whose environment points at a directory this machine lacks: serve
    // starts (it may be mounted later) and says so at once, not at the first deploy.
    let config = dir.path().join("deployhook.toml");
    std::fs::write(
        &config,
        "[[environment]]\nname = \"staging\"\nrepositories = [\"acme/*\"]\n\
         command = [\"./deploy.sh\"]\nworking_directory = \"/srv/no-such-deploy-dir\"\n",
    )
    .unwrap();
    let mut command = deployhook(dir.path());
    command
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", TOKEN)
        .env("DEPLOYHOOK_CONFIG", &config)
        .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0");
    let server = Serve::start(command);
    let warning = server.line(
        "working directory /srv/no-such-deploy-dir does not exist",
        WAIT,
    );
    assert!(
        warning.contains("WARN") && warning.contains("environment staging"),
        "{warning}"
    );
    server.addr();
}

#[tokio::test]
async fn requests_at_the_wrong_place_are_told_where_webhooks_go() {
    let app = spawn_app_with(|_, _| {}).await;
    let get = app
        .http
        .get(format!("{}/event_handler", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let body = get.text().await.unwrap();
    assert!(
        body.starts_with(
            "GET /event_handler: this is where GitHub sends webhook deliveries, with POST"
        ),
        "{body}"
    );

    let post_root = app.http.post(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(post_root.status(), 405);
    let body = post_root.text().await.unwrap();
    assert!(
        body.contains("GitHub's webhook deliveries go to POST /event_handler"),
        "{body}"
    );

    let missing = app
        .http
        .post(format!("{}/webhook", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body = missing.text().await.unwrap();
    assert!(
        body.contains("no such page: /webhook; webhooks go to POST /event_handler"),
        "{body}"
    );
}

#[tokio::test]
async fn the_commands_say_where_and_why_github_could_not_be_reached_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = deployhook(dir.path())
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", format!("http://127.0.0.1:{closed}"))
        .args(["deployments", "acme/widgets"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: could not reach GitHub at http://127.0.0.1:{closed}/repos/acme/widgets/deployments: "
        )) && stderr.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("error sending request").count(),
        0,
        "{stderr}"
    );

    // A 403: the same hint the server's log gives for its own calls.
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/deployments"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({ "message": "Resource not accessible by personal access token" }),
        ))
        .mount(&github)
        .await;
    let output = deployhook(dir.path())
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", github.uri())
        .args(["deployments", "acme/widgets"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GitHub answered 403 Forbidden: Resource not accessible by personal access token: the token lacks a permission: it needs Deployments: read and write"),
        "{stderr}"
    );
}

#[tokio::test]
async fn deploy_refuses_an_environment_no_deployhook_here_runs_unless_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/deployments"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "id": 990_001, "sha": "abc" })),
        )
        .mount(&github)
        .await;
    let config = dir.path().join("deployhook.toml");
    std::fs::write(
        &config,
        "[[environment]]\nname = \"production\"\nrepositories = [\"acme/*\"]\ncommand = [\"true\"]\n\
         [[environment]]\nname = \"staging\"\nrepositories = [\"acme/widgets\"]\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let deploy = |args: &[&str]| {
        deployhook(dir.path())
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", github.uri())
            .env("DEPLOYHOOK_CONFIG", &config)
            .arg("deploy")
            .args(args)
            .output()
            .unwrap()
    };
    let typo = deploy(&["acme/widgets", "main", "-e", "prodcution"]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success());
    assert!(
        stderr.contains("defines no environment \"prodcution\"")
            && stderr.contains("did you mean production?")
            && stderr.contains("(environments: production, staging)")
            && stderr.contains("pass --anyway"),
        "{stderr}"
    );
    let other_repo = deploy(&["acme/gadgets", "main", "-e", "staging"]);
    let stderr = String::from_utf8_lossy(&other_repo.stderr);
    assert!(
        stderr.contains("environment staging does not deploy acme/gadgets"),
        "{stderr}"
    );
    assert!(
        github.received_requests().await.unwrap().is_empty(),
        "nothing was created"
    );

    let anyway = deploy(&["acme/widgets", "main", "-e", "prodcution", "--anyway"]);
    assert!(
        anyway.status.success(),
        "{}",
        String::from_utf8_lossy(&anyway.stderr)
    );
    let created = github.received_requests().await.unwrap();
    assert_eq!(created.len(), 1);
    let body: serde_json::Value = created[0].body_json().unwrap();
    assert_eq!(body["environment"], "prodcution");
}

/// A server with the admin API on, whose deploy script prints two lines and exits `exit`.
async fn app_with_script(exit: u8) -> crate::helpers::TestApp {
    spawn_app_with(move |config, dir| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        deploy_with_script(
            config,
            dir,
            &format!("echo first-line\nsleep 1\necho last-line\nexit {exit}"),
        );
    })
    .await
}

#[tokio::test]
async fn log_follow_waits_for_the_deploy_streams_it_and_exits_with_its_outcome() {
    let app = app_with_script(1).await;
    let dir = tempfile::tempdir().unwrap();
    // Started before the deployment event arrives: it waits for it.
    let follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployhook"))
        .env_clear()
        .env("DEPLOYHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DEPLOYHOOK_SERVER", &app.url)
        .current_dir(dir.path())
        .args(["log", "880001", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = app
        .post_webhook(
            "deployment",
            fixture_json("deployment.created.json")
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(response.status(), 202);
    let output = tokio::time::timeout(WAIT * 3, follow.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("first-line") && stdout.contains("last-line"),
        "{stdout}"
    );
    assert!(stdout.find("first-line") < stdout.find("last-line"));
    assert!(
        stderr.contains("waiting for GitHub's deployment event for 880001"),
        "{stderr}"
    );
    assert!(stderr.contains("deployment 880001: failure"), "{stderr}");

    // Afterwards, without --follow: the whole log, exit 0.
    // (Run without blocking: the server under test shares this runtime.) Without
    // DEPLOYHOOK_SERVER, the commands find the server where DEPLOYHOOK_LISTEN says it is.
    let again = tokio::process::Command::from(deployhook(dir.path()))
        .env("DEPLOYHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DEPLOYHOOK_LISTEN", app.url.trim_start_matches("http://"))
        .args(["log", "880001"])
        .output()
        .await
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("last-line"));

    // An unknown deployment, as the API says it.
    let unknown = app
        .http
        .get(format!("{}/api/deployments/12345", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let refused = app
        .http
        .get(format!("{}/api/deployments/880001", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the API needs the admin token");
}

#[tokio::test]
async fn deploy_follow_creates_the_deployment_then_follows_it_to_success() {
    let app = app_with_script(0).await;
    let dir = tempfile::tempdir().unwrap();
    let follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployhook"))
        .env_clear()
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", app.github.uri())
        .env("DEPLOYHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DEPLOYHOOK_SERVER", &app.url)
        .current_dir(dir.path())
        .args([
            "deploy",
            "acme/widgets",
            "main",
            "-e",
            "production",
            "--follow",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // GitHub (mocked) created deployment 880001; it would now send the event.
    app.wait_for_github("the deployment's creation", |requests| {
        !crate::helpers::created_deployments(requests).is_empty()
    })
    .await;
    let response = app
        .post_webhook(
            "deployment",
            fixture_json("deployment.created.json")
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(response.status(), 202);
    let output = tokio::time::timeout(WAIT * 3, follow.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("created deployment 880001"), "{stdout}");
    assert!(stdout.contains("last-line"), "{stdout}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_deployhook()"),
        ("zsh", "#compdef deployhook"),
        ("fish", "complete -c deployhook"),
    ] {
        let output = deployhook(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && script.contains(marker),
            "{shell}: {script:.200}"
        );
        assert!(
            script.contains("check-config") && script.contains("--follow"),
            "{shell}"
        );
    }
}
