//! The `changelogs` and `changelog_commits` tables: what is in each deploy. When a job is
//! claimed ([`on_claim`], in the claim's transaction) it records the environment's previous
//! successful deploy of its repository; a first deploy, or the same commit deployed again,
//! is a changelog at once, and any other has the claim queue a `changelog` call in the
//! outbox: the outbox worker reads the compare API and records its answer ([`record`]). The deploy
//! never waits for it; until it is recorded, a deployment has no changelog row (`None`).
//! Rows go with their job (`retention`).

use crate::model::changelog::{Change, ChangelogState, STORED_COMMITS};
use crate::model::{Changelog, DeployJob};
use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::int_key;

/// The previous success a deploy compares with: its deployment id and commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub deployment_id: u64,
    pub sha: String,
}

/// The newest successful deploy of `repository` to `environment` other than `except`, as
/// [`crate::store::jobs::last_success`] finds it, with its deployment id.
pub fn previous_success(
    conn: &Connection,
    repository: &str,
    environment: &str,
    except: u64,
) -> rusqlite::Result<Option<Previous>> {
    conn.prepare_cached(
        "SELECT deployment_id, sha FROM jobs
         WHERE repository = ?1 AND environment = ?2 AND state = 'finished'
           AND task = 'deploy' AND result = 'success' AND deployment_id != ?3
         ORDER BY finished_at DESC, deployment_id DESC LIMIT 1",
    )?
    .query_row(params![repository, environment, int_key(except)?], |row| {
        Ok(Previous {
            deployment_id: row.get::<_, i64>(0)?.unsigned_abs(),
            sha: row.get(1)?,
        })
    })
    .optional()
}

/// What a claimed job follows: the previous success's commit, and the commit its
/// changelog must be read from, when it must be read (see [`on_claim`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Follows {
    pub previous_sha: Option<String>,
    pub read_from: Option<String>,
}

/// `job` starts: records its previous success, and its changelog when it needs no call
/// (a first deploy, the same commit again); says from which commit to read it otherwise,
/// for the claim to queue that call. Claimed again (restarted and retried) with its
/// changelog recorded, it asks for nothing new.
pub fn on_claim(conn: &Connection, job: &DeployJob, now: i64) -> rusqlite::Result<Follows> {
    // Only the `deploy` task changes what runs: another task (a migration) lists nothing.
    if job.task != crate::model::DEPLOY_TASK {
        return Ok(Follows::default());
    }
    let id = job.id.get();
    let previous = match rolled_back_from(conn, job)? {
        Some(from) => Some(from),
        None => previous_success(conn, job.repo.as_ref(), job.environment.as_ref(), id)?,
    };
    conn.prepare_cached(
        "UPDATE jobs SET previous_sha = ?2, previous_deployment_id = ?3 WHERE deployment_id = ?1",
    )?
    .execute(params![
        int_key(id)?,
        previous.as_ref().map(|p| p.sha.as_str()),
        previous
            .as_ref()
            .map(|p| int_key(p.deployment_id))
            .transpose()?,
    ])?;
    let known: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM changelogs WHERE deployment_id = ?1)")?
        .query_row([int_key(id)?], |row| row.get(0))?;
    let read_from = match &previous {
        _ if known => None,
        None => {
            record(conn, id, &Changelog::first_deploy(), now)?;
            None
        }
        Some(p) if p.sha == job.sha.as_ref() => {
            record(conn, id, &Changelog::same_commit(p.sha.clone()), now)?;
            None
        }
        Some(p) => Some(p.sha.clone()),
    };
    Ok(Follows {
        previous_sha: previous.map(|p| p.sha),
        read_from,
    })
}

/// For a rollback, what it follows is the commit it rolls back from — what runs now, often
/// a deploy that failed (or whose verification failed) — not the last success, which is
/// usually the very commit it goes back to: its changelog lists the commits it removes.
/// The deployment is the newest earlier one of that commit there, if it is still kept.
fn rolled_back_from(conn: &Connection, job: &DeployJob) -> rusqlite::Result<Option<Previous>> {
    let payload = serde_json::from_str(&job.payload).unwrap_or_default();
    let Some(sha) = crate::model::rollback::rolled_back(&payload) else {
        return Ok(None);
    };
    let deployment: Option<i64> = conn
        .prepare_cached(
            "SELECT deployment_id FROM jobs
             WHERE repository = ?1 AND environment = ?2 AND sha = ?3 AND deployment_id < ?4
             ORDER BY deployment_id DESC LIMIT 1",
        )?
        .query_row(
            params![
                job.repo.as_ref(),
                job.environment.as_ref(),
                sha,
                int_key(job.id.get())?
            ],
            |row| row.get(0),
        )
        .optional()?;
    Ok(deployment.map(|d| Previous {
        deployment_id: d.unsigned_abs(),
        sha,
    }))
}

/// Records the changelog of deployment `id`, unless one is recorded (a call sent twice).
pub fn record(conn: &Connection, id: u64, log: &Changelog, now: i64) -> rusqlite::Result<()> {
    let key = int_key(id)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO changelogs (deployment_id, base_sha, state, backwards, total, detail,
                                     recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (deployment_id) DO NOTHING",
        )?
        .execute(params![
            key,
            log.base,
            log.state.as_str(),
            i64::from(log.backwards),
            i64::try_from(log.total).unwrap_or(i64::MAX),
            log.detail,
            now
        ])?;
    if inserted == 0 {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO changelog_commits (deployment_id, position, sha, title, author, pull_request)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (position, change) in log.commits.iter().take(STORED_COMMITS).enumerate() {
        insert.execute(params![
            key,
            i64::try_from(position).unwrap_or(i64::MAX),
            change.sha,
            change.title,
            change.author,
            change.pull_request.map(int_key).transpose()?,
        ])?;
    }
    Ok(())
}

/// The changelog of deployment `id`; `None` while it is not read yet (or for a task that
/// deploys nothing, or a deployment that never started).
pub fn read(conn: &Connection, id: u64) -> rusqlite::Result<Option<Changelog>> {
    let key = int_key(id)?;
    let head = conn
        .prepare_cached(
            "SELECT base_sha, state, backwards, total, detail FROM changelogs
             WHERE deployment_id = ?1",
        )?
        .query_row([key], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)? != 0,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })
        .optional()?;
    let Some((base, state, backwards, total, detail)) = head else {
        return Ok(None);
    };
    let commits = conn
        .prepare_cached(
            "SELECT sha, title, author, pull_request FROM changelog_commits
             WHERE deployment_id = ?1 ORDER BY position",
        )?
        .query_map([key], |row| {
            Ok(Change {
                sha: row.get(0)?,
                title: row.get(1)?,
                author: row.get(2)?,
                pull_request: row.get::<_, Option<i64>>(3)?.map(i64::unsigned_abs),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(Changelog {
        state: ChangelogState::parse(&state).unwrap_or(ChangelogState::Failed),
        base,
        backwards,
        total: total.unsigned_abs(),
        commits,
        detail,
    }))
}

/// The previous success deployment `id` recorded when it was claimed, if any.
pub fn previous_of(conn: &Connection, id: u64) -> rusqlite::Result<Option<Previous>> {
    let found: Option<(Option<i64>, Option<String>)> = conn
        .prepare_cached(
            "SELECT previous_deployment_id, previous_sha FROM jobs WHERE deployment_id = ?1",
        )?
        .query_row([int_key(id)?], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match found {
        Some((Some(deployment_id), Some(sha))) => Some(Previous {
            deployment_id: deployment_id.unsigned_abs(),
            sha,
        }),
        _ => None,
    })
}

/// Deletes the changelog of deployment `id` (its job goes); how many rows.
pub fn delete(conn: &Connection, id: i64) -> rusqlite::Result<usize> {
    let commits = conn
        .prepare_cached("DELETE FROM changelog_commits WHERE deployment_id = ?1")?
        .execute([id])?;
    let head = conn
        .prepare_cached("DELETE FROM changelogs WHERE deployment_id = ?1")?
        .execute([id])?;
    Ok(commits + head)
}

#[cfg(test)]
mod tests;
