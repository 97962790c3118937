//! Disk stays bounded: the database's write-ahead log under its limit through a flood of
//! deliveries and a deploy printing far more than it keeps, and truncated at shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{deploy_with_script, fixture, send_signed, spawn_app_with};

const LIMIT: u64 = 4 * 1024 * 1024;

/// Samples the size of `path` every 20 ms until `done`; the largest seen.
fn watch_size(path: PathBuf, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut largest = 0;
        while !done.load(Ordering::Relaxed) {
            largest = largest.max(std::fs::metadata(&path).map_or(0, |m| m.len()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        largest
    })
}

#[tokio::test]
async fn the_database_log_stays_under_its_limit_through_a_flood_and_is_truncated_at_shutdown() {
    // A small limit, so that the flood a test can make here writes many times it.
    const SMALL: u64 = 1024 * 1024;
    let mut app = spawn_app_with(|config, _| config.database_log_limit = SMALL).await;
    let wal = app.dir.path().join("deployhook.db-wal");
    let done = Arc::new(AtomicBool::new(false));
    let largest = watch_size(wal.clone(), done.clone());
    let sent = Arc::new(AtomicU64::new(0));
    // At least 4 s and 600 deliveries: on a loaded machine the flood goes on longer rather
    // than coming out too thin to test anything (at most 30 s).
    let started = Instant::now();
    let flooding = {
        let sent = sent.clone();
        move || {
            let elapsed = started.elapsed();
            elapsed < Duration::from_secs(30)
                && (elapsed < Duration::from_secs(4) || sent.load(Ordering::Relaxed) < 600)
        }
    };
    let mut senders = Vec::new();
    for sender in 0..16 {
        let (http, url, sent) = (app.http.clone(), app.url.clone(), sent.clone());
        let flooding = flooding.clone();
        senders.push(tokio::spawn(async move {
            let body = fixture("pull_request.opened.json");
            let mut n = 0;
            while flooding() {
                let id = format!("flood-{sender}-{n}");
                let response = send_signed(&http, &url, "pull_request", &body, &id, 1).await;
                assert!(response.unwrap().status().is_success());
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let largest = largest.await.unwrap();
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("{sent} deliveries; the log peaked at {largest} bytes (limit {SMALL})");
    assert!(
        sent > 500,
        "only {sent} deliveries: the flood was too thin to test"
    );
    assert!(
        largest <= SMALL,
        "the log reached {largest} bytes (limit {SMALL}) over {sent} deliveries"
    );
    app.stop().await;
    let left = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(left, 0, "the log is truncated at shutdown");
}

#[tokio::test]
async fn a_deploy_printing_far_more_than_it_keeps_leaves_the_database_log_bounded() {
    let app = spawn_app_with(|config, dir| {
        config.database_log_limit = LIMIT;
        // 40 MB of output, ten times the log limit and forty the kept deploy log.
        deploy_with_script(
            config,
            dir,
            "head -c 40000000 /dev/zero | tr '\\0' 'x' | fold -w 100",
        );
    })
    .await;
    let wal = app.dir.path().join("deployhook.db-wal");
    let done = Arc::new(AtomicBool::new(false));
    let largest = watch_size(wal, done.clone());
    app.post_webhook("deployment", &fixture("deployment.created.json"))
        .await;
    // 40 MB through a debug build takes about 7 s alone; beside the other tests on two
    // cores, longer than the usual wait. The log's bound is the point here, not the speed.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let statuses = loop {
        let statuses: Vec<_> = app
            .statuses()
            .await
            .into_iter()
            .filter(|s| s.deployment == 880_001)
            .collect();
        if statuses
            .iter()
            .any(|s| s.state != "queued" && s.state != "in_progress")
        {
            break statuses;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no final status after 90 s: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    done.store(true, Ordering::Relaxed);
    assert_eq!(statuses.last().unwrap().state, "success", "{statuses:?}");
    let largest = largest.await.unwrap();
    eprintln!("40 MB of deploy output; the log peaked at {largest} bytes (limit {LIMIT})");
    assert!(
        largest <= LIMIT,
        "the log reached {largest} bytes (limit {LIMIT})"
    );
    let database = std::fs::metadata(app.dir.path().join("deployhook.db"))
        .unwrap()
        .len();
    assert!(
        database < 16 * 1024 * 1024,
        "the database grew to {database} bytes for a 1 MiB deploy log"
    );
}
