//! Reads of a commit's checks, queued for the merges that wait on it (see
//! [`crate::store::waits`]): one pending read per repository and commit at a time.

use crate::store::db::Connection;

use super::{Row, insert, lane_of};

/// Queues a read of `repo`@`sha`'s checks, unless one is queued and not yet taken (it will
/// see whatever this one would). `true` when queued.
pub fn enqueue_read_checks(
    conn: &Connection,
    repo: &crate::model::RepoName,
    sha: &crate::model::CommitSha,
    installation: Option<u64>,
    now: i64,
) -> rusqlite::Result<bool> {
    let key = format!("checks:{repo}@{sha}");
    let waiting: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox INDEXED BY outbox_by_key
                            WHERE state = 'pending' AND ordering_key = ?1 AND in_flight = 0)",
        )?
        .query_row([&key], |row| row.get(0))?;
    if waiting {
        return Ok(false);
    }
    let body = serde_json::json!({ "sha": sha }).to_string();
    let row = Row {
        key: &key,
        kind: "read_checks",
        repository: repo.as_ref(),
        deployment_id: None,
        lane: lane_of(installation)?,
        body: &body,
    };
    insert(conn, &row, now)?;
    Ok(true)
}
