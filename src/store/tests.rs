//! Tests of the store: migration 5, the log of a database reached through a symlink, and a
//! store whose sync failed.
use rusqlite::params;

use super::schema::MIGRATIONS;
use super::writer::wal_path;
use super::*;

/// Migration 5 rebuilds `deliveries`: every row survives, in arrival order, and the key
/// still makes a redelivery a no-op.
#[test]
fn deliveries_keep_their_rows_and_key_across_migration_5() {
    let mut conn = Connection::open_in_memory().unwrap();
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

    let newest_first = views::recent_deliveries(&conn).unwrap();
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

    let conn = Connection::open(&link).unwrap();
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
    store
        .sync_failed
        .set(StoreError::SyncFailed(Arc::new(eio)))
        .unwrap();
    let refused = store.write(|_| Ok(())).await.unwrap_err();
    assert!(matches!(refused, StoreError::SyncFailed(_)), "{refused}");
    assert!(store.sync_failed().is_some());
}
