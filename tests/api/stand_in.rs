//! `deployhook stand-in` and `deployhook try`, as the real binary: a server pointed at the
//! stand-in deploys a replayed merge and the stand-in records its `success`; the stand-in's
//! refusals of what GitHub would refuse; `try` reaching a deploy's end and stopping on
//! SIGINT.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{SECRET, write_script};

/// How long a whole round trip may take here (two processes starting, a deploy).
const ROUND_TRIP: Duration = Duration::from_secs(60);

/// A child process of the test, stopped when the test ends however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn deployhook() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    // A clean slate: no setting of the developer's shell or .env leaks into the test.
    command.env_clear().current_dir(env!("CARGO_TARGET_TMPDIR"));
    command
}

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Reads `stdout` line by line until one contains `wanted`, on a thread (reading blocks;
/// the test gives up on time); every line read so far. What comes after is drained.
fn read_until(stdout: &ChildStdout, wanted: &str, within: Duration) -> String {
    use std::os::fd::AsFd;
    let (sender, receiver) = std::sync::mpsc::channel();
    let looked_for = wanted.to_owned();
    let pipe = std::fs::File::from(stdout.as_fd().try_clone_to_owned().unwrap());
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut seen = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            seen.push_str(&line);
            if line.contains(&looked_for) {
                let _ = sender.send(seen.clone());
            }
            line.clear();
        }
        let _ = sender.send(seen);
    });
    receiver
        .recv_timeout(within)
        .ok()
        .filter(|seen| seen.contains(wanted))
        .unwrap_or_else(|| panic!("no line with {wanted:?} within {within:?}"))
}

/// Starts a stand-in on a free port, delivering to `deliver_to`; it and its base URL.
fn start_stand_in(deliver_to: &str) -> (Running, String) {
    let mut child = deployhook()
        .args([
            "stand-in",
            "--listen",
            "127.0.0.1:0",
            "--deliver-to",
            deliver_to,
        ])
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = read_until(&stdout, "listening on", Duration::from_secs(10));
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    (Running(child), url)
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> Option<Value>) -> Value {
    let started = Instant::now();
    loop {
        if let Some(value) = done().await {
            return value;
        }
        assert!(started.elapsed() < ROUND_TRIP, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serve(dir: &Path, port: u16, stand_in: &str, marker: &Path) -> Running {
    let script = write_script(
        dir,
        "deploy.sh",
        &format!(
            "echo \"deploying $DEPLOYHOOK_SHA\"\necho \"$DEPLOYHOOK_DEPLOYMENT_ID $DEPLOYHOOK_SHA\" > {}",
            marker.display()
        ),
    );
    let child = deployhook()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("GITHUB_API_URL", stand_in)
        .env("GITHUB_TOKEN", "any-value")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("DEPLOY_COMMAND", script)
        .env("DEPLOYHOOK_DATABASE", dir.join("deployhook.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

#[tokio::test]
async fn a_merge_replayed_to_a_server_pointed_at_the_stand_in_deploys_and_reports_success() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let webhook = format!("http://127.0.0.1:{port}/event_handler");
    let (_stand_in, github) = start_stand_in(&webhook);
    let marker = dir.path().join("deployed");
    let _server = serve(dir.path(), port, &github, &marker);
    let http = reqwest::Client::new();
    wait_for("the server", async || {
        let up = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        up.ok()
            .filter(|r| r.status().is_success())
            .map(|_| json!(true))
    })
    .await;

    let fixture = format!(
        "{}/tests/fixtures/pull_request.closed.merged.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let replay = deployhook()
        .args([
            "replay",
            &fixture,
            "--event",
            "pull_request",
            "--url",
            &webhook,
        ])
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");

    let statuses_url = format!("{github}/repos/acme/widgets/deployments/1/statuses");
    let statuses = wait_for("a success status", async || {
        let listed: Value = http
            .get(&statuses_url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (listed[0]["state"] == "success").then_some(listed)
    })
    .await;
    let states: Vec<&str> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["success", "in_progress", "queued"]);
    let sha = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        format!("1 {sha}"),
        "the deploy command ran for the stand-in's deployment"
    );
    let listed: Value = http
        .get(format!("{github}/repos/acme/widgets/deployments?sha={sha}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["environment"], "production");
    assert_eq!(listed[0]["payload"]["pull_request"], 42);
}

#[tokio::test]
async fn the_stand_in_refuses_what_github_would_refuse_with_its_json_errors() {
    let (_stand_in, github) = start_stand_in("http://127.0.0.1:9/event_handler");
    let http = reqwest::Client::new();
    let deployments = format!("{github}/repos/acme/widgets/deployments");
    let post = |url: String, body: &'static str| {
        http.post(url)
            .bearer_auth("any-value")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let cases = [
        (
            post(deployments.clone(), "{not json").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
        ),
        (
            post(deployments.clone(), "[1, 2]").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
        ),
        (
            post(deployments.clone(), r#"{"environment": "production"}"#)
                .await
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "\"ref\" wasn't supplied",
        ),
        (
            post(deployments.clone(), r#"{"ref": "main", "task": 7}"#)
                .await
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "'properties/task', it is not a string",
        ),
        (
            http.post(&deployments)
                .body(r#"{"ref": "main"}"#)
                .send()
                .await
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
        ),
        (
            post(
                format!("{deployments}/1/statuses"),
                r#"{"state": "success"}"#,
            )
            .await
            .unwrap(),
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            post(format!("{github}/repos/acme/widgets/pulls"), "{}")
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            http.get(format!("{github}/user")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            http.delete(&deployments).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            http.get(format!("{deployments}/x")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
    ];
    for (response, status, says) in cases {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{status}: {body}");
        assert!(body["documentation_url"].is_string(), "{body}");
    }

    // A good deployment, then a status with a state GitHub does not know.
    let created = post(deployments.clone(), r#"{"ref": "main"}"#)
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["id"], 1, "nothing refused was recorded: {created}");
    let wrong = post(format!("{deployments}/1/statuses"), r#"{"state": "done"}"#)
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let statuses: Value = http
        .get(format!("{deployments}/1/statuses"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(statuses, json!([]));
}

#[test]
fn the_stand_in_and_the_trial_refuse_to_listen_beyond_this_machine() {
    for command in ["stand-in", "try"] {
        let output = deployhook()
            .args([command, "--listen", "0.0.0.0:0"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("0.0.0.0 is not a loopback address"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn try_deploys_a_merge_shows_it_and_stops_on_sigint_leaving_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // A project's real deploy command in the environment: the trial must not run it.
    let project = tempfile::tempdir().unwrap();
    let touched = project.path().join("touched");
    let real_deploy = write_script(
        project.path(),
        "real-deploy.sh",
        &format!("touch {}", touched.display()),
    );
    let mut child = deployhook()
        .args(["try", "--listen", "127.0.0.1:0"])
        // The demo deploy command needs sleep and tr; its state goes under TMPDIR.
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TMPDIR", tmp.path())
        .env("DEPLOY_COMMAND", &real_deploy)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut running = Running(child);
    let shown = read_until(&stdout, "what GitHub (the stand-in) holds", ROUND_TRIP);
    for expected in [
        "pull request #1 merged into acme/widgets",
        "202 Accepted",
        "stand-in: POST /repos/acme/widgets/deployments → 201 Created: deployment 1",
        "| Deployed.",
        "deployment 1 is success: deployed in",
        "4. deployed in ",
        "deployhook replay ",
    ] {
        assert!(
            shown.contains(expected),
            "{expected:?} missing from:\n{shown}"
        );
    }
    assert!(!touched.exists(), "the environment's DEPLOY_COMMAND ran");
    let dirs: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(
        dirs.len(),
        1,
        "the state directory is under TMPDIR while it runs"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &dirs[0].as_ref().unwrap().metadata().unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o700,
        "the state directory is its user's only"
    );

    let pid = i32::try_from(running.0.id()).unwrap();
    // SAFETY: signals the child this test started, by its id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < ROUND_TRIP, "try did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the state directory is removed at exit"
    );
}

#[tokio::test]
async fn a_delivery_waits_for_a_server_that_is_not_up_yet_and_comes_signed_as_github_signs() {
    let port = free_port();
    let (_stand_in, github) = start_stand_in(&format!("http://127.0.0.1:{port}/event_handler"));
    let created = reqwest::Client::new()
        .post(format!("{github}/repos/acme/widgets/deployments"))
        .bearer_auth("any-value")
        .json(&json!({"ref": "main", "environment": "staging", "payload": {"deploy_user": "ann"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // The first attempt (after a moment) finds nothing listening; the server comes up later.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = wiremock::MockServer::builder()
        .listener(listener)
        .start()
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let request = wait_for("the delivery", async || {
        let received = server.received_requests().await.unwrap_or_default();
        received.first().map(|r| {
            json!({
                "event": r.headers.get("x-github-event").map(|v| v.to_str().unwrap().to_owned()),
                "delivery": r.headers.get("x-github-delivery").map(|v| v.to_str().unwrap().to_owned()),
                "signature": r.headers.get("x-hub-signature-256").map(|v| v.to_str().unwrap().to_owned()),
                "body": String::from_utf8_lossy(&r.body),
            })
        })
    })
    .await;
    assert_eq!(request["event"], "deployment");
    assert!(
        uuid::Uuid::parse_str(request["delivery"].as_str().unwrap()).is_ok(),
        "{request}"
    );
    let body = request["body"].as_str().unwrap();
    assert_eq!(
        request["signature"],
        deployhook::webhook::signature::sign(SECRET.as_bytes(), body.as_bytes())
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["action"], "created");
    assert_eq!(body["deployment"]["id"], 1);
    assert_eq!(body["deployment"]["environment"], "staging");
    assert_eq!(body["deployment"]["payload"]["deploy_user"], "ann");
    assert_eq!(body["deployment"]["creator"]["type"], "User");
    assert_eq!(body["repository"]["full_name"], "acme/widgets");
    assert_eq!(body["sender"]["login"], "stand-in");
}

#[tokio::test]
async fn the_stand_in_refuses_other_host_names_and_large_bodies() {
    let (stand_in, github) = start_stand_in("http://127.0.0.1:9/event_handler");
    let http = reqwest::Client::new();
    let deployments = format!("{github}/repos/acme/widgets/deployments");
    // A page of rebound.example whose name now resolves to 127.0.0.1 (DNS rebinding).
    let rebound = http
        .post(&deployments)
        .header("Host", "rebound.example")
        .bearer_auth("any-value")
        .json(&json!({"ref": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let big = http
        .post(&deployments)
        .bearer_auth("any-value")
        .json(&json!({"ref": "main", "payload": {"junk": "x".repeat(100 * 1024)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Still open to what deployhook sends (a description of several lines included; it is
    // printed as one: guard::shown's test).
    let created = http
        .post(&deployments)
        .bearer_auth("any-value")
        .json(&json!({"ref": "main", "description": "one\nstand-in: POST /forged → 201 Created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let listed: Value = http
        .get(&deployments)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the one allowed is kept"
    );
    drop(stand_in);
}
