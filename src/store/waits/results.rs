//! The `check_results` table: each check's latest result on a commit, per source. A check
//! run's source is its app and check suite ([`CheckSource`]): within a source a newer run
//! of a name replaces the older (a re-run replaces its own run), while the results of other
//! sources stay beside it, and the gate's rule takes the worst of them. Commit statuses
//! have no source: the latest status of a context replaces the others, as on GitHub.

use crate::model::{CheckKind, CheckResult, CheckSource, CheckState};
use crate::store::db::{Connection, params};
use crate::store::int_key;

/// Records `result` unless its source already has a newer one of its name: a larger
/// GitHub id, or the same run finished (a late `in_progress` never undoes `completed`).
pub(super) fn upsert_result(
    conn: &Connection,
    repo: &str,
    sha: &str,
    result: &CheckResult,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO check_results (repository, sha, kind, name, source, state, detail, url,
                                    github_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (repository, sha, kind, name, source) DO UPDATE SET
             state = excluded.state, detail = excluded.detail, url = excluded.url,
             github_id = excluded.github_id, updated_at = excluded.updated_at
         WHERE excluded.github_id > check_results.github_id
            OR (excluded.github_id = check_results.github_id
                AND check_results.state = 'pending')",
    )?
    .execute(params![
        repo,
        sha,
        result.kind.as_str(),
        result.name,
        result.source.as_str(),
        result.state.as_str(),
        result.detail,
        result.url,
        int_key(result.github_id)?,
        now
    ])?;
    Ok(())
}

/// The latest result of each check from each source known for `repo`@`sha`, by name.
pub fn results(conn: &Connection, repo: &str, sha: &str) -> rusqlite::Result<Vec<CheckResult>> {
    conn.prepare_cached(
        "SELECT kind, name, source, state, detail, url, github_id FROM check_results
         WHERE repository = ?1 AND sha = ?2 ORDER BY name, kind, source",
    )?
    .query_map(params![repo, sha], |row| {
        Ok(CheckResult {
            kind: CheckKind::parse(&row.get::<_, String>(0)?),
            name: row.get(1)?,
            source: CheckSource::from_stored(row.get(2)?),
            state: CheckState::parse(&row.get::<_, String>(3)?),
            detail: row.get(4)?,
            url: row.get(5)?,
            github_id: row.get::<_, i64>(6)?.unsigned_abs(),
        })
    })?
    .collect()
}
