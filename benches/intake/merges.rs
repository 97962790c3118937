//! The intake benchmark's merge latency: merged pull requests at a steady rate, and a
//! mock GitHub in the benchmark's process that notes when each one's deployment is created.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::Server;
use crate::common::delivery::{Delivery, fixture};
use crate::common::load::steady;
use crate::common::percentile;
use crate::common::process::serve_here;

/// The steady rate of merges.
const MERGES_PER_SECOND: u64 = 20;

/// When each deployment was created, by pull request number.
pub type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

/// A mock GitHub that creates deployments (noting when) and lists none; its URL.
pub async fn mock_github() -> (String, Arrivals) {
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
    (serve_here(app).await, arrivals)
}

/// Sends merged pull requests at a steady rate; returns each acknowledged one's send time
/// by number.
async fn merges(url: &str, first: u64, count: u64) -> HashMap<u64, Instant> {
    let template: Value =
        serde_json::from_slice(&fixture("pull_request.closed.merged.json")).expect("JSON");
    // After a stall, the ticks missed are sent at once: the rate holds on average.
    let ticker = tokio::time::interval(Duration::from_millis(1000 / MERGES_PER_SECOND));
    let sent = steady(url, ticker, |i| {
        (i < count).then(|| {
            let number = first + i;
            let mut event = template.clone();
            event["number"] = json!(number);
            event["pull_request"]["number"] = json!(number);
            let delivery = Delivery::json("pull_request", &event);
            (format!("merge-{number}"), delivery)
        })
    })
    .await;
    (first..)
        .zip(sent)
        .filter(|(_, sent)| sent.latency.is_some())
        .map(|(number, sent)| (number, sent.at))
        .collect()
}

/// Merge → deployment created at a steady rate for `seconds`, on each of `servers` in turn
/// (numbers apart, so that the mock GitHub tells their deployments apart); prints the
/// latencies, adds the merges to `acknowledged`, and says whether every merge was
/// acknowledged and its deployment created.
pub async fn merge_latency(
    servers: &[&Server],
    arrivals: &Arrivals,
    seconds: Duration,
    acknowledged: &mut HashMap<&'static str, Vec<String>>,
) -> bool {
    let count = MERGES_PER_SECOND * seconds.as_secs();
    let mut ok = true;
    println!();
    for (server, first) in servers.iter().zip([100_000, 200_000]) {
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
    ok
}
