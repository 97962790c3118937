//! The backlog benchmark and the soak run: `cargo bench --bench backlog`.
//!
//! **Scaling** (the default): for each backlog size in `BENCH_BACKLOGS` (default
//! `0,1000,10000,50000`), a fresh deployhook (the release binary, durable database under
//! `target/`) is filled with that many deployments queued for one environment whose deploy
//! never ends, each with its `queued` status waiting in the outbox while GitHub is
//! unreachable (a closed port: every call fails at once and is retried with backoff, the
//! worst case for the outbox's queries). Then it measures intake latency (p50, p99) of
//! ordinary deliveries sent at a steady `BENCH_RATE` per second (default 200) for
//! `BENCH_SECONDS` (default 10), and, with nothing arriving, how much CPU the database's
//! writer thread uses over 5 s. Target: p99 at the largest backlog within 2× of p99 at 0.
//!
//! **Soak** (`BENCH_SOAK_MINUTES=10 cargo bench --bench backlog`): one server for that
//! long, receiving a steady mix (`BENCH_RATE` per second, default 20: unmerged pull
//! requests, pings, merges, and a deployment every 5 s whose deploy prints 100 KB in 20,000
//! lines), against a fake GitHub
//! that fails every third call with a 502. Retention is set short (2 minutes) so the run
//! reaches its steady state. Every minute it reports p99 intake latency, the server's RSS,
//! and the database's and its log's sizes: they must be flat from the first minute to the
//! last.
//!
//! **Waits** (`BENCH_WAITS=1 cargo bench --bench backlog`): the scaling run with merges
//! that wait for their checks instead of queued deployments. The backlog is that many
//! merges (each its own merge commit) waiting for check `test`, each with its read of the
//! checks retried in the outbox while GitHub is unreachable; the steady deliveries are
//! `check_run` events (`in_progress`, so no wait ends) for commits that wait. Same target.
//!
//! `BENCH_SERVER` runs another build of the binary instead (to compare with an older one).

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::delivery::Delivery;
use common::load::{closed_loop, pace, steady};
use common::process::{Environment, ServerProcess, free_addr, serve_here, start_deployhook};
use common::{percentile, setting, verdict};
use serde_json::json;

const REPO: &str = "acme/widgets";
const SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match setting("BENCH_SOAK_MINUTES", 0) {
        0 => runtime.block_on(scaling()),
        minutes => runtime.block_on(soak(minutes)),
    }
}

// --- The server -----------------------------------------------------------------------------

/// A deployhook on a fresh database of its own, stopped gracefully when dropped.
struct Server {
    process: ServerProcess,
    url: String,
    database: PathBuf,
}

impl Server {
    fn start(name: &str, github: &str, settings: &[(&str, &str)]) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-backlog");
        std::fs::create_dir_all(&dir).expect("a bench directory");
        let database = dir.join(format!("{name}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
        }
        let binary = std::env::var_os("BENCH_SERVER")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_deployhook").into());
        let database_setting = database.display().to_string();
        let settings: Vec<(&str, &str)> = [
            ("DEPLOYHOOK_DATABASE", database_setting.as_str()),
            ("DEPLOYHOOK_SHUTDOWN_TIMEOUT", "1s"),
        ]
        .into_iter()
        .chain(settings.iter().copied())
        .collect();
        let log = dir.join(format!("{name}.log"));
        let process = start_deployhook(&binary, Environment::PathOnly, github, &settings, &log);
        Self {
            url: process.url(),
            process,
            database,
        }
    }

    fn file_mib(&self, suffix: &str) -> f64 {
        std::fs::metadata(format!("{}{suffix}", self.database.display()))
            .map_or(0.0, |m| m.len() as f64 / 1024.0 / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.terminate();
    }
}

// --- Load -----------------------------------------------------------------------------------

fn deployment(id: u64) -> Delivery {
    Delivery::json(
        "deployment",
        &json!({
            "action": "created",
            "deployment": {
                "id": id, "sha": SHA, "ref": "main", "task": "deploy",
                "environment": "production", "payload": {},
                "creator": {"login": "octo-dev", "type": "User"},
            },
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

/// The merge commit of pull request `number` in the waits benchmark: one per merge.
fn merge_sha(number: u64) -> String {
    format!("{number:040x}")
}

fn merge(number: u64) -> Delivery {
    Delivery::json(
        "pull_request",
        &json!({
            "action": "closed",
            "pull_request": {
                "number": number, "title": "A change", "merged": true,
                "merge_commit_sha": merge_sha(number), "merged_at": "2026-11-30T12:00:00Z",
                "user": {"login": "octo-dev", "type": "User"}, "base": {"ref": "main"},
            },
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

/// A check run still running on the merge commit of pull request `number`.
fn check_run(number: u64, id: u64) -> Delivery {
    Delivery::json(
        "check_run",
        &json!({
            "action": "created",
            "check_run": {
                "id": id, "name": "test", "head_sha": merge_sha(number),
                "status": "in_progress", "conclusion": null,
                "html_url": format!("https://github.com/{REPO}/runs/{id}"),
            },
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

fn pull_request(number: u64, merged: bool) -> Delivery {
    Delivery::json(
        "pull_request",
        &json!({
            "action": if merged { "closed" } else { "opened" },
            "pull_request": {
                "number": number, "title": "A change", "merged": merged,
                "merge_commit_sha": SHA, "user": {"login": "octo-dev", "type": "User"},
                "base": {"ref": "main"},
            },
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

/// Sends `deliveries` over 8 connections as fast as the server answers.
async fn fill(url: &str, deliveries: Vec<Delivery>) {
    let next = AtomicU64::new(0);
    let answers = closed_loop(url, 8, move |_, _| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let delivery = deliveries.get(usize::try_from(i).ok()?)?;
        Some((format!("fill-{i}"), delivery.clone()))
    })
    .await;
    for answer in answers {
        assert!(answer.latency.is_some(), "fill delivery {}", answer.id);
    }
}

/// Sends what `pick` returns at a steady `rate` per second for `duration`; the latencies
/// of those answered, sorted, and how many were not.
async fn steady_rate(
    url: &str,
    rate: u64,
    duration: Duration,
    tag: &str,
    pick: impl Fn(u64) -> Delivery,
) -> (Vec<Duration>, usize) {
    let end = Instant::now() + duration;
    let sent = steady(url, pace(rate), |n| {
        (Instant::now() < end).then(|| (format!("{tag}-{n}"), pick(n)))
    })
    .await;
    let mut latencies: Vec<Duration> = sent.iter().filter_map(|s| s.latency).collect();
    latencies.sort();
    let errors = sent.len() - latencies.len();
    (latencies, errors)
}

// --- Scaling --------------------------------------------------------------------------------

async fn scaling() -> ExitCode {
    let backlogs: Vec<u64> = std::env::var("BENCH_BACKLOGS")
        .unwrap_or_else(|_| "0,1000,10000,50000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let rate = setting("BENCH_RATE", 200);
    let seconds = setting("BENCH_SECONDS", 10);
    // Nothing listens here: every GitHub call fails at once, and is retried.
    let unreachable = format!("http://{}", free_addr());
    println!(
        "{:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>15} {:>9}",
        "backlog", "fill s", "sent/s", "p50 ms", "p99 ms", "errors", "writer idle ms/s", "RSS MiB"
    );
    let mut p99s = Vec::new();
    let waits = setting("BENCH_WAITS", 0) != 0;
    if waits {
        println!("merges waiting for their checks; steady check_run events for them");
    }
    for &backlog in &backlogs {
        let settings: &[(&str, &str)] = if waits {
            // Queue: every merge keeps its own wait, none supersedes another.
            &[
                ("DEPLOY_COMMAND", "true"),
                ("DEPLOYHOOK_POLICY", "queue"),
                ("DEPLOYHOOK_CHECKS", "test"),
                ("DEPLOYHOOK_CHECKS_TIMEOUT", "24h"),
            ]
        } else {
            &[
                // A deploy that never ends: the rest of the queue waits behind it.
                ("DEPLOY_COMMAND", "sleep 3600"),
                ("DEPLOYHOOK_POLICY", "queue"),
            ]
        };
        let server = Server::start(&format!("backlog-{backlog}"), &unreachable, settings);
        let started = Instant::now();
        let backlog_deliveries = if waits {
            (1..=backlog).map(merge).collect()
        } else {
            (1..=backlog).map(deployment).collect()
        };
        fill(&server.url, backlog_deliveries).await;
        let filled = started.elapsed();
        // Let the outbox's retries settle into their backoff, as hours into an outage.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (latencies, errors) = steady_rate(
            &server.url,
            rate,
            Duration::from_secs(seconds),
            "steady",
            |n| {
                if waits {
                    // Events for commits that wait (for unknown ones at backlog 0).
                    check_run(1 + n % backlog.max(1), 5_000_000 + n)
                } else {
                    pull_request(1_000_000 + n, false)
                }
            },
        )
        .await;
        let before = server.process.thread_cpu("deployhook-db");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle =
            (server.process.thread_cpu("deployhook-db") - before).as_secs_f64() * 1000.0 / 5.0;
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "{backlog:>8} {:>9.1} {:>9.0} {p50:>8.2} {p99:>8.2} {errors:>7} {idle:>15.1} {:>9.1}",
            filled.as_secs_f64(),
            latencies.len() as f64 / seconds as f64,
            server.process.rss_mib()
        );
        p99s.push((backlog, p99));
    }
    let (Some(&(_, first)), Some(&(largest, last))) = (p99s.first(), p99s.last()) else {
        return ExitCode::SUCCESS;
    };
    let ratio = last / first;
    println!(
        "\np99 at {largest} ÷ p99 at {}: {ratio:.2} (target ≤ 2: {})",
        p99s[0].0,
        verdict(ratio <= 2.0)
    );
    ExitCode::SUCCESS
}

// --- Soak -----------------------------------------------------------------------------------

/// A fake GitHub that fails every third call with a 502 and otherwise accepts.
async fn flaky_github() -> String {
    let calls = Arc::new(AtomicU64::new(0));
    let answer = move || {
        let calls = calls.clone();
        async move {
            if calls.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
                return (
                    StatusCode::BAD_GATEWAY,
                    axum::Json(json!({"message": "flaky"})),
                );
            }
            (
                StatusCode::CREATED,
                axum::Json(json!({"id": 1, "state": "success"})),
            )
        }
    };
    let app = Router::new()
        .route("/repos/{owner}/{repo}/deployments", post(answer.clone()))
        .route(
            "/repos/{owner}/{repo}/deployments/{id}/statuses",
            post(answer),
        );
    serve_here(app).await
}

async fn soak(minutes: u64) -> ExitCode {
    let rate = setting("BENCH_RATE", 20);
    let github = flaky_github().await;
    let server = Server::start(
        "soak",
        &github,
        &[
            ("DEPLOY_COMMAND", "seq 1 20000"), // about 100 KB of output a deploy
            ("DEPLOYHOOK_RETAIN_DELIVERIES", "2m"),
            ("DEPLOYHOOK_RETAIN_DEPLOYS", "2m"),
        ],
    );
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>7} {:>8} {:>11} {:>11}",
        "minute", "sent", "p50 ms", "p99 ms", "errors", "RSS MiB", "db MiB", "db log MiB"
    );
    let next_deployment = Arc::new(AtomicU64::new(1));
    for minute in 1..=minutes {
        let deployments = next_deployment.clone();
        let per_second = rate.max(4);
        let (latencies, errors) = steady_rate(
            &server.url,
            per_second,
            Duration::from_secs(60),
            &format!("soak-{minute}"),
            move |n| match n % per_second {
                0 if n % (per_second * 5) == 0 => {
                    deployment(deployments.fetch_add(1, Ordering::Relaxed))
                }
                1 => pull_request(minute * 1_000_000 + n, true),
                2 => Delivery::json(
                    "ping",
                    &json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
                ),
                _ => pull_request(minute * 1_000_000 + n, false),
            },
        )
        .await;
        println!(
            "{minute:>6} {:>9} {:>8.2} {:>8.2} {errors:>7} {:>8.1} {:>11.2} {:>11.2}",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            server.process.rss_mib(),
            server.file_mib(""),
            server.file_mib("-wal"),
        );
    }
    ExitCode::SUCCESS
}
