//! Reproduces "a flood of refused deliveries fills the log" against any build of
//! deployhook: starts `BINARY serve` (text log, default level) with its log in a file, has
//! CONNECTIONS keep-alive connections send deliveries signed with the wrong secret for
//! SECONDS, and prints what the flood added to the log (lines, bytes, bytes an hour at that
//! rate) beside how many refusals were sent and what `/metrics` counted.
//!
//! ```text
//! cargo run --release --example refusal_flood -- [BINARY] [CONNECTIONS] [SECONDS]
//! ```
//! Defaults: `target/release/deployhook`, 8 connections, 20 seconds. Everything runs on
//! 127.0.0.1; the GitHub API it is given is a closed port (a refusal never reaches it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deployhook::webhook::signature::sign;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/deployhook".to_owned());
    let connections: u64 = args.next().map_or(8, |n| n.parse().expect("CONNECTIONS"));
    let seconds: u64 = args.next().map_or(20, |n| n.parse().expect("SECONDS"));

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let mut server = start(&binary, dir.path(), &log_path);
    let base = listening_address(&log_path, &mut server);
    let before = std::fs::read(&log_path).unwrap();

    let sent = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let senders: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(send_bad_signatures(base.clone(), until, sent.clone())))
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    // A summary line may come up to a second after the last refusal.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"deployhook_deliveries_rejected_total{reason="bad_signature"} "#)
        })
        .unwrap_or("none")
        .to_owned();
    let after = std::fs::read(&log_path).unwrap();
    let _ = server.kill();
    let _ = server.wait();

    let added = &after[before.len()..];
    let lines = added.iter().filter(|&&b| b == b'\n').count();
    let sent = sent.load(Ordering::Relaxed);
    let per_hour = added.len() as f64 * 3600.0 / seconds as f64;
    println!("binary:            {binary}");
    println!("flood:             {connections} connections, {seconds} s of bad signatures");
    println!(
        "refusals sent:     {sent} ({:.0}/s)",
        sent as f64 / seconds as f64
    );
    println!("/metrics counted:  {counted}");
    println!("log lines written: {lines}");
    println!(
        "log bytes written: {} ({:.1} MB an hour at this rate)",
        added.len(),
        per_hour / 1e6
    );
    let text = String::from_utf8_lossy(added);
    let mut shown = text.lines();
    for line in shown.by_ref().take(3) {
        println!("  | {line}");
    }
    if let Some(last) = shown.last() {
        println!("  | …\n  | {last}");
    }
}

fn start(binary: &str, dir: &Path, log: &Path) -> Child {
    Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_WEBHOOK_SECRET", "flood-secret")
        .env("GITHUB_TOKEN", "flood-token")
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .env("DEPLOY_COMMAND", "true")
        .env("DEPLOYHOOK_DATABASE", dir.join("deployhook.db"))
        .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0")
        .env("DEPLOYHOOK_LOG_FORMAT", "text")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
}

/// `http://ADDR` from the "deployhook listening … addr=ADDR" line.
fn listening_address(log: &Path, server: &mut Child) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("deployhook listening")) {
            let addr = line.split("addr=").nth(1).unwrap();
            return format!("http://{}", addr.split_whitespace().next().unwrap());
        }
        assert!(
            server.try_wait().unwrap().is_none() && Instant::now() < until,
            "the server did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends deliveries signed with the wrong secret over one keep-alive connection.
async fn send_bad_signatures(base: String, until: Instant, sent: Arc<AtomicU64>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("{base}/event_handler");
    let body: &[u8] = br#"{"zen":"flood"}"#;
    let signature = sign(b"not-the-secret", body);
    while Instant::now() < until {
        let response = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "ping")
            .header("X-Hub-Signature-256", &signature)
            .body(body)
            .send()
            .await;
        if response.is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED) {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}
