//! The real binary, killed with SIGKILL and started again on the same database: what was
//! acknowledged is kept and acted on once, a deploy cut short is reported, the queue goes
//! on, and no deploy command runs twice.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;
use wiremock::MockServer;

use crate::fake_github::FakeGitHub;
use crate::helpers::{
    SECRET, TOKEN, WAIT, fixture_json, is_legal_order, open_database, send_signed, statuses,
    write_script,
};

/// `deployhook serve` as a child process.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts the binary on `dir`'s database and waits until it listens.
    fn start(github: &MockServer, dir: &Path, command: &Path, policy: &str) -> Self {
        let settings = [
            ("DEPLOY_COMMAND", command.display().to_string()),
            ("DEPLOYHOOK_POLICY", policy.to_owned()),
        ];
        Self::start_with(github, dir, &settings)
    }

    /// Starts the binary with the secrets, GitHub's URL and `dir`'s database, plus
    /// `settings`, and nothing else of the test's environment but `PATH`.
    pub fn start_with(github: &MockServer, dir: &Path, settings: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deployhook"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", github.uri())
            .env("DEPLOYHOOK_DATABASE", dir.join("deployhook.db"))
            .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0")
            .env("DEPLOYHOOK_LOG_FORMAT", "json")
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Ok(log) = serde_json::from_str::<Value>(&line)
                    && let Some(addr) = log["fields"]["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("the server did not start listening");
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no shutdown code runs
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deployment(id: u64) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event.to_string().into_bytes()
}

fn merged_pull_request(number: u64) -> Vec<u8> {
    let mut event = fixture_json("pull_request.closed.merged.json");
    event["number"] = json!(number);
    event["pull_request"]["number"] = json!(number);
    event.to_string().into_bytes()
}

/// Each deployment's statuses, in the order GitHub received them.
async fn statuses_by_deployment(github: &MockServer) -> HashMap<u64, Vec<String>> {
    let mut by_id: HashMap<u64, Vec<String>> = HashMap::new();
    for status in statuses(&github.received_requests().await.unwrap()) {
        by_id
            .entry(status.deployment)
            .or_default()
            .push(status.state);
    }
    by_id
}

/// Waits until every deployment in `ids` has a final status.
async fn wait_until_final(github: &MockServer, ids: &HashSet<u64>) -> HashMap<u64, Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT * 6;
    loop {
        let by_id = statuses_by_deployment(github).await;
        let done = ids.iter().all(|id| {
            by_id.get(id).is_some_and(|s| {
                s.iter()
                    .any(|s| matches!(s.as_str(), "success" | "failure" | "error" | "inactive"))
            })
        });
        if done {
            return by_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all of {ids:?} finished: {by_id:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether any live (not zombie) process is in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        // After the command name: state, ppid, pgrp.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
    })
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_deploy_cut_short_by_a_crash_is_reported_and_the_queue_goes_on_after_restart() {
    let github = MockServer::start().await;
    FakeGitHub::mount(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.log");
    let body = format!(
        "env > \"{dir}/env-$DEPLOYHOOK_DEPLOYMENT_ID.txt\"\n\
         echo \"start $DEPLOYHOOK_DEPLOYMENT_ID $$\" >> '{runs}'\n\
         if [ \"$DEPLOYHOOK_DEPLOYMENT_ID\" = 1 ]; then sleep 60; fi\n\
         echo \"end $DEPLOYHOOK_DEPLOYMENT_ID\" >> '{runs}'",
        dir = dir.path().display(),
        runs = runs.display(),
    );
    let command = write_script(dir.path(), "deploy.sh", &body);
    let http = reqwest::Client::new();

    let server = Server::start(&github, dir.path(), &command, "queue");
    let url = server.url.clone();
    let send = |id: u64| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            send_signed(
                &http,
                &url,
                "deployment",
                &deployment(id),
                &format!("d{id}"),
                1,
            )
            .await
        }
    };
    assert_eq!(send(1).await.unwrap().status(), 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !lines(&runs).iter().any(|l| l.starts_with("start 1 ")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deploy 1 never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(send(2).await.unwrap().status(), 202);
    assert_eq!(send(3).await.unwrap().status(), 202);
    server.kill();
    // The cut-short deploy's command outlives the server, in its own process group.
    let pgid: i32 = lines(&runs)[0].split(' ').nth(2).unwrap().parse().unwrap();
    assert!(pgid > 1, "not a deploy's pid: {pgid}");
    assert!(group_alive(pgid), "the deploy died with the server");

    let _server = Server::start(&github, dir.path(), &command, "queue");
    let ids = HashSet::from([1, 2, 3]);
    let by_id = wait_until_final(&github, &ids).await;

    let last = |id: u64| by_id[&id].last().unwrap().clone();
    assert_eq!(last(1), "error");
    assert_eq!((last(2).as_str(), last(3).as_str()), ("success", "success"));
    for id in &ids {
        let states: Vec<&str> = by_id[id].iter().map(String::as_str).collect();
        assert!(is_legal_order(&states), "deployment {id}: {states:?}");
    }
    let descriptions = github.received_requests().await.unwrap();
    let interrupted = descriptions.iter().any(|r| {
        r.url.path().ends_with("/deployments/1/statuses")
            && String::from_utf8_lossy(&r.body)
                .contains("interrupted: deployhook restarted during the deploy")
    });
    assert!(
        interrupted,
        "deployment 1's error does not say it was interrupted"
    );

    // The restarted server stopped the leftover command (and its `sleep`) before deploy 2 ran.
    let leftover = group_alive(pgid);
    if leftover {
        // `--`: without it, kill(1) may read "-PID" as options, and "-1" means everyone.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
    }
    assert!(
        !leftover,
        "the interrupted deploy's process group {pgid} was left running"
    );

    let runs = lines(&runs);
    let started: Vec<&str> = runs
        .iter()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| &l[..1])
        .collect();
    assert_eq!(started, ["1", "2", "3"], "{runs:?}");

    // The real binary, with GITHUB_TOKEN and the secret in its environment, passed neither on.
    let env = std::fs::read_to_string(dir.path().join("env-2.txt")).unwrap();
    assert!(!env.contains(TOKEN) && !env.contains(SECRET), "{env}");
    assert!(
        env.lines().any(|l| l == "DEPLOYHOOK_DEPLOYMENT_ID=2"),
        "{env}"
    );
}

/// What the burst's senders saw.
#[derive(Default)]
struct Burst {
    /// Delivery id → what it carried, for the deliveries answered 2xx.
    acknowledged: HashMap<String, Carried>,
}

#[derive(Clone, Copy, Debug)]
enum Carried {
    PullRequest(u64),
    Deployment(u64),
}

#[tokio::test]
async fn a_crash_in_a_burst_of_500_deliveries_loses_no_acknowledged_one_and_repeats_nothing() {
    const TOTAL: usize = 500;
    const KILL_AFTER: usize = 200;
    const SENDERS: usize = 8;
    let github = MockServer::start().await;
    let fake = FakeGitHub::mount(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let runs: PathBuf = dir.path().join("runs.log");
    let body = format!("echo \"$DEPLOYHOOK_DEPLOYMENT_ID\" >> '{}'", runs.display());
    let command = write_script(dir.path(), "deploy.sh", &body);

    let server = Server::start(&github, dir.path(), &command, "queue");
    let url = server.url.clone();
    let burst = Arc::new(Mutex::new(Burst::default()));
    let answered = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (url, burst, answered, next) =
            (url.clone(), burst.clone(), answered.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new(); // one keep-alive connection per sender
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    return;
                }
                let (event, body, carried) = if i % 2 == 0 {
                    let number = 1000 + i as u64;
                    (
                        "pull_request",
                        merged_pull_request(number),
                        Carried::PullRequest(number),
                    )
                } else {
                    let id = 900_000 + i as u64;
                    ("deployment", deployment(id), Carried::Deployment(id))
                };
                let delivery = format!("burst-{i}");
                match send_signed(&http, &url, event, &body, &delivery, 1).await {
                    Ok(response) if response.status().is_success() => {
                        burst.lock().await.acknowledged.insert(delivery, carried);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    // Refused or cut off by the kill: not acknowledged, so GitHub would show
                    // it as failed; this sender is done.
                    _ => return,
                }
            }
        }));
    }
    while answered.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = burst.lock().await.acknowledged.clone();
    assert!(
        acknowledged.len() >= KILL_AFTER && acknowledged.len() < TOTAL,
        "{}",
        acknowledged.len()
    );

    let restarted = Server::start(&github, dir.path(), &command, "queue");
    let deployments: HashSet<u64> = acknowledged
        .values()
        .filter_map(|c| match c {
            Carried::Deployment(id) => Some(*id),
            Carried::PullRequest(_) => None,
        })
        .collect();
    let pull_requests: Vec<u64> = acknowledged
        .values()
        .filter_map(|c| match c {
            Carried::PullRequest(n) => Some(*n),
            Carried::Deployment(_) => None,
        })
        .collect();
    let by_id = wait_until_final(&github, &deployments).await;
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while pull_requests.iter().any(|n| fake.created_for(*n) == 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every merge got its deployment"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(restarted);

    // Every acknowledged delivery is in the database.
    let db = open_database(&dir.path().join("deployhook.db"));
    let mut recorded = db
        .prepare("SELECT delivery_id FROM deliveries WHERE hook_id = 1")
        .unwrap();
    let recorded: HashSet<String> = recorded
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let missing: Vec<&String> = acknowledged
        .keys()
        .filter(|d| !recorded.contains(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not recorded: {missing:?}"
    );

    // Each merge asked for its deployment exactly once, acknowledged or not.
    let mut per_pr: HashMap<u64, usize> = HashMap::new();
    for created in fake.created() {
        *per_pr.entry(created.pull_request.unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = per_pr.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "deployments created twice: {twice:?}");

    // No deploy command ran twice; every acknowledged deployment ran and succeeded, but
    // the one the kill may have cut short, which must say so.
    let ran = lines(&runs);
    let unique: HashSet<&String> = ran.iter().collect();
    assert_eq!(unique.len(), ran.len(), "a deploy command ran twice");
    let mut interrupted = 0;
    for id in &deployments {
        let states: Vec<&str> = by_id[id].iter().map(String::as_str).collect();
        assert!(is_legal_order(&states), "deployment {id}: {states:?}");
        match states.last() {
            Some(&"success") => assert!(
                ran.contains(&id.to_string()),
                "deployment {id} succeeded without running"
            ),
            Some(&"error") => interrupted += 1,
            other => panic!("deployment {id} ended {other:?} under the queue policy"),
        }
    }
    assert!(
        interrupted <= 1,
        "{interrupted} deploys reported interrupted; one ran at most"
    );
}

/// Staging and qa wait for the same checks; production is promoted from staging.
const GATED_CONFIG: &str = r#"
[[environment]]
name = "staging"
repositories = ["acme/widgets"]
command = ["./deploy.sh"]
checks = ["test", "lint"]

[[environment]]
name = "qa"
repositories = ["acme/widgets"]
command = ["./deploy.sh"]
checks = ["test", "lint"]

[[environment]]
name = "production"
repositories = ["acme/widgets"]
command = ["./deploy.sh"]
promote_from = "staging"
soak = "2s"
"#;
const GATED_SOAK: Duration = Duration::from_secs(2);

/// A directory with the gated config file and its deploy script; the binary's settings.
fn gated_setup() -> (tempfile::TempDir, Vec<(&'static str, String)>) {
    let dir = tempfile::tempdir().unwrap();
    write_script(dir.path(), "deploy.sh", "true");
    std::fs::write(dir.path().join("deployhook.toml"), GATED_CONFIG).unwrap();
    (
        dir,
        vec![("DEPLOYHOOK_CONFIG", "deployhook.toml".to_owned())],
    )
}

/// Waits until nothing waits and nothing is left to send: after that, GitHub has every
/// deployment it will ever be asked for.
async fn wait_until_settled(dir: &Path) {
    let db = open_database(&dir.join("deployhook.db"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (waiting, pending): (i64, i64) = db
            .query_row(
                "SELECT (SELECT COUNT(*) FROM waits WHERE state = 'waiting'),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'pending')",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        if waiting == 0 && pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {waiting} waiting and {pending} calls to send"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL while a merge waits for its checks: after a restart the waits are still there,
/// and the checks turning green create exactly one deployment per gated environment.
#[tokio::test]
async fn a_merge_waiting_for_its_checks_survives_a_crash_and_deploys_once_per_environment() {
    use crate::checks::{
        FakeChecks, MERGED_AT, SHA, check_run_event, merged_pull_request, reads, status_event,
    };
    let github = MockServer::start().await;
    let fake = FakeGitHub::mount(&github).await;
    FakeChecks::mount(&github).await;
    let (dir, settings) = gated_setup();
    let http = reqwest::Client::new();

    let server = Server::start_with(&github, dir.path(), &settings);
    let merge = merged_pull_request(42, SHA, MERGED_AT);
    let response = send_signed(&http, &server.url, "pull_request", &merge, "merge-42", 1)
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    while reads(&github.received_requests().await.unwrap()) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checks were never read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();

    let server = Server::start_with(&github, dir.path(), &settings);
    // The merge's delivery was kept: delivered again, it is a duplicate.
    let again = send_signed(&http, &server.url, "pull_request", &merge, "merge-42", 1)
        .await
        .unwrap();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert!(fake.created().is_empty(), "{:?}", fake.created());
    let test = check_run_event(SHA, "test", 4001, Some("success"));
    let lint = status_event(SHA, "lint", 5001, "success");
    for (event, body, delivery) in [("check_run", &test, "test-1"), ("status", &lint, "lint-1")] {
        let response = send_signed(&http, &server.url, event, body, delivery, 1)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    wait_until_settled(dir.path()).await;
    drop(server);

    let mut created: Vec<(String, String, Option<u64>)> = fake
        .created()
        .into_iter()
        .map(|d| (d.environment, d.sha, d.pull_request))
        .collect();
    created.sort();
    assert_eq!(
        created,
        [
            ("qa".to_owned(), SHA.to_owned(), Some(42)),
            ("staging".to_owned(), SHA.to_owned(), Some(42)),
        ]
    );
}

/// SIGKILL while a staging success soaks: after a restart the promotion to production is
/// created once, and no sooner than the soak.
#[tokio::test]
async fn a_soak_cut_by_a_crash_promotes_once_after_restart() {
    use crate::checks::{SHA, deployment_status_event};
    let github = MockServer::start().await;
    let fake = FakeGitHub::mount(&github).await;
    let (dir, settings) = gated_setup();
    let http = reqwest::Client::new();

    let server = Server::start_with(&github, dir.path(), &settings);
    let success = deployment_status_event(880_101, "staging", SHA, "success");
    let started = std::time::Instant::now();
    let response = send_signed(&http, &server.url, "deployment_status", &success, "ok-1", 1)
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    server.kill();
    assert!(started.elapsed() < GATED_SOAK, "killed after the soak");

    let server = Server::start_with(&github, dir.path(), &settings);
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.created().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never promoted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = started.elapsed();
    assert!(
        waited >= GATED_SOAK - Duration::from_millis(30),
        "promoted after {waited:?}"
    );
    wait_until_settled(dir.path()).await;
    drop(server);

    let created = fake.created();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        (created[0].environment.as_str(), created[0].sha.as_str()),
        ("production", SHA)
    );
    let requests = github.received_requests().await.unwrap();
    let body: Value = requests
        .iter()
        .find(|r| {
            r.method == wiremock::http::Method::POST && r.url.path().ends_with("/deployments")
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .unwrap();
    assert_eq!(
        body["payload"]["promoted_from"],
        json!({"environment": "staging", "deployment": 880_101})
    );
}
