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

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use deployhook::webhook::signature::{WebhookSecrets, sign};
use deployhook_testkit::postgres::Cluster;
use serde_json::{Value, json};

const SECRET: &str = "bench-secret";
const WARMUP: Duration = Duration::from_secs(1);
const MERGES_PER_SECOND: u64 = 20;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        let kind = match args.get(i + 1).map(String::as_str) {
            Some("value") => Baseline::Value,
            Some("durable") => Baseline::Durable,
            _ => Baseline::WellFormed,
        };
        runtime.block_on(baseline_server(kind));
        return ExitCode::SUCCESS;
    }
    runtime.block_on(bench())
}

// --- The baseline: verify the signature, parse the JSON, answer ------------------------

#[derive(Clone, Copy, PartialEq)]
enum Baseline {
    WellFormed,
    Value,
    Durable,
}

/// Delivery ids for the journal thread to write, each with whom to tell once synced.
type Journal = std::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<()>)>;

struct BaselineState {
    secrets: WebhookSecrets,
    kind: Baseline,
    /// For [`Baseline::Durable`].
    journal: Option<Journal>,
}

async fn baseline_server(kind: Baseline) {
    let secrets = WebhookSecrets::from_list(SECRET).expect("a secret");
    let journal = (kind == Baseline::Durable).then(start_journal);
    let app = Router::new()
        .route("/event_handler", post(baseline_handler))
        .layer(axum::extract::DefaultBodyLimit::max(25 * 1024 * 1024))
        .with_state(Arc::new(BaselineState {
            secrets,
            kind,
            journal,
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    println!("listening {}", listener.local_addr().expect("an address"));
    axum::serve(listener, app)
        .await
        .expect("the baseline server");
}

/// The least a durable handler must do: write, then sync, once for all who wait (group
/// commit), on a thread of its own. The journal is a ring in a file written out in full
/// beforehand, as a database's log is once it has grown: syncing an append that grows the
/// file would also commit its new size, which costs more than the least.
fn start_journal() -> Journal {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    const RING: u64 = 16 * 1024 * 1024;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-intake-journal");
    let mut file = std::fs::File::create(path).expect("a journal file");
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..RING / zeros.len() as u64 {
        file.write_all(&zeros).expect("a journal written out");
    }
    file.sync_all().expect("a journal on disk");
    let (append, appended): (Journal, _) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut waiting = Vec::new();
        let mut buffer = Vec::new();
        let mut offset = 0;
        while let Ok(first) = appended.recv() {
            waiting.push(first);
            waiting.extend(appended.try_iter());
            for (id, _) in &waiting {
                buffer.extend_from_slice(id.as_bytes());
                buffer.push(b'\n');
            }
            if offset + buffer.len() as u64 > RING {
                offset = 0;
            }
            file.write_all_at(&buffer, offset).expect("a journal write");
            offset += buffer.len() as u64;
            file.sync_data().expect("a journal sync");
            buffer.clear();
            for (_, done) in waiting.drain(..) {
                let _ = done.send(());
            }
        }
    });
    append
}

async fn baseline_handler(
    State(state): State<Arc<BaselineState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let secrets = &state.secrets;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if secrets
        .verify(&body, header("x-hub-signature-256"))
        .is_err()
    {
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    let json = if header("content-type").starts_with("application/x-www-form-urlencoded") {
        let form: HashMap<String, String> = match serde_urlencoded::from_bytes(&body) {
            Ok(form) => form,
            Err(_) => return (StatusCode::BAD_REQUEST, "bad form"),
        };
        form.get("payload")
            .cloned()
            .unwrap_or_default()
            .into_bytes()
    } else {
        body.to_vec()
    };
    let parsed = if state.kind == Baseline::Value {
        serde_json::from_slice::<Value>(&json).map(drop)
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(&json).map(drop)
    };
    if parsed.is_err() {
        return (StatusCode::BAD_REQUEST, "bad json");
    }
    if let Some(journal) = &state.journal {
        let (done, synced) = tokio::sync::oneshot::channel();
        let id = header("x-github-delivery").to_owned();
        journal.send((id, done)).expect("the journal thread");
        synced.await.expect("a sync");
    }
    (StatusCode::OK, "ok")
}

// --- Servers under test -----------------------------------------------------------------

struct Server {
    name: &'static str,
    child: Child,
    url: String,
}

impl Server {
    fn deployhook(name: &'static str, database: &str, sync: &str, github: &str) -> Self {
        // A port free a moment ago; the bench then waits for /healthz.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let child = Command::new(env!("CARGO_BIN_EXE_deployhook"))
            .arg("serve")
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", "bench-token")
            .env("GITHUB_API_URL", github)
            .env("DEPLOY_COMMAND", "true")
            .env("DEPLOYHOOK_DATABASE", database)
            .env("DEPLOYHOOK_DATABASE_SYNC", sync)
            .env("DEPLOYHOOK_LISTEN", addr.to_string())
            .env("DEPLOYHOOK_LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Logs go to a file, as they would to journald: written, not shown.
            .stdout(Stdio::null())
            .stderr(log_file(name))
            .spawn()
            .expect("deployhook starts");
        let health = format!("http://{addr}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "deployhook did not listen on {health}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            name,
            child,
            url: format!("http://{addr}/event_handler"),
        }
    }

    fn baseline(name: &'static str, parse: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this executable"))
            .args(["--baseline-server", parse])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the baseline starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the baseline's address");
        let addr = line.trim().trim_start_matches("listening ").to_owned();
        Self {
            name,
            child,
            url: format!("http://{addr}/event_handler"),
        }
    }

    /// Peak resident memory so far, from /proc.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// CPU time (user + system) the process has used so far.
    fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at index 2.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks (100/s).
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    /// SIGTERM, then wait: deployhook shuts down gracefully.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- Load ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Json,
    Form,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Form => "form",
        }
    }
}

/// A signed request body, shared by every request of a run.
struct Delivery {
    content_type: &'static str,
    body: Bytes,
    signature: String,
}

impl Delivery {
    fn new(json: &[u8], encoding: Encoding) -> Self {
        let (content_type, body) = match encoding {
            Encoding::Json => ("application/json", json.to_vec()),
            Encoding::Form => {
                let text = std::str::from_utf8(json).expect("UTF-8 JSON");
                let form = serde_urlencoded::to_string([("payload", text)]).expect("a form");
                ("application/x-www-form-urlencoded", form.into_bytes())
            }
        };
        let signature = sign(SECRET.as_bytes(), &body);
        Self {
            content_type,
            body: Bytes::from(body),
            signature,
        }
    }
}

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
    delivery: Arc<Delivery>,
    connections: usize,
    duration: Duration,
    tag: &str,
) -> RunResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (url, delivery, tag) = (url.to_owned(), delivery.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .http1_only()
                .build()
                .expect("a client");
            let (mut latencies, mut acknowledged, mut errors) = (Vec::new(), Vec::new(), 0);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let id = format!("{tag}-{connection}-{n}");
                n += 1;
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("Content-Type", delivery.content_type)
                    .header("X-GitHub-Event", "pull_request")
                    .header("X-GitHub-Delivery", &id)
                    .header("X-GitHub-Hook-ID", "1")
                    .header("X-Hub-Signature-256", &delivery.signature)
                    .body(delivery.body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                        acknowledged.push(id);
                    }
                    _ => errors += 1,
                }
            }
            (latencies, acknowledged, errors)
        }));
    }
    let mut result = RunResult {
        deliveries: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        acknowledged: Vec::new(),
    };
    for task in tasks {
        let (latencies, acknowledged, errors) = task.await.expect("a sender");
        result.latencies.extend(latencies);
        result.acknowledged.extend(acknowledged);
        result.errors += errors;
    }
    result.elapsed = started.elapsed();
    result.deliveries = result.latencies.len();
    result.latencies.sort();
    result
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

// --- Mock GitHub for the merge latency ----------------------------------------------------

type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

async fn mock_github() -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let app = Router::new()
        .route(
            "/repos/{owner}/{repo}/deployments",
            post(
                |State(arrivals): State<Arrivals>, Json(body): Json<Value>| async move {
                    let number = body["payload"]["pull_request"].as_u64().unwrap_or_default();
                    arrivals
                        .lock()
                        .expect("a lock")
                        .insert(number, Instant::now());
                    (StatusCode::CREATED, Json(json!({"id": number})))
                },
            )
            .get(|| async { Json(json!([])) }),
        )
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, arrivals)
}

/// Sends merged pull requests at a steady rate; returns each acknowledged one's send time
/// by number.
async fn merges(url: &str, first: u64, count: u64) -> HashMap<u64, Instant> {
    let template: Value =
        serde_json::from_slice(&fixture("pull_request.closed.merged.json")).expect("JSON");
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / MERGES_PER_SECOND));
    let mut sent = HashMap::new();
    let mut tasks = Vec::new();
    for i in 0..count {
        ticker.tick().await;
        let number = first + i;
        let mut event = template.clone();
        event["number"] = json!(number);
        event["pull_request"]["number"] = json!(number);
        let body = event.to_string().into_bytes();
        let signature = sign(SECRET.as_bytes(), &body);
        sent.insert(number, Instant::now());
        let request = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "pull_request")
            .header("X-GitHub-Delivery", format!("merge-{number}"))
            .header("X-GitHub-Hook-ID", "1")
            .header("X-Hub-Signature-256", signature)
            .body(body);
        tasks.push((number, tokio::spawn(request.send())));
    }
    for (number, task) in tasks {
        let acknowledged = matches!(task.await, Ok(Ok(r)) if r.status().is_success());
        if !acknowledged {
            sent.remove(&number);
        }
    }
    sent
}

fn log_file(name: &str) -> Stdio {
    let file_name = name.replace([' ', ',', '(', ')', '+'], "-");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{file_name}.log"));
    std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// --- The benchmark --------------------------------------------------------------------------

async fn bench() -> ExitCode {
    let seconds = Duration::from_secs(env_number("BENCH_SECONDS", 10));
    let connections = usize::try_from(env_number("BENCH_CONNECTIONS", 8)).unwrap_or(8);
    let json = fixture("pull_request.closed.unmerged.json");
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-intake");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a bench directory");
    let database = dir.join("deployhook.db").display().to_string();
    let database_normal = dir.join("deployhook-normal.db").display().to_string();
    let (github, arrivals) = mock_github().await;

    println!(
        "deployhook intake benchmark: {connections} keep-alive connections, {}s per run, \
         {} byte pull_request payload, {} cores",
        seconds.as_secs(),
        json.len(),
        std::thread::available_parallelism().map_or(0, usize::from)
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
    // Its index among the servers, for the PostgreSQL server's own CPU time.
    let on_postgres = postgres.as_ref().map(|_| servers.len() - 1);
    let encodings: Vec<Encoding> = match std::env::var("BENCH_ENCODINGS").as_deref() {
        Ok("json") => vec![Encoding::Json],
        Ok("form") => vec![Encoding::Form],
        _ => vec![Encoding::Json, Encoding::Form],
    };
    // The machine is noisy: targets take turns in short slices, round after round, and each
    // is judged by its median slice, so a slow moment hits all of them alike.
    let rounds = env_number("BENCH_ROUNDS", 5);
    let slice = seconds / u32::try_from(rounds.max(1)).unwrap_or(1);
    let mut rates: HashMap<(&str, &str), f64> = HashMap::new();
    let mut p99s: HashMap<(&str, &str), f64> = HashMap::new();
    let mut acknowledged: HashMap<&str, Vec<String>> = HashMap::new();
    println!(
        "\n{:<34} {:<5} {:>13} {:>8} {:>8} {:>12} {:>7}",
        "target", "enc", "deliveries/s", "p50 ms", "p99 ms", "server CPU µs", "errors"
    );
    for &encoding in &encodings {
        let delivery = Arc::new(Delivery::new(&json, encoding));
        for server in &servers {
            let tag = format!("warm-{}-{}", encoding.name(), server.child.id());
            run(&server.url, delivery.clone(), connections, WARMUP, &tag).await;
        }
        let mut slices: Vec<Vec<RunResult>> = servers.iter().map(|_| Vec::new()).collect();
        let mut cpu = vec![Duration::ZERO; servers.len()];
        let mut postgres_cpu = Duration::ZERO;
        for round in 0..rounds {
            for (i, server) in servers.iter().enumerate() {
                let tag = format!("{}-{}-{round}", encoding.name(), server.child.id());
                let before = server.cpu_time();
                let pg = postgres.as_ref().filter(|_| on_postgres == Some(i));
                let pg_before = pg.map(postgres_cpu_time);
                slices[i].push(run(&server.url, delivery.clone(), connections, slice, &tag).await);
                cpu[i] += server.cpu_time().saturating_sub(before);
                if let (Some(pg), Some(pg_before)) = (pg, pg_before) {
                    postgres_cpu += postgres_cpu_time(pg).saturating_sub(pg_before);
                }
            }
        }
        for (i, server) in servers.iter().enumerate() {
            let results = std::mem::take(&mut slices[i]);
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
            if on_postgres == Some(i) {
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
            rates.insert((server.name, encoding.name()), rate);
            p99s.insert((server.name, encoding.name()), p99);
            acknowledged
                .entry(server.name)
                .or_default()
                .extend(results.into_iter().flat_map(|r| r.acknowledged));
        }
    }
    println!("\npeak RSS:");
    for server in &servers {
        println!("  {:<34} {:>7.1} MiB", server.name, server.peak_rss_mib());
    }
    let on_pg = on_postgres.map(|_| servers.pop().expect("the PostgreSQL server"));
    let Ok([baseline, reference, bound, memory, durable, normal]) =
        <[Server; 6]>::try_from(servers)
    else {
        unreachable!("six servers besides PostgreSQL's")
    };
    let mut ok = true;
    println!(
        "\ntargets (durable ≥ 0.7 × baseline, p99 ≤ 20 ms), against the baseline of the same run:"
    );
    for encoding in encodings.iter().map(|e| e.name()) {
        let base = rates[&(baseline.name, encoding)];
        for server in [&reference, &bound, &memory, &durable, &normal]
            .into_iter()
            .chain(on_pg.as_ref())
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
        if let Some(pg) = &on_pg {
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

    // Merge → deployment created, on SQLite (sync=full), then on PostgreSQL; numbers apart,
    // so that the mock GitHub tells their deployments apart.
    let count = MERGES_PER_SECOND * seconds.as_secs();
    println!();
    for (server, first) in [(&durable, 100_000)]
        .into_iter()
        .chain(on_pg.as_ref().map(|pg| (pg, 200_000)))
    {
        let sent = merges(&server.url, first, count).await;
        ok &= sent.len() as u64 == count;
        let deadline = Instant::now() + Duration::from_secs(30);
        let arrived_of_these = |arrivals: &HashMap<u64, Instant>| {
            sent.keys().filter(|n| arrivals.contains_key(n)).count()
        };
        while arrived_of_these(&arrivals.lock().expect("a lock")) < sent.len()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let arrived = arrivals.lock().expect("a lock").clone();
        let mut latencies: Vec<Duration> = sent
            .iter()
            .filter_map(|(n, at)| arrived.get(n).map(|done| done.duration_since(*at)))
            .collect();
        latencies.sort();
        println!(
            "merged PR → deployment created at {MERGES_PER_SECOND}/s, {}: p50 {:.2} ms, \
             p99 {:.2} ms ({} of {} created)",
            server.name,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.len(),
            sent.len()
        );
        ok &= latencies.len() == sent.len();
        acknowledged
            .entry(server.name)
            .or_default()
            .extend(sent.keys().map(|n| format!("merge-{n}")));
    }

    // Every delivery a durable server acknowledged is in its database.
    drop((baseline, reference, bound, memory));
    for (server, path) in [(durable, &database), (normal, &database_normal)] {
        let name = server.name;
        server.stop();
        let acked = acknowledged.remove(name).unwrap_or_default();
        let missing = missing_from(path, &acked);
        println!(
            "acknowledged deliveries missing from the database of {name}: {missing} of {} ({})",
            acked.len(),
            verdict(missing == 0)
        );
        ok &= missing == 0;
    }
    if let (Some(server), Some(url)) = (on_pg, &postgres_url) {
        let name = server.name;
        server.stop();
        let acked = acknowledged.remove(name).unwrap_or_default();
        let missing = missing_from_postgres(url, &acked).await;
        println!(
            "acknowledged deliveries missing from the database of {name}: {missing} of {} ({})",
            acked.len(),
            verdict(missing == 0)
        );
        ok &= missing == 0;
    }
    drop(postgres);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How many of `acknowledged` the database at `path` does not hold.
fn missing_from(path: &str, acknowledged: &[String]) -> usize {
    let db = rusqlite::Connection::open(path).expect("a durable database");
    let mut statement = db
        .prepare("SELECT delivery_id FROM deliveries WHERE hook_id = 1")
        .expect("a query");
    let recorded: std::collections::HashSet<String> = statement
        .query_map([], |row| row.get(0))
        .expect("rows")
        .map_while(Result::ok)
        .collect();
    acknowledged
        .iter()
        .filter(|d| !recorded.contains(*d))
        .count()
}

/// How many of `acknowledged` the PostgreSQL database at `url` does not hold.
async fn missing_from_postgres(url: &str, acknowledged: &[String]) -> usize {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the PostgreSQL database");
    tokio::spawn(connection);
    let recorded: std::collections::HashSet<String> = client
        .query("SELECT delivery_id FROM deliveries WHERE hook_id = 1", &[])
        .await
        .expect("a query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    acknowledged
        .iter()
        .filter(|d| !recorded.contains(*d))
        .count()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

// --- The bench's PostgreSQL server ---------------------------------------------------

/// The bench's PostgreSQL server: a throwaway one whose commits reach the disk
/// (`Cluster::start_durable`: the tests' servers run with `fsync=off`, which would flatter
/// PostgreSQL against SQLite's `sync=full`). `None`, after a note, with `BENCH_POSTGRES=0`
/// or without the server binaries (the harness says so loudly).
fn durable_postgres() -> Option<Cluster> {
    if std::env::var("BENCH_POSTGRES").is_ok_and(|v| v == "0") {
        println!("PostgreSQL skipped (BENCH_POSTGRES=0)");
        return None;
    }
    let cluster = Cluster::start_durable()?;
    println!(
        "PostgreSQL: the bench's own server in {}, fsync, synchronous_commit and \
         full_page_writes on",
        cluster.base().display()
    );
    Some(cluster)
}

/// CPU time (user + system) the server's processes have used so far: the postmaster's
/// own and its reaped children's, and its live children's (the backends).
fn postgres_cpu_time(cluster: &Cluster) -> Duration {
    let postmaster = cluster
        .postmaster_pid()
        .map_or_else(String::new, |pid| pid.to_string());
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // After the name: state, ppid, … utime (14), stime, cutime, cstime (17).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == postmaster {
            ticks += field(14) + field(15) + field(16) + field(17);
        } else if fields.get(1) == Some(&postmaster.as_str()) {
            ticks += field(14) + field(15);
        }
    }
    Duration::from_millis(ticks * 10)
}
