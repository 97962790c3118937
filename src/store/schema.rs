//! The schema: one SQL script per version, run in order; `PRAGMA user_version` records
//! how many have run.

use anyhow::Context;
use rusqlite::Connection;

pub(super) mod merge_order;

/// The schema version this release migrates to. A new migration here needs its PostgreSQL
/// counterpart (`postgres/schema.sql` creates the schema as of this version; an existing
/// PostgreSQL database needs a script from the version before, run by `PgStore::migrate`).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_environments_and_logs.sql"),
    include_str!("migrations/0003_installations.sql"),
    include_str!("migrations/0004_deliveries_by_time.sql"),
    include_str!("migrations/0005_deliveries_in_arrival_order.sql"),
    include_str!("migrations/0006_flat_backlogs.sql"),
    include_str!("migrations/0007_checks_and_promotions.sql"),
    include_str!("migrations/0008_locks.sql"),
    include_str!("migrations/0009_given_up_calls_and_refused_deliveries.sql"),
    include_str!("migrations/0010_merges_by_commit.sql"),
    include_str!("migrations/0011_job_owners.sql"),
    include_str!("migrations/0012_check_results_by_source.sql"),
    include_str!("migrations/0013_merge_order.sql"),
    include_str!("migrations/0014_audit.sql"),
    include_str!("migrations/0015_personal_tokens.sql"),
    include_str!("migrations/0016_approvals.sql"),
    include_str!("migrations/0017_commands.sql"),
    include_str!("migrations/0018_previews.sql"),
    include_str!("migrations/0019_tag_deploys.sql"),
    include_str!("migrations/0020_windows.sql"),
    include_str!("migrations/0021_verification.sql"),
    include_str!("migrations/0022_changelogs.sql"),
];

/// The part of migration `version` written in Rust, run in its transaction after its SQL,
/// on either engine (`postgres::PgStore::migrate` calls it too).
pub(super) fn after_script(
    conn: &crate::store::db::Connection,
    version: usize,
    now: i64,
) -> rusqlite::Result<()> {
    match version {
        13 => merge_order::upgrade(conn, now),
        20 => crate::store::jobs::classify_waiting(conn),
        _ => Ok(()),
    }
}

pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let version = usize::try_from(version).context("negative schema version")?;
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "the database is at schema version {version}, newer than this deployhook knows \
         ({}): it was written by a newer release",
        MIGRATIONS.len()
    );
    for (index, script) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(script)
            .and_then(|()| {
                let conn = crate::store::db::Connection::Sqlite(&tx);
                after_script(&conn, index + 1, crate::store::now_ms())
            })
            .with_context(|| format!("migration {} failed", index + 1))?;
        tx.pragma_update(None, "user_version", i64::try_from(index + 1)?)?;
        tx.commit()?;
    }
    if version < MIGRATIONS.len() {
        // A migration that rebuilt a table left a log as large as the table: copy it back
        // and empty it now, rather than keep that file for the life of the database.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(())
}
