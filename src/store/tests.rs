//! Tests of the store: migration 5, the log of a database reached through a symlink, a
//! store whose sync failed or whose disk is full, and the cost of the writer's hot queries
//! as backlogs grow.

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::params;

use super::schema::migrate;
use super::writer::configure;

use crate::model::{DeployJob, DeploymentState, Policy};

use super::schema::MIGRATIONS;
use super::writer::wal_path;
use super::*;

/// Migration 5 rebuilds `deliveries`: every row survives, in arrival order, and the key
/// still makes a redelivery a no-op.
#[test]
fn deliveries_keep_their_rows_and_key_across_migration_5() {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    for script in &MIGRATIONS[..4] {
        conn.execute_batch(script).unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    // Keys in the opposite order to arrival, as random ids would often be.
    for (key, at) in [("c", 1), ("b", 2), ("a", 3)] {
        conn.execute(
            "INSERT INTO deliveries VALUES (1, ?1, 'ping', NULL, NULL, ?2, 'recorded', 'm')",
            params![key, at],
        )
        .unwrap();
    }
    migrate(&mut conn).unwrap();

    let newest_first = views::recent_deliveries(&Connection::Sqlite(&conn)).unwrap();
    let ids: Vec<&str> = newest_first
        .iter()
        .map(|d| d.delivery_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let again = conn
        .execute(
            "INSERT OR IGNORE INTO deliveries (hook_id, delivery_id, event, received_at, outcome, message)
             VALUES (1, 'b', 'ping', 4, 'recorded', 'm')",
            [],
        )
        .unwrap();
    assert_eq!(again, 0, "the (hook, delivery) key must still be unique");
}

/// SQLite keeps the log beside the file a symlink points to; the sync thread must find
/// (and sync) that one, not a `-wal` beside the link.
#[tokio::test]
async fn a_database_reached_through_a_symlink_syncs_its_real_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let real = dir.path().join("data/deployhook.db");
    let link = dir.path().join("deployhook.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // A log left beside the link (say the data moved and was linked back) is not it.
    let stale = dir.path().join("deployhook.db-wal");
    std::fs::write(&stale, b"").unwrap();

    let conn = rusqlite::Connection::open(&link).unwrap();
    configure(&conn, Sync::Full).unwrap();
    let real_dir = std::fs::canonicalize(dir.path().join("data")).unwrap();
    assert_eq!(
        Path::new(&wal_path(&conn).unwrap()),
        real_dir.join("deployhook.db-wal")
    );
    drop(conn);

    let store = Store::open(link.to_str().unwrap(), Sync::Full).unwrap();
    let written = store
        .write(|c| c.execute("INSERT INTO settings (name, value) VALUES ('k', 'v')", []))
        .await
        .unwrap();
    assert_eq!(written, 1);
    assert!(dir.path().join("data/deployhook.db-wal").exists());
}

/// After a failed sync the store refuses writes at once, with the sync's error.
#[tokio::test]
async fn a_store_whose_sync_failed_refuses_writes() {
    let store = Store::open(IN_MEMORY, Sync::Full).unwrap();
    assert!(store.write(|_| Ok(())).await.is_ok());
    let eio = std::io::Error::other("EIO");
    let Engine::Sqlite(sqlite) = &store.engine else {
        unreachable!("an in-memory store is SQLite")
    };
    sqlite
        .sync_failed
        .set(StoreError::SyncFailed(Arc::new(eio)))
        .unwrap();
    let refused = store.write(|_| Ok(())).await.unwrap_err();
    assert!(matches!(refused, StoreError::SyncFailed(_)), "{refused}");
    assert!(store.sync_failed().is_some());
}

#[tokio::test]
async fn a_full_database_is_reported_until_writes_go_through_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let store = Store::open(path.to_str().unwrap(), Sync::Normal).unwrap();
    store
        .write(|c| c.execute_batch("CREATE TABLE filler (blob BLOB)"))
        .await
        .unwrap();
    assert_eq!(store.write_trouble(), None);
    // Cap the file at its current size, as a full disk would.
    let pages: i64 = store
        .write(|c| c.query_row("PRAGMA page_count", [], |r| r.get(0)))
        .await
        .unwrap();
    store
        .write(move |c| c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())))
        .await
        .unwrap();
    let full = store
        .write(|c| c.execute("INSERT INTO filler VALUES (zeroblob(1000000))", []))
        .await
        .unwrap_err();
    assert!(full.is_storage_failure(), "{full}");
    let trouble = store.write_trouble().expect("the failure is reported");
    assert!(trouble.contains("full"), "{trouble}");
    store
        .write(|c| c.query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(())))
        .await
        .unwrap();
    store
        .write(|c| c.execute("INSERT INTO filler VALUES (zeroblob(1000))", []))
        .await
        .unwrap();
    assert_eq!(
        store.write_trouble(),
        None,
        "a write that succeeds clears it"
    );
}

/// SQLite virtual-machine steps that `work` takes: its cost, whatever the machine's speed.
pub(crate) fn steps(conn: &mut rusqlite::Connection, work: impl FnOnce(&Connection)) -> u64 {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    conn.progress_handler(
        10,
        Some(move || {
            counter.fetch_add(10, Ordering::Relaxed);
            false
        }),
    )
    .unwrap();
    work(&Connection::Sqlite(conn));
    conn.progress_handler(0, None::<fn() -> bool>).unwrap();
    count.load(Ordering::Relaxed)
}

/// A private in-memory database at the current schema; the store's other tests use it too.
pub(crate) fn database() -> Connection<'static> {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    // Leaked: a test's database lives as long as the test process (a few kilobytes).
    Connection::Sqlite(Box::leak(Box::new(conn)))
}

/// Runs `test` on a fresh SQLite database, then on a fresh PostgreSQL database in one
/// transaction (skipped, loudly, without PostgreSQL's server — see the `deployhook-testkit` crate).
/// A failure names the engine it happened on: "on SQLite: …" or "on PostgreSQL: …".
pub(crate) fn each_engine(test: impl Fn(&Connection) + Send + std::marker::Sync + 'static) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| test(&database()))) {
        rethrow("SQLite", panic);
    }
    let Some(cluster) = deployhook_testkit::postgres::shared() else {
        return;
    };
    let url = cluster.database();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let store = postgres::PgStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("on PostgreSQL: could not connect to {url}: {e:#}"));
        // The panic is caught on the blocking thread and thrown again here: `run` would
        // only say the work was not run.
        store
            .run(false, move |c| {
                Ok(catch_unwind(AssertUnwindSafe(|| test(c))))
            })
            .await
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => rethrow("PostgreSQL", panic),
        Err(e) => panic!("on PostgreSQL: the test's transaction failed: {e}"),
    }
}

/// Fails the test with `panic`'s message, saying which engine it happened on.
fn rethrow(engine: &str, panic: Box<dyn std::any::Any + Send>) -> ! {
    let message = panic
        .downcast_ref::<&str>()
        .map(|m| (*m).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned());
    match message {
        Some(message) => panic!("on {engine}: {message}"),
        None => {
            let _ = writeln!(std::io::stderr(), "on {engine}: the test panicked");
            resume_unwind(panic)
        }
    }
}

/// `each_engine` runs the test on each engine, and a failure says which one it was on.
#[test]
fn each_engine_runs_the_test_on_both_engines_and_names_the_one_that_failed() {
    static RAN: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    let postgres = deployhook_testkit::postgres::shared().is_some();
    let failed = catch_unwind(|| {
        each_engine(|conn| {
            let dialect = conn.dialect();
            RAN[usize::from(dialect == db::Dialect::Postgres)].fetch_add(1, Ordering::Relaxed);
            let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
            assert_eq!(one, 1);
            assert_ne!(dialect, db::Dialect::Postgres, "a difference");
        });
    });
    let ran = RAN.each_ref().map(|n| n.load(Ordering::Relaxed));
    if !postgres {
        assert!(failed.is_ok());
        assert_eq!(ran, [1, 0]);
        return;
    }
    assert_eq!(ran, [1, 1]);
    let panic = failed.expect_err("the PostgreSQL half failed");
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(message.starts_with("on PostgreSQL: "), "{message}");
    assert!(message.contains("a difference"), "{message}");
}

/// A job of acme/widgets to production; the store's other tests use it too.
pub(crate) fn job(id: u64, installation: Option<u64>) -> DeployJob {
    DeployJob {
        id: id.into(),
        repo: "acme/widgets".parse().unwrap(),
        environment: "production".parse().unwrap(),
        sha: "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b".parse().unwrap(),
        git_ref: "main".into(),
        task: "deploy".into(),
        deploy_user: "octo-dev".into(),
        payload: "{}".into(),
        environment_url: None,
        log_url: None,
        installation,
    }
}

/// A database with `backlog` deployments queued for one environment, each with its
/// `queued` status waiting in the outbox (GitHub unreachable), all retried a while ago.
fn backlogged(backlog: u64) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    let tx = conn.transaction().unwrap();
    for id in 1..=backlog {
        jobs::enqueue(&Connection::Sqlite(&tx), &job(id, None), "d", 0).unwrap();
    }
    tx.commit().unwrap();
    conn
}

/// One round of the outbox worker: take what is due, record one success, ask when next.
fn outbox_round(conn: &Connection) {
    let taken = outbox::take_due(conn, 1_000, 8).unwrap();
    assert_eq!(taken.len(), 1, "one call in flight for the token");
    outbox::complete(conn, taken[0].id).unwrap();
    outbox::next_due(conn, 1_000).unwrap();
}

/// One claim of the deploy worker, then another while that deploy runs.
fn claim_round(conn: &Connection) {
    let claimed = jobs::claim(conn, "test", 4, |_| Policy::Queue, 1_000).unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        jobs::claim(conn, "test", 4, |_| Policy::Queue, 1_000)
            .unwrap()
            .is_empty()
    );
    jobs::finish(conn, &claimed[0].job, DeploymentState::Success, "ok", 2_000).unwrap();
}

#[test]
fn the_writers_hot_queries_cost_the_same_with_a_hundred_or_ten_thousand_waiting() {
    let (mut small, mut large) = (backlogged(100), backlogged(10_000));
    let outbox = (
        steps(&mut small, outbox_round),
        steps(&mut large, outbox_round),
    );
    let claims = (
        steps(&mut small, claim_round),
        steps(&mut large, claim_round),
    );
    for (what, (at_100, at_10k)) in [("the outbox round", outbox), ("the claim", claims)] {
        eprintln!("{what}: {at_100} SQLite steps with 100 waiting, {at_10k} with 10,000");
        assert!(
            at_10k * 2 < at_100 * 3,
            "{what}: {at_100} steps with 100 waiting, {at_10k} with 10,000"
        );
    }
}

/// An upgrade in the middle of an outage: calls already waiting when migration 6 runs get
/// their heads, so each key goes on in order and none is stuck headless.
#[test]
fn calls_waiting_across_migration_6_are_sent_in_order() {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    for script in &MIGRATIONS[..5] {
        conn.execute_batch(script).unwrap();
    }
    conn.pragma_update(None, "user_version", 5).unwrap();
    for (key, state) in [
        ("k1", "pending"),
        ("k1", "pending"),
        ("k2", "failed"),
        ("k2", "pending"),
    ] {
        conn.execute(
            "INSERT INTO outbox (ordering_key, kind, repository, deployment_id, body, created_at,
                                 next_attempt_at, state)
             VALUES (?1, 'deployment_status', 'acme/widgets', 1,
                     '{\"state\":\"queued\",\"description\":\"q\"}', 0, 0, ?2)",
            params![key, state],
        )
        .unwrap();
    }
    schema::migrate(&mut conn).unwrap();
    let conn = Connection::Sqlite(&conn);
    let mut sent = Vec::new();
    for _ in 0..4 {
        let taken = outbox::take_due(&conn, 1_000, 8).unwrap();
        for item in &taken {
            sent.push(item.id);
            outbox::complete(&conn, item.id).unwrap();
        }
    }
    assert_eq!(
        sent,
        [1, 2, 4],
        "k1's two in order, k2's pending one; the failed one stays"
    );
}

/// In a locked environment only forced jobs start; under `latest` the newest forced one
/// supersedes the older forced ones, and the unforced wait, untouched, for the unlock.
#[test]
fn a_lock_holds_unforced_jobs_and_latest_runs_only_the_newest_forced_one() {
    each_engine(|conn| {
        let forced = |id| DeployJob {
            payload: r#"{"force":true}"#.into(),
            ..job(id, None)
        };
        for queued in [forced(1), forced(2), job(3, None)] {
            jobs::enqueue(conn, &queued, "d", 0).unwrap();
        }
        locks::lock(
            conn,
            &locks::Lock {
                environment: "production".into(),
                reason: "incident".into(),
                locked_by: "maria".into(),
                locked_at: 0,
                until: Some(10_000),
            },
        )
        .unwrap();
        let state = |id: i64| -> (String, Option<String>) {
            conn.query_row(
                "SELECT state, result FROM jobs WHERE deployment_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
        };
        let started = jobs::claim(conn, "test", 4, |_| Policy::Latest, 1).unwrap();
        let ids: Vec<u64> = started.iter().map(|c| c.job.id.get()).collect();
        assert_eq!(ids, [2]);
        assert_eq!(state(1), ("finished".into(), Some("inactive".into())));
        assert_eq!(state(3), ("queued".into(), None));
        jobs::finish(conn, &forced(2), DeploymentState::Success, "ok", 2).unwrap();
        // Still locked: nothing more starts. Expired: the unforced one runs.
        assert!(
            jobs::claim(conn, "test", 4, |_| Policy::Latest, 3)
                .unwrap()
                .is_empty()
        );
        let after = jobs::claim(conn, "test", 4, |_| Policy::Latest, 10_001).unwrap();
        assert_eq!(after[0].job.id.get(), 3);
    });
}

/// The repositories a person's permissions are asked about: by name, each once, those of
/// one environment when asked, at most the limit — whatever state their jobs are in.
#[test]
fn known_repositories_step_from_one_repository_to_the_next() {
    each_engine(|conn| {
        let mut id = 0;
        for (repo, environment) in [
            ("acme/zeta", "production"),
            ("acme/alpha", "staging"),
            ("acme/alpha", "staging"),
            ("acme/mid", "production"),
            ("acme/mid", "staging"),
        ] {
            id += 1;
            let job = DeployJob {
                repo: repo.parse().unwrap(),
                environment: environment.parse().unwrap(),
                ..job(id, None)
            };
            crate::store::jobs::enqueue(conn, &job, "d", 0).unwrap();
        }
        let known = |environment, limit| {
            crate::store::views::known_repositories(conn, environment, limit).unwrap()
        };
        assert_eq!(known(None, 10), ["acme/alpha", "acme/mid", "acme/zeta"]);
        assert_eq!(known(Some("production"), 10), ["acme/mid", "acme/zeta"]);
        assert_eq!(known(Some("staging"), 10), ["acme/alpha", "acme/mid"]);
        assert_eq!(known(Some("nowhere"), 10), Vec::<String>::new());
        assert_eq!(known(None, 2), ["acme/alpha", "acme/mid"]);
    });
}
