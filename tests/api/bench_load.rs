//! The benchmarks' load generator (`benches/common/`) against the real server: what it
//! sends is accepted in both encodings and recorded under the ids it reports, a refusal is
//! counted as unanswered rather than timed, the open loop keeps its pace, and the figures
//! it computes (percentiles, CPU time from `/proc`) read what they should. A generator that
//! got these wrong would have the benchmarks measure 401s or misreport.

#[path = "../../benches/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::delivery::{Delivery, Encoding, fixture};
use common::load::{closed_loop, pace, steady};
use common::process::Stat;
use common::{SECRET as BENCH_SECRET, percentile};
use deployhook::webhook::signature::WebhookSecrets;
use serde_json::json;

use crate::helpers::{TestApp, open_database, spawn_app, spawn_app_with};

/// The server, taking deliveries signed with the benchmarks' secret.
async fn spawn_bench_app() -> TestApp {
    spawn_app_with(|config, _| {
        config.webhook_secrets = WebhookSecrets::from_list(BENCH_SECRET);
    })
    .await
}

/// Over two connections, one sending JSON and the other the form encoding, three each.
async fn six_unmerged(app: &TestApp) -> Vec<common::load::Answer> {
    let json = fixture("pull_request.closed.unmerged.json");
    let by_connection = [
        Delivery::encoded("pull_request", &json, Encoding::Json),
        Delivery::encoded("pull_request", &json, Encoding::Form),
    ];
    let url = format!("{}/event_handler", app.url);
    closed_loop(&url, 2, move |connection, n| {
        (n < 3).then(|| {
            (
                format!("load-{connection}-{n}"),
                by_connection[connection].clone(),
            )
        })
    })
    .await
}

#[tokio::test]
async fn the_closed_loop_is_answered_in_both_encodings_and_its_ids_are_recorded() {
    let app = spawn_bench_app().await;

    let answers = six_unmerged(&app).await;

    let sent: HashSet<String> = answers.iter().map(|a| a.id.clone()).collect();
    let expected: HashSet<String> = (0..2)
        .flat_map(|c| (0..3).map(move |n| format!("load-{c}-{n}")))
        .collect();
    assert_eq!(sent, expected);
    assert!(
        answers.iter().all(|a| a.latency.is_some()),
        "every delivery answered 2xx"
    );
    let db = open_database(&app.dir.path().join("deployhook.db"));
    let recorded: HashSet<String> = db
        .prepare("SELECT delivery_id FROM deliveries WHERE hook_id = 1")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recorded, expected,
        "each acknowledged id is in the database"
    );
}

#[tokio::test]
async fn a_refused_delivery_is_counted_unanswered_not_timed() {
    // The test server's secret is not the benchmarks': every signature is refused.
    let app = spawn_app().await;

    let answers = six_unmerged(&app).await;

    assert_eq!(answers.len(), 6);
    assert!(answers.iter().all(|a| a.latency.is_none()));
}

#[tokio::test]
async fn the_open_loop_sends_at_its_pace_in_order() {
    let app = spawn_bench_app().await;
    let ping = Delivery::json("ping", &json!({"zen": "Keep it simple.", "hook_id": 1}));
    let url = format!("{}/event_handler", app.url);

    let sent = steady(&url, pace(20), |n| {
        (n < 4).then(|| (format!("ping-{n}"), ping.clone()))
    })
    .await;

    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|s| s.latency.is_some()));
    assert!(sent.windows(2).all(|w| w[0].at <= w[1].at), "in order");
    // Three periods of 50 ms at least from the first to the last: not a burst.
    let span = sent[3].at - sent[0].at;
    assert!(span >= Duration::from_millis(100), "{span:?}");
}

#[test]
fn percentiles_are_read_at_the_nearest_rank_in_milliseconds() {
    let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();

    assert_eq!(percentile(&sorted, 0.50), 51.0);
    assert_eq!(percentile(&sorted, 0.99), 99.0);
    assert_eq!(percentile(&sorted, 1.0), 100.0);
    assert!(percentile(&[], 0.5).is_nan());
}

#[test]
fn proc_stat_fields_are_read_after_a_command_name_with_spaces_and_parentheses() {
    let dir = tempfile::tempdir().unwrap();
    // pid (comm) state ppid … utime (14) stime (15) cutime (16) cstime (17).
    let stat = "4242 (a (b) c) S 17 1 1 0 -1 0 0 0 0 0 250 50 7 3 20 0 1 0";
    std::fs::write(dir.path().join("stat"), stat).unwrap();

    let read = Stat::read(dir.path());

    assert_eq!(read.parent(), Some("17"));
    assert_eq!(read.cpu(), Duration::from_millis(3000));
    assert_eq!(read.children_cpu(), Duration::from_millis(100));
    let missing = Stat::read(&dir.path().join("gone"));
    assert_eq!(missing.cpu(), Duration::ZERO);
}
