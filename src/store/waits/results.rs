//! The `check_results` table: the latest result of each check known for a commit.

use crate::model::{CheckKind, CheckResult, CheckState};
use crate::store::db::{Connection, params};
use crate::store::int_key;

/// One result per check (kind and name) from a read: the worst of its runs. Two workflows
/// may run a job of the same name; a failure of one must not hide behind the other's
/// success.
pub(super) fn worst_per_check(results: &[CheckResult]) -> Vec<CheckResult> {
    let rank = |state: CheckState| match state {
        CheckState::Failed => 2,
        CheckState::Pending => 1,
        CheckState::Passed => 0,
    };
    let mut merged: Vec<CheckResult> = Vec::new();
    for result in results {
        match merged
            .iter_mut()
            .find(|m| m.kind == result.kind && m.name == result.name)
        {
            None => merged.push(result.clone()),
            Some(known) => {
                let newest = known.source_id.max(result.source_id);
                if rank(result.state) > rank(known.state) {
                    *known = result.clone();
                }
                known.source_id = newest;
            }
        }
    }
    merged
}

pub(super) fn upsert_result(
    conn: &Connection,
    repo: &str,
    sha: &str,
    result: &CheckResult,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO check_results (repository, sha, kind, name, state, detail, url, source_id,
                                    updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (repository, sha, kind, name) DO UPDATE SET
             state = excluded.state, detail = excluded.detail, url = excluded.url,
             source_id = excluded.source_id, updated_at = excluded.updated_at
         WHERE excluded.source_id > check_results.source_id
            OR (excluded.source_id = check_results.source_id
                AND check_results.state = 'pending')",
    )?
    .execute(params![
        repo,
        sha,
        result.kind.as_str(),
        result.name,
        result.state.as_str(),
        result.detail,
        result.url,
        int_key(result.source_id)?,
        now
    ])?;
    Ok(())
}

/// The latest result of each check known for `repo`@`sha`.
pub fn results(conn: &Connection, repo: &str, sha: &str) -> rusqlite::Result<Vec<CheckResult>> {
    conn.prepare_cached(
        "SELECT kind, name, state, detail, url, source_id FROM check_results
         WHERE repository = ?1 AND sha = ?2 ORDER BY name, kind",
    )?
    .query_map(params![repo, sha], |row| {
        Ok(CheckResult {
            kind: CheckKind::parse(&row.get::<_, String>(0)?),
            name: row.get(1)?,
            state: CheckState::parse(&row.get::<_, String>(2)?),
            detail: row.get(3)?,
            url: row.get(4)?,
            source_id: row.get::<_, i64>(5)?.unsigned_abs(),
        })
    })?
    .collect()
}
