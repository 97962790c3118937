//! The claim benchmark: `cargo bench --bench claim`.
//!
//! How long the deploy worker's claim transaction takes while deliveries pour in, on
//! SQLite and on PostgreSQL in the same run. Each engine is opened in this process through
//! `Store::connect`, as `deployhook serve` opens it: SQLite a fresh file under `target/`
//! with `sync=full`; PostgreSQL a fresh database on a throwaway server the bench starts
//! with PostgreSQL's installed binaries, with `fsync`, `synchronous_commit` and
//! `full_page_writes` on (`Cluster::start_durable`; the tests' servers run with `fsync=off`).
//!
//! Each store is given `BENCH_JOBS` deployments (default 50000), queued over four
//! environments of one repository. Then one worker claims as the deploy worker does (one
//! write: `jobs::claim` with `max_running` 4 and the `queue` policy, plus
//! `jobs::report_started` for each job claimed) and finishes each claimed job in a write of
//! its own (`jobs::finish`, as a deploy's end does), in a loop, while `BENCH_CONNECTIONS`
//! tasks (default 8, like the intake benchmark's connections) each record deliveries one
//! after the other as the intake does for an unmerged pull request
//! (`deliveries::record`, nothing queued), waiting for each commit. The load is the store
//! alone, without HTTP or parsing, so it writes faster than the intake's 8 connections do:
//! a harder load than theirs. The engines take turns in `BENCH_ROUNDS` slices (default 5)
//! of `BENCH_SECONDS` in all per engine (default 10), so a slow moment hits both alike; the
//! claims of an idle store (no load) are measured the same way, for reference.
//!
//! It prints, per engine and for idle and loaded stores: claims and deliveries per second,
//! the claim transaction's p50 and p99, and the finishing write's p50 and p99; then
//! PostgreSQL ÷ SQLite for each. `BENCH_POSTGRES=0` skips PostgreSQL; `DEPLOYHOOK_PG_BIN`
//! names its bin directory (else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`). For example:
//!
//! ```text
//! BENCH_SECONDS=6 cargo bench --bench claim
//! ```

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::postgres::durable_postgres;
use common::{cores, exit_code, fresh_dir, in_turns, percentile, setting};
use deployhook::model::{DeployJob, DeploymentState, Effect, Outcome, Policy, Sync as DbSync};
use deployhook::store::deliveries::{self, DeliveryRecord};
use deployhook::store::jobs::{self, Claimed};
use deployhook::store::{DEFAULT_LOG_LIMIT, Store, now_ms};

const ENVIRONMENTS: [&str; 4] = ["production", "staging", "canary", "qa"];
const MAX_RUNNING: usize = 4;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(bench())
}

fn job(id: u64) -> DeployJob {
    DeployJob {
        id: id.into(),
        repo: "acme/widgets".parse().expect("a repository"),
        environment: ENVIRONMENTS[(id % 4) as usize]
            .parse()
            .expect("an environment"),
        sha: "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b"
            .parse()
            .expect("a commit"),
        git_ref: "main".into(),
        task: "deploy".into(),
        deploy_user: "octo-dev".into(),
        payload: "{}".into(),
        environment_url: None,
        log_url: None,
        installation: None,
    }
}

/// What the intake records for an unmerged pull request's delivery.
fn delivery(id: String) -> DeliveryRecord {
    DeliveryRecord {
        hook_id: 1,
        delivery_id: id,
        event: "pull_request".into(),
        action: Some("closed".into()),
        repository: Some("acme/widgets".into()),
        received_at: now_ms(),
        outcome: Outcome::Ignored,
        message: "pull request #1 closed without merging: nothing to deploy".into(),
        headers: Some(
            r#"{"user-agent":"GitHub-Hookshot/abc1234","content-type":"application/json","x-github-event":"pull_request","x-github-hook-id":"1","x-github-hook-installation-target-type":"repository","x-github-hook-installation-target-id":"1"}"#
                .into(),
        ),
    }
}

struct Engine {
    name: &'static str,
    store: Store,
}

#[derive(Default)]
struct Measured {
    claims: Vec<Duration>,
    finishes: Vec<Duration>,
    jobs: u64,
    deliveries: u64,
    elapsed: Duration,
    errors: u64,
}

/// One slice: claims and finishes for `duration`, with `load` tasks recording deliveries
/// meanwhile.
async fn slice(store: &Store, load: usize, duration: Duration, tag: &str) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for task in 0..load {
        let (store, stop, delivered, failed) = (
            store.clone(),
            stop.clone(),
            delivered.clone(),
            failed.clone(),
        );
        let tag = format!("{tag}-{task}");
        loaders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let record = delivery(format!("{tag}-{n}"));
                n += 1;
                let recorded = store
                    .write(move |c| deliveries::record(c, &record, &Effect::None, 10_000))
                    .await;
                match recorded {
                    Ok(_) => delivered.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let mut measured = Measured::default();
    let started = Instant::now();
    while started.elapsed() < duration {
        let now = now_ms();
        let at = Instant::now();
        let claimed = store
            .write(move |c| {
                let claimed = jobs::claim(c, "bench", MAX_RUNNING, |_| Policy::Queue, now)?;
                for Claimed { job, .. } in &claimed {
                    jobs::report_started(c, job, "running deploy", now)?;
                }
                Ok(claimed)
            })
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(_) => {
                measured.errors += 1;
                continue;
            }
        };
        measured.claims.push(at.elapsed());
        assert!(!claimed.is_empty(), "the queue ran dry: raise BENCH_JOBS");
        for Claimed { job, .. } in claimed {
            let at = Instant::now();
            let finished = store
                .write(move |c| {
                    jobs::finish(c, &job, DeploymentState::Success, "deployed", now_ms())
                })
                .await;
            match finished {
                Ok(()) => measured.finishes.push(at.elapsed()),
                Err(_) => measured.errors += 1,
            }
            measured.jobs += 1;
        }
    }
    measured.elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.await.expect("a loader");
    }
    measured.deliveries = delivered.load(Ordering::Relaxed);
    measured.errors += failed.load(Ordering::Relaxed);
    measured
}

async fn bench() -> ExitCode {
    let seconds = Duration::from_secs(setting("BENCH_SECONDS", 10));
    let rounds = setting("BENCH_ROUNDS", 5).max(1);
    let load = usize::try_from(setting("BENCH_CONNECTIONS", 8)).unwrap_or(8);
    let queued = setting("BENCH_JOBS", 50_000);
    let piece = seconds / u32::try_from(rounds).unwrap_or(1);

    let dir = fresh_dir("bench-claim");
    let sqlite = dir.join("claim.db").display().to_string();
    let postgres = durable_postgres();
    let mut engines = vec![Engine {
        name: "sqlite, sync=full",
        store: Store::connect(&sqlite, DbSync::Full, DEFAULT_LOG_LIMIT)
            .await
            .expect("the SQLite store"),
    }];
    if let Some(pg) = &postgres {
        let url = pg.database();
        engines.push(Engine {
            name: "postgres",
            store: Store::connect(&url, DbSync::Full, DEFAULT_LOG_LIMIT)
                .await
                .expect("the PostgreSQL store"),
        });
    }
    println!(
        "deployhook claim benchmark: {queued} deployments queued over {} environments, \
         claims of up to {MAX_RUNNING}, {load} tasks recording deliveries, {}s per engine \
         in {rounds} slices, {} cores",
        ENVIRONMENTS.len(),
        seconds.as_secs(),
        cores()
    );
    for engine in &engines {
        let at = Instant::now();
        let now = now_ms();
        for batch in 0..queued.div_ceil(1000) {
            let ids = batch * 1000 + 1..=((batch + 1) * 1000).min(queued);
            engine
                .store
                .write(move |c| {
                    for id in ids {
                        jobs::enqueue(c, &job(id), "d", now)?;
                    }
                    Ok(())
                })
                .await
                .expect("deployments queued");
        }
        println!(
            "  {}: queued in {:.1} s",
            engine.name,
            at.elapsed().as_secs_f64()
        );
    }

    let mut ok = true;
    // (idle p50, idle p99, loaded p50, loaded p99) of claims, then of finishes, per engine.
    let mut figures: Vec<[f64; 8]> = Vec::new();
    println!(
        "\n{:<18} {:<6} {:>8} {:>12} {:>11} {:>11} {:>12} {:>12} {:>6}",
        "engine",
        "load",
        "claims/s",
        "deliveries/s",
        "claim p50",
        "claim p99",
        "finish p50",
        "finish p99",
        "errors"
    );
    for (kind, tasks) in [("idle", 0), ("loaded", load)] {
        // A short warm-up of each, then the slices in turn.
        for engine in &engines {
            slice(&engine.store, tasks, Duration::from_millis(500), "warm").await;
        }
        let mut results = in_turns(engines.len(), rounds, async |i, round| {
            let tag = format!("{kind}-{i}-{round}");
            slice(&engines[i].store, tasks, piece, &tag).await
        })
        .await;
        for (i, engine) in engines.iter().enumerate() {
            let measured = std::mem::take(&mut results[i]);
            let elapsed: f64 = measured.iter().map(|m| m.elapsed.as_secs_f64()).sum();
            let mut claims: Vec<Duration> = measured
                .iter()
                .flat_map(|m| m.claims.iter().copied())
                .collect();
            let mut finishes: Vec<Duration> = measured
                .iter()
                .flat_map(|m| m.finishes.iter().copied())
                .collect();
            claims.sort();
            finishes.sort();
            let deliveries: u64 = measured.iter().map(|m| m.deliveries).sum();
            let errors: u64 = measured.iter().map(|m| m.errors).sum();
            ok &= errors == 0;
            let row = [
                percentile(&claims, 0.50),
                percentile(&claims, 0.99),
                percentile(&finishes, 0.50),
                percentile(&finishes, 0.99),
            ];
            println!(
                "{:<18} {:<6} {:>8.0} {:>12.0} {:>8.2} ms {:>8.2} ms {:>9.2} ms {:>9.2} ms {:>6}",
                engine.name,
                kind,
                claims.len() as f64 / elapsed,
                deliveries as f64 / elapsed,
                row[0],
                row[1],
                row[2],
                row[3],
                errors
            );
            if kind == "idle" {
                figures.push([row[0], row[1], 0.0, 0.0, row[2], row[3], 0.0, 0.0]);
            } else {
                figures[i][2..4].copy_from_slice(&row[0..2]);
                figures[i][6..8].copy_from_slice(&row[2..4]);
            }
        }
    }
    if let [sqlite, postgres] = figures[..] {
        println!("\npostgres ÷ sqlite (latency: above 1 is slower on PostgreSQL):");
        let labels = [
            "claim p50, idle",
            "claim p99, idle",
            "claim p50, loaded",
            "claim p99, loaded",
            "finish p50, idle",
            "finish p99, idle",
            "finish p50, loaded",
            "finish p99, loaded",
        ];
        for (k, label) in labels.iter().enumerate() {
            println!(
                "  {label:<20} {:>6.2} ×  ({:.2} ms vs {:.2} ms)",
                postgres[k] / sqlite[k],
                postgres[k],
                sqlite[k]
            );
        }
    }
    for engine in engines {
        let _ = engine.store.close().await;
    }
    drop(postgres);
    exit_code(ok)
}
