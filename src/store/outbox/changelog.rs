//! The `changelog` call: read what a deployment deploys with the compare API, queued when
//! its job is claimed (see [`crate::store::changelogs`]). One key per deployment: it never
//! waits behind, nor holds up, a status.

use crate::model::DeployJob;
use crate::store::db::Connection;

use super::{Call, Row, insert, json_error, lane_of};

fn key(deployment: crate::model::DeploymentId) -> String {
    format!("changelog:{deployment}")
}

/// Queues the read of `job`'s changelog from `base`, the previous success's commit.
pub fn enqueue_changelog(
    conn: &Connection,
    job: &DeployJob,
    base: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let body = serde_json::json!({
        "deployment_id": job.id.get(),
        "base": base,
        "head": job.sha.as_ref(),
    })
    .to_string();
    let row = Row {
        key: &key(job.id),
        kind: "changelog",
        repository: job.repo.as_ref(),
        deployment_id: Some(crate::store::int_key(job.id.get())?),
        lane: lane_of(job.installation)?,
        body: &body,
    };
    insert(conn, &row, now)
}

/// Whether the read of `deployment`'s changelog is queued (or given up, kept failed).
pub fn changelog_queued(
    conn: &Connection,
    deployment: crate::model::DeploymentId,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE ordering_key = ?1)")?
        .query_row([key(deployment)], |row| row.get(0))
}

pub(super) fn call_from(repository: String, body: &str) -> rusqlite::Result<Call> {
    let body: serde_json::Value = serde_json::from_str(body).map_err(json_error)?;
    let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    Ok(Call::Changelog {
        repository,
        deployment_id: body["deployment_id"].as_u64().unwrap_or_default(),
        base: text("base"),
        head: text("head"),
    })
}
