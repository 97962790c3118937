//! What is read of the previews rather than changed: the list the dashboard and
//! `GET /api/previews` show, and the open pull requests the periodic check asks GitHub
//! about (with the mark that it asked).

use crate::model::preview::state::{LIVE, WAITING};
use crate::store::db::{Connection, params};
use crate::store::int_key;

/// A preview as the dashboard and `GET /api/previews` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreviewRow {
    pub repository: String,
    pub pull_request: u64,
    pub environment: String,
    pub config: String,
    pub head_sha: String,
    pub state: String,
    pub opened_at: i64,
    pub updated_at: i64,
    pub last_deployment: Option<u64>,
    pub environment_url: Option<String>,
    pub note: Option<String>,
}

/// The previews, open ones first, then the newest closed: at most `limit`.
pub fn list(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<PreviewRow>> {
    conn.prepare_cached(
        "SELECT repository, pull_request, environment, config, head_sha, state, opened_at,
                updated_at, last_deployment, environment_url, note
         FROM previews
         ORDER BY CASE state WHEN 'closed' THEN 1 ELSE 0 END, updated_at DESC, repository,
                  pull_request
         LIMIT ?1",
    )?
    .query_map([limit], |row| {
        Ok(PreviewRow {
            repository: row.get(0)?,
            pull_request: row.get::<_, i64>(1)?.unsigned_abs(),
            environment: row.get(2)?,
            config: row.get(3)?,
            head_sha: row.get(4)?,
            state: row.get(5)?,
            opened_at: row.get(6)?,
            updated_at: row.get(7)?,
            last_deployment: row.get::<_, Option<i64>>(8)?.map(i64::unsigned_abs),
            environment_url: row.get(9)?,
            note: row.get(10)?,
        })
    })?
    .collect()
}

/// A pull request whose previews are open: what the periodic check asks GitHub about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPull {
    pub repository: String,
    pub pull_request: u64,
    pub installation: Option<u64>,
}

/// Up to `limit` pull requests with a waiting or live preview not known open since
/// `before`, read longest ago first.
pub fn due_for_check(
    conn: &Connection,
    before: i64,
    limit: i64,
) -> rusqlite::Result<Vec<OpenPull>> {
    let mut pulls: Vec<OpenPull> = Vec::new();
    let rows = conn
        .prepare_cached(
            "SELECT repository, pull_request, installation_id FROM previews
             WHERE state IN (?1, ?2) AND checked_at < ?3
             ORDER BY checked_at LIMIT ?4",
        )?
        .query_map(params![WAITING, LIVE, before, limit], |row| {
            Ok(OpenPull {
                repository: row.get(0)?,
                pull_request: row.get::<_, i64>(1)?.unsigned_abs(),
                installation: row.get::<_, Option<i64>>(2)?.map(i64::unsigned_abs),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for pull in rows {
        if !pulls.contains(&pull) {
            pulls.push(pull);
        }
    }
    Ok(pulls)
}

/// GitHub was asked about `pull` at `now` (whatever it answered): it is not asked again
/// before the next round.
pub fn checked(conn: &Connection, pull: &OpenPull, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE previews SET checked_at = ?3
         WHERE repository = ?1 AND pull_request = ?2 AND state IN (?4, ?5)",
    )?
    .execute(params![
        pull.repository,
        int_key(pull.pull_request)?,
        now,
        WAITING,
        LIVE
    ])?;
    Ok(())
}

/// When the periodic check has something to read: the oldest `checked_at` of an open
/// preview.
pub fn oldest_check(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(checked_at) FROM previews WHERE state IN (?1, ?2)")?
        .query_row(params![WAITING, LIVE], |row| row.get(0))
}
