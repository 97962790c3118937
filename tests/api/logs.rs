//! The server's own log, read from the real binary as an operator's journal would hold it:
//! a flood of refused deliveries makes a few summary lines that count every refusal (not a
//! line each).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wiremock::MockServer;

use deployhook::webhook::signature::sign;

use crate::helpers::{SECRET, TOKEN, WAIT};

/// `deployhook serve` as a child, its log (stderr) collected line by line.
struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    base: String,
}

impl Server {
    fn start(dir: &Path, github: &MockServer, format: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deployhook"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", github.uri())
            .env("DEPLOY_COMMAND", "true")
            .env("DEPLOYHOOK_DATABASE", dir.join("deployhook.db"))
            .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0")
            .env("DEPLOYHOOK_LOG_FORMAT", format)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut server = Self {
            child,
            log,
            base: String::new(),
        };
        let listening = server.line_with("deployhook listening");
        // `addr=127.0.0.1:PORT` in text, `"addr":"127.0.0.1:PORT"` in JSON.
        let addr = listening
            .split("addr")
            .nth(1)
            .unwrap()
            .trim_start_matches(['=', '"', ':'])
            .split(['"', ' '])
            .next()
            .unwrap()
            .to_owned();
        server.base = format!("http://{addr}");
        server
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first line containing `text`, waiting up to [`WAIT`] for it.
    fn line_with(&self, text: &str) -> String {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            assert!(
                Instant::now() < until,
                "no log line with {text:?}; the log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a line of the text log says of refused deliveries: how many it counts.
fn refusals_counted(line: &str) -> Option<u64> {
    if line.contains("delivery refused") {
        return Some(1);
    }
    let count = line.split(" refused=").nth(1)?;
    count.split_whitespace().next()?.parse().ok()
}

#[tokio::test]
async fn a_flood_of_refusals_writes_a_few_lines_that_count_every_one() {
    const REFUSALS: u64 = 2000;
    const CONNECTIONS: u64 = 8;
    let github = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &github, "text");
    let started = Instant::now();
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let url = format!("{}/event_handler", server.base);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let body = br#"{"zen":"flood"}"#;
                let signature = sign(b"not-the-secret", body);
                for _ in 0..REFUSALS / CONNECTIONS {
                    let response = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("X-GitHub-Event", "ping")
                        .header("X-Hub-Signature-256", &signature)
                        .body(&body[..])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let sending = started.elapsed();
    // The last summary comes within a second or two of the last refusal.
    let until = Instant::now() + WAIT;
    let told = loop {
        let lines: Vec<String> = server
            .lines()
            .into_iter()
            .filter(|l| refusals_counted(l).is_some())
            .collect();
        let counted: u64 = lines.iter().filter_map(|l| refusals_counted(l)).sum();
        if counted >= REFUSALS || Instant::now() > until {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let counted: u64 = told.iter().filter_map(|l| refusals_counted(l)).sum();
    assert_eq!(counted, REFUSALS, "{told:#?}");
    // A line a second at most, and the first refusal in full: a few lines in all.
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        told.len() as u64 <= 2 * seconds + 1,
        "{} lines for {REFUSALS} refusals sent in {sending:?}: {:#?}",
        told.len(),
        &told[..told.len().min(5)]
    );
    let first = &told[0];
    assert!(
        first.contains("delivery refused")
            && first.contains("status=401")
            && first.contains("client=127.0.0.1")
            && first.contains(r#"error="X-Hub-Signature-256 does not match the body"#),
        "the first is logged in full: {first}"
    );
    let summary = told.last().unwrap();
    assert!(
        summary.contains("bad signature ×") && summary.contains("(top: 127.0.0.1 ×"),
        "{summary}"
    );
    // /metrics counts every one.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "deployhook_deliveries_rejected_total{{reason=\"bad_signature\"}} {REFUSALS}\n"
        )),
        "{metrics}"
    );
}
