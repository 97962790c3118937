//! The `merges` table: which merged pull requests already asked for their deployment to
//! each environment, so a second delivery of a merge (another hook, a redelivery) asks for
//! nothing more — and forgetting one, when its deployment will not come (its creation was
//! given up, its checks failed), so that GitHub's Redeliver asks again. Beside it, the
//! [`marks`]: the newest merge each environment accepted and started, which no older merge
//! deploys over.

use crate::store::db::{Connection, params};

use crate::model::{Merge, NewDeployment};
use crate::store::int_key;

pub mod marks;

/// Records that a merged pull request asked for its deployment; `false` if it already had.
/// A merge recorded before environments were (environment `''`) counts for all of them.
/// `delivery` (its id) is kept so that the delivery's page finds the deployments it led to.
pub fn record_merge(
    conn: &Connection,
    new: &NewDeployment,
    delivery: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let recorded_before_environments: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM merges
                            WHERE repository = ?1 AND pull_request = ?2 AND environment = '')",
        )?
        .query_row(
            params![new.repo.as_ref(), int_key(new.pull_request)?],
            |row| row.get(0),
        )?;
    if recorded_before_environments {
        return Ok(false);
    }
    // Its merge time lets retention keep the record of the newest merge (see
    // `retention`): a new delivery of it stays "already asked", however old.
    let merged_at = Merge::of_automatic(&new.request.payload).map(|m| m.merged_at.millis());
    let inserted = conn
        .prepare_cached(
            "INSERT INTO merges
                 (repository, pull_request, environment, sha, recorded_at, delivery_id, merged_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (repository, pull_request, environment) DO NOTHING",
        )?
        .execute(params![
            new.repo.as_ref(),
            int_key(new.pull_request)?,
            new.request.environment.as_ref(),
            new.request.git_ref.as_ref(),
            now,
            delivery,
            merged_at
        ])?;
    Ok(inserted == 1)
}

/// Forgets that a merged pull request asked for its deployment (its creation was given
/// up), so a redelivery of the merge asks again.
pub fn forget_merge(
    conn: &Connection,
    repository: &str,
    pull_request: u64,
    environment: &crate::model::Environment,
) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM merges
         WHERE repository = ?1 AND pull_request = ?2 AND environment IN (?3, '')",
        params![repository, int_key(pull_request)?, environment.as_ref()],
    )?;
    Ok(())
}

/// Records again that a merge asked for its deployment (its wait for checks opened again
/// after a re-run), so a new delivery of it changes nothing.
pub fn remember(
    conn: &Connection,
    repository: &str,
    pull_request: i64,
    environment: &str,
    sha: &str,
    now: i64,
) -> rusqlite::Result<()> {
    if pull_request == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO merges (repository, pull_request, environment, sha, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (repository, pull_request, environment) DO NOTHING",
    )?
    .execute(params![repository, pull_request, environment, sha, now])?;
    Ok(())
}

/// A merge's deployment to `environment` was not created: no file it changed matches the
/// environment's `paths`. The delivery that recorded the merge says so in its message (the
/// deliveries page shows it); the merge stays recorded, so a redelivery asks for nothing,
/// and the environment's merge marks stay where they are: this merge was accepted in
/// order, and a later merge is compared with the last deploy that succeeded, so whatever
/// this one changed is still seen then.
pub fn note_skipped(
    conn: &Connection,
    repository: &str,
    pull_request: u64,
    environment: &str,
    why: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET message = message || '; ' || ?4
         WHERE delivery_id = (SELECT delivery_id FROM merges
                              WHERE repository = ?1 AND pull_request = ?2 AND environment = ?3)",
    )?
    .execute(params![
        repository,
        int_key(pull_request)?,
        environment,
        why
    ])?;
    Ok(())
}
