//! The intake benchmark: `cargo bench --bench intake`.
//!
//! Drives three servers, each its own process, over keep-alive connections with signed
//! `pull_request` deliveries (~28 KB, JSON and form-encoded), one after the other in the
//! same run so their figures compare:
//! - a bare baseline handler that only verifies the signature and checks the JSON is
//!   well-formed (`serde::de::IgnoredAny`; this same executable, re-run with
//!   `--baseline-server`): the bound for any implementation, and what the targets compare
//!   against;
//! - for reference, the same handler parsing into a `serde_json::Value`, as a typical
//!   handler does (`--baseline-server value`);
//! - the same handler made durable at the least cost: it writes each delivery's id to a
//!   file and answers once a sync to disk covers it, one sync for every delivery waiting
//!   (`--baseline-server durable`): the bound for any implementation that syncs before it
//!   acknowledges, which deployhook's `sync=full` is also judged against;
//! - deployhook on an in-memory database;
//! - deployhook on its durable database (a file under `target/`), `sync=full` and
//!   `sync=normal`;
//! - deployhook on PostgreSQL (`DEPLOYHOOK_DATABASE=postgres://…`): a fresh database on a
//!   throwaway server started with PostgreSQL's installed binaries
//!   (`Cluster::start_durable`: `fsync`, `synchronous_commit` and `full_page_writes` on;
//!   the tests' servers run with `fsync=off`), and
//!   judged against deployhook on SQLite with `sync=full`: the target is at least
//!   0.3 × its rate, p99 ≤ 20 ms. The PostgreSQL server's own CPU is shown beside
//!   deployhook's. Without the server binaries this target is skipped, loudly.
//!
//! Throughput runs use unmerged pull requests (nothing to deploy). Then it measures
//! merged-PR → deployment-created latency at a steady 20 merges/s against a mock GitHub in
//! this process, on SQLite (`sync=full`) and on PostgreSQL, and finally checks that every
//! delivery the durable servers acknowledged is in their databases. Settings:
//! `BENCH_SECONDS` (per target and encoding, default 10, taken in `BENCH_ROUNDS`
//! interleaved slices, default 5), `BENCH_CONNECTIONS` (default 8), `BENCH_ENCODINGS`
//! (`json` or `form`; default both), `BENCH_RUST_LOG` (the servers' log filter, default
//! `info`), `BENCH_POSTGRES=0` (skip PostgreSQL), `DEPLOYHOOK_PG_BIN` (PostgreSQL's bin
//! directory, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`).
//!
//! Its parts under `benches/intake/`: the baseline servers, the merge latency, the check of
//! the acknowledged deliveries. The load generator, the server processes and the
//! PostgreSQL server are shared with the other benchmarks (`benches/common/`).

#[path = "intake/acknowledged.rs"]
mod acknowledged;
#[path = "intake/baseline.rs"]
mod baseline;
mod common;
#[path = "intake/merges.rs"]
mod merges;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use acknowledged::{none_missing, recorded_in_postgres, recorded_in_sqlite};
use common::delivery::{Delivery, Encoding, fixture};
use common::load::{Answer, closed_loop};
use common::postgres::{durable_postgres, postgres_cpu_time};
use common::process::{Environment, ServerProcess, start_deployhook};
use common::{cores, exit_code, fresh_dir, in_turns, percentile, setting, verdict};
use deployhook_testkit::postgres::Cluster;
use merges::{merge_latency, mock_github};

const WARMUP: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        runtime.block_on(baseline::serve(args.get(i + 1).map(String::as_str)));
        return ExitCode::SUCCESS;
    }
    runtime.block_on(bench())
}

// --- Servers under test -----------------------------------------------------------------

/// A server under test, by the name its figures are printed under.
struct Server {
    name: &'static str,
    process: ServerProcess,
    url: String,
}

impl Server {
    fn deployhook(name: &'static str, database: &str, sync: &str, github: &str) -> Self {
        let log_filter = std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into());
        let file_name = name.replace([' ', ',', '(', ')', '+'], "-");
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{file_name}.log"));
        let settings = [
            ("DEPLOY_COMMAND", "true"),
            ("DEPLOYHOOK_DATABASE", database),
            ("DEPLOYHOOK_DATABASE_SYNC", sync),
            ("RUST_LOG", &log_filter),
        ];
        let binary = env!("CARGO_BIN_EXE_deployhook").as_ref();
        let process = start_deployhook(binary, Environment::Inherited, github, &settings, &log);
        Self::new(name, process)
    }

    fn baseline(name: &'static str, kind: &str) -> Self {
        Self::new(name, baseline::start(kind))
    }

    fn new(name: &'static str, process: ServerProcess) -> Self {
        let url = process.url();
        Self { name, process, url }
    }
}

// --- Load ---------------------------------------------------------------------------------

struct RunResult {
    deliveries: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    acknowledged: Vec<String>,
}

/// Sends `delivery` over `connections` keep-alive connections for `duration`.
async fn run(
    url: &str,
    delivery: &Delivery,
    connections: usize,
    duration: Duration,
    tag: &str,
) -> RunResult {
    let started = Instant::now();
    let deadline = started + duration;
    let (delivery, tag) = (delivery.clone(), tag.to_owned());
    let answers = closed_loop(url, connections, move |connection, n| {
        (Instant::now() < deadline).then(|| (format!("{tag}-{connection}-{n}"), delivery.clone()))
    })
    .await;
    let mut result = RunResult {
        deliveries: 0,
        errors: 0,
        elapsed: started.elapsed(),
        latencies: Vec::new(),
        acknowledged: Vec::new(),
    };
    for Answer { id, latency } in answers {
        match latency {
            Some(latency) => {
                result.latencies.push(latency);
                result.acknowledged.push(id);
            }
            None => result.errors += 1,
        }
    }
    result.deliveries = result.latencies.len();
    result.latencies.sort();
    result
}

/// How the throughput runs load each server.
struct Load {
    connections: usize,
    rounds: u64,
    slice: Duration,
}

/// What the throughput runs found, by server name and encoding.
#[derive(Default)]
struct Figures {
    rates: HashMap<(&'static str, &'static str), f64>,
    p99s: HashMap<(&'static str, &'static str), f64>,
    acknowledged: HashMap<&'static str, Vec<String>>,
}

/// Each server's throughput with `delivery`, after a warm-up, printed a row a server;
/// `postgres` is the PostgreSQL server with the index of the server that runs on it, whose
/// row is followed by that server's own CPU.
async fn throughput(
    servers: &[Server],
    postgres: Option<(&Cluster, usize)>,
    delivery: &Delivery,
    encoding: Encoding,
    load: &Load,
    figures: &mut Figures,
) {
    for server in servers {
        let tag = format!("warm-{}-{}", encoding.name(), server.process.pid());
        run(&server.url, delivery, load.connections, WARMUP, &tag).await;
    }
    let mut cpu = vec![Duration::ZERO; servers.len()];
    let mut postgres_cpu = Duration::ZERO;
    let slices = in_turns(servers.len(), load.rounds, async |i, round| {
        let server = &servers[i];
        let tag = format!("{}-{}-{round}", encoding.name(), server.process.pid());
        let before = server.process.cpu_time();
        let pg = postgres.filter(|&(_, on)| on == i).map(|(pg, _)| pg);
        let pg_before = pg.map(postgres_cpu_time);
        let result = run(&server.url, delivery, load.connections, load.slice, &tag).await;
        cpu[i] += server.process.cpu_time().saturating_sub(before);
        if let (Some(pg), Some(pg_before)) = (pg, pg_before) {
            postgres_cpu += postgres_cpu_time(pg).saturating_sub(pg_before);
        }
        result
    })
    .await;
    for (i, (server, results)) in servers.iter().zip(slices).enumerate() {
        // Judged by its median slice, so that a slow moment does not decide.
        let mut slice_rates: Vec<f64> = results
            .iter()
            .map(|r| r.deliveries as f64 / r.elapsed.as_secs_f64())
            .collect();
        slice_rates.sort_by(f64::total_cmp);
        let rate = slice_rates[slice_rates.len() / 2];
        let deliveries: usize = results.iter().map(|r| r.deliveries).sum();
        let errors: usize = results.iter().map(|r| r.errors).sum();
        let mut latencies: Vec<Duration> = results
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        latencies.sort();
        let p99 = percentile(&latencies, 0.99);
        println!(
            "{:<34} {:<5} {:>13.0} {:>8.2} {:>8.2} {:>12.0} {:>7}",
            server.name,
            encoding.name(),
            rate,
            percentile(&latencies, 0.50),
            p99,
            cpu[i].as_secs_f64() * 1e6 / deliveries.max(1) as f64,
            errors
        );
        if postgres.is_some_and(|(_, on)| on == i) {
            println!(
                "{:<34} {:<5} {:>13} {:>8} {:>8} {:>12.0}   (the PostgreSQL server's \
                 own processes)",
                "  + PostgreSQL server",
                encoding.name(),
                "",
                "",
                "",
                postgres_cpu.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
            );
        }
        figures.rates.insert((server.name, encoding.name()), rate);
        figures.p99s.insert((server.name, encoding.name()), p99);
        figures
            .acknowledged
            .entry(server.name)
            .or_default()
            .extend(results.into_iter().flat_map(|r| r.acknowledged));
    }
}

// --- The benchmark --------------------------------------------------------------------------

async fn bench() -> ExitCode {
    let seconds = Duration::from_secs(setting("BENCH_SECONDS", 10));
    let connections = usize::try_from(setting("BENCH_CONNECTIONS", 8)).unwrap_or(8);
    let json = fixture("pull_request.closed.unmerged.json");
    let dir: PathBuf = fresh_dir("bench-intake");
    let database = dir.join("deployhook.db").display().to_string();
    let database_normal = dir.join("deployhook-normal.db").display().to_string();
    let (github, arrivals) = mock_github().await;

    println!(
        "deployhook intake benchmark: {connections} keep-alive connections, {}s per run, \
         {} byte pull_request payload, {} cores",
        seconds.as_secs(),
        json.len(),
        cores()
    );
    let postgres = durable_postgres();
    let mut servers = vec![
        Server::baseline("baseline (verify + well-formed)", "ignored"),
        Server::baseline("reference (verify + parse Value)", "value"),
        Server::baseline("durable bound (+ append, fsync)", "durable"),
        Server::deployhook("deployhook, in-memory db", ":memory:", "full", &github),
        Server::deployhook("deployhook, durable, sync=full", &database, "full", &github),
        Server::deployhook(
            "deployhook, durable, sync=normal",
            &database_normal,
            "normal",
            &github,
        ),
    ];
    let postgres_url = postgres.as_ref().map(|pg| pg.database());
    if let Some(url) = &postgres_url {
        servers.push(Server::deployhook(
            "deployhook, postgres",
            url,
            "full",
            &github,
        ));
    }
    // The PostgreSQL server, with the index of the server running on it.
    let on_postgres = postgres.as_ref().map(|pg| (pg, servers.len() - 1));
    let encodings: Vec<Encoding> = match std::env::var("BENCH_ENCODINGS").as_deref() {
        Ok("json") => vec![Encoding::Json],
        Ok("form") => vec![Encoding::Form],
        _ => vec![Encoding::Json, Encoding::Form],
    };
    // The machine is noisy: targets take turns in short slices, round after round, and each
    // is judged by its median slice, so a slow moment hits all of them alike.
    let rounds = setting("BENCH_ROUNDS", 5);
    let load = Load {
        connections,
        rounds,
        slice: seconds / u32::try_from(rounds.max(1)).unwrap_or(1),
    };
    let mut figures = Figures::default();
    println!(
        "\n{:<34} {:<5} {:>13} {:>8} {:>8} {:>12} {:>7}",
        "target", "enc", "deliveries/s", "p50 ms", "p99 ms", "server CPU µs", "errors"
    );
    for &encoding in &encodings {
        let delivery = Delivery::encoded("pull_request", &json, encoding);
        throughput(
            &servers,
            on_postgres,
            &delivery,
            encoding,
            &load,
            &mut figures,
        )
        .await;
    }
    println!("\npeak RSS:");
    for server in &servers {
        println!(
            "  {:<34} {:>7.1} MiB",
            server.name,
            server.process.peak_rss_mib()
        );
    }
    let on_pg = on_postgres.map(|_| servers.pop().expect("the PostgreSQL server"));
    let Ok([baseline, reference, bound, memory, durable, normal]) =
        <[Server; 6]>::try_from(servers)
    else {
        unreachable!("six servers besides PostgreSQL's")
    };
    print_targets(
        &encodings,
        &figures,
        [&baseline, &reference, &bound, &memory, &durable, &normal],
        on_pg.as_ref(),
    );

    // Merge → deployment created, on SQLite (sync=full), then on PostgreSQL.
    let merged_on: Vec<&Server> = [&durable].into_iter().chain(on_pg.as_ref()).collect();
    let mut acknowledged = figures.acknowledged;
    let mut ok = merge_latency(&merged_on, &arrivals, seconds, &mut acknowledged).await;

    // Every delivery a durable server acknowledged is in its database.
    drop((baseline, reference, bound, memory));
    for (server, path) in [(durable, &database), (normal, &database_normal)] {
        ok &= none_missing(server, &mut acknowledged, async {
            recorded_in_sqlite(path)
        })
        .await;
    }
    if let (Some(server), Some(url)) = (on_pg, &postgres_url) {
        ok &= none_missing(server, &mut acknowledged, recorded_in_postgres(url)).await;
    }
    drop(postgres);
    exit_code(ok)
}

/// Each server's rate as a multiple of the baseline's in the same run, and its p99, against
/// the targets; `sync=full` against the durable bound, and PostgreSQL against `sync=full`.
fn print_targets(
    encodings: &[Encoding],
    figures: &Figures,
    [baseline, reference, bound, memory, durable, normal]: [&Server; 6],
    on_pg: Option<&Server>,
) {
    let (rates, p99s) = (&figures.rates, &figures.p99s);
    println!(
        "\ntargets (durable ≥ 0.7 × baseline, p99 ≤ 20 ms), against the baseline of the same run:"
    );
    for encoding in encodings.iter().map(|e| e.name()) {
        let base = rates[&(baseline.name, encoding)];
        for server in [reference, bound, memory, durable, normal]
            .into_iter()
            .chain(on_pg)
        {
            let ratio = rates[&(server.name, encoding)] / base;
            let p99 = p99s[&(server.name, encoding)];
            println!(
                "  {encoding} {:<34} {ratio:.2} × baseline ({}), p99 {p99:.2} ms ({})",
                server.name,
                verdict(ratio >= 0.7),
                verdict(p99 <= 20.0)
            );
        }
        // What syncing before every acknowledgement costs on this machine, whoever does it.
        let bound_rate = rates[&(bound.name, encoding)];
        println!(
            "  {encoding} {:<34} {:.2} × the durable bound",
            durable.name,
            rates[&(durable.name, encoding)] / bound_rate
        );
        // The target for PostgreSQL: durable intake at ≥ 0.3 × SQLite's durable
        // rate (both sync every acknowledgement to disk), p99 ≤ 20 ms.
        if let Some(pg) = on_pg {
            let ratio = rates[&(pg.name, encoding)] / rates[&(durable.name, encoding)];
            let p99 = p99s[&(pg.name, encoding)];
            println!(
                "  {encoding} {:<34} {ratio:.2} × {} (≥ 0.3: {}), p99 {p99:.2} ms vs \
                 {:.2} ms (≤ 20 ms: {})",
                pg.name,
                durable.name,
                verdict(ratio >= 0.3),
                p99s[&(durable.name, encoding)],
                verdict(p99 <= 20.0)
            );
        }
    }
}
