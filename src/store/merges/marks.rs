//! The `merge_marks` table: per repository and environment, two high-water marks of the
//! merges automatic deploys (a merge, a promotion of one) carry — `accepted`, the newest
//! merge whose deployment's creation was queued, and `started`, the newest an automatic
//! deploy started. An automatic deploy of an older merge is refused against them: at its
//! delivery (a late or re-posted merge, a late success to promote) against `accepted`, and
//! at the queue (a `deployment` event delivered late) against `started`. So production never
//! rolls back by accident, in every policy, gated or not.
//!
//! On PostgreSQL a check and the acceptance after it hold the outbox's heads lock (see
//! `outbox::lock_heads`) to the commit: two merges delivered at once through two replicas
//! are accepted, and their deployments created, one after the other, in merge order.
//!
//! Marks only move forward, and retention never prunes them: they hold when the older
//! merge's delivery and record are long gone. Deliberate deploys (a rollback, `deployhook
//! deploy --force`, a deployment made by hand) carry no merge: they are neither refused
//! nor move a mark, so the next real merge, newer than the mark, deploys after them. Merges
//! with the same time (GitHub's are to the second) may deploy in either order.

use crate::store::db::{Connection, OptionalExtension, params};

use crate::model::{DeployJob, Merge, MergedAt, NewDeployment};
use crate::store::{int_key, outbox};

/// The newest merge of a repository and environment at one stage, with its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub merge: Merge,
    pub sha: String,
}

/// Which mark: the newest merge whose deployment's creation was queued.
pub const ACCEPTED: &str = "accepted";
/// Which mark: the newest merge an automatic deploy started.
pub const STARTED: &str = "started";

/// The mark of `repository` in `environment` at `stage`, if any merge reached it.
pub fn mark(
    conn: &Connection,
    repository: &str,
    environment: &str,
    stage: &str,
) -> rusqlite::Result<Option<Mark>> {
    conn.prepare_cached(
        "SELECT merged_at, pull_request, sha FROM merge_marks
         WHERE repository = ?1 AND environment = ?2 AND stage = ?3",
    )?
    .query_row(params![repository, environment, stage], |row| {
        Ok(Mark {
            merge: Merge {
                merged_at: MergedAt::from_millis(row.get(0)?),
                pull_request: row.get::<_, i64>(1)?.unsigned_abs(),
            },
            sha: row.get(2)?,
        })
    })
    .optional()
}

/// Moves the mark at `stage` to `merge`, unless it already is at a newer one. A merge of
/// the same time takes the mark's name: the one accepted last.
pub fn raise(
    conn: &Connection,
    (repository, environment, stage): (&str, &str, &str),
    merge: Merge,
    sha: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO merge_marks (repository, environment, stage, merged_at, pull_request, sha,
                                  updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (repository, environment, stage) DO UPDATE SET
             merged_at = excluded.merged_at, pull_request = excluded.pull_request,
             sha = excluded.sha, updated_at = excluded.updated_at
         WHERE excluded.merged_at >= merge_marks.merged_at",
    )?
    .execute(params![
        repository,
        environment,
        stage,
        merge.merged_at.millis(),
        int_key(merge.pull_request)?,
        sha,
        now
    ])?;
    Ok(())
}

/// Why `new` (a merge, or a promotion of one) must not be deployed, if it must not: its
/// merge is older than the newest its environment already runs or has queued.
pub fn refuses(conn: &Connection, new: &NewDeployment) -> rusqlite::Result<Option<String>> {
    let Some(merge) = Merge::of_automatic(&new.request.payload) else {
        return Ok(None);
    };
    outbox::lock_heads(conn)?;
    let environment = new.request.environment.as_ref();
    let newer = mark(conn, new.repo.as_ref(), environment, ACCEPTED)?
        .filter(|mark| mark.merge.merged_at > merge.merged_at);
    Ok(newer.map(|mark| {
        format!(
            "{}, which {environment} already runs or has queued; not deployed",
            merge.older_than(mark.merge)
        )
    }))
}

/// Accepts `new` for deployment: raises its environment's `accepted` mark to its merge and
/// queues its creation, in the order merges are accepted (see
/// [`outbox::enqueue_create_deployment`]). The caller checked [`refuses`] first.
pub fn accept(conn: &Connection, new: &NewDeployment, now: i64) -> rusqlite::Result<()> {
    if let Some(merge) = Merge::of_automatic(&new.request.payload) {
        let target = (
            new.repo.as_ref(),
            new.request.environment.as_ref(),
            ACCEPTED,
        );
        raise(conn, target, merge, new.request.git_ref.as_ref(), now)?;
    }
    outbox::enqueue_create_deployment(conn, new, now)
}

/// The commit of the merge accepted for wait `id`'s environment, if it is newer than the
/// merge the wait would deploy: the wait must not pass (its record may be pruned, or it
/// never waited: an ungated merge, in any policy).
pub fn newer_than_wait(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    let wait: Option<(String, String, String)> = conn
        .prepare_cached("SELECT repository, environment, request FROM waits WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((repository, environment, request)) = wait else {
        return Ok(None);
    };
    let payload = serde_json::from_str::<serde_json::Value>(&request)
        .ok()
        .and_then(|request| Merge::of_automatic(&request["payload"]));
    let Some(merge) = payload else {
        return Ok(None);
    };
    outbox::lock_heads(conn)?;
    Ok(mark(conn, &repository, &environment, ACCEPTED)?
        .filter(|mark| mark.merge.merged_at > merge.merged_at)
        .map(|mark| mark.sha))
}

/// Why `job` must not start, if it must not: it deploys a merge older than the newest an
/// automatic deploy already started in its environment.
pub fn refuses_start(conn: &Connection, job: &DeployJob) -> rusqlite::Result<Option<String>> {
    let Some(merge) = Merge::of_automatic_text(&job.payload) else {
        return Ok(None);
    };
    let environment = job.environment.as_ref();
    let newer = mark(conn, job.repo.as_ref(), environment, STARTED)?
        .filter(|mark| mark.merge.merged_at > merge.merged_at);
    Ok(newer.map(|mark| {
        format!(
            "{}, which {environment} already runs; not deployed",
            merge.older_than(mark.merge)
        )
    }))
}

/// `job` starts: raises its environment's `started` mark to its merge, if it carries one —
/// and `accepted` with it: what runs was accepted, even when its deployment was not made
/// through deployhook's merges (one made by hand with a merge's payload).
pub fn started(conn: &Connection, job: &DeployJob, now: i64) -> rusqlite::Result<()> {
    let Some(merge) = Merge::of_automatic_text(&job.payload) else {
        return Ok(());
    };
    for stage in [STARTED, ACCEPTED] {
        let target = (job.repo.as_ref(), job.environment.as_ref(), stage);
        raise(conn, target, merge, job.sha.as_ref(), now)?;
    }
    Ok(())
}

#[cfg(test)]
mod order_properties;
#[cfg(test)]
mod tests;
