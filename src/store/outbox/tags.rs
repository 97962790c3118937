//! The GitHub calls a pushed tag or a published release queues: its deployment's creation
//! when the event named the commit (a push), else first a `resolve_tag` call that finds the
//! tag's commit (a release), and whose completion queues the creation. Both share the key
//! of the environment's deliberate deployments (those of no pull request: `#0`), so the
//! tags of one environment are created in the order they came.

use crate::model::{CommitSha, TagDeploy};
use crate::store::db::Connection;

use super::{Row, enqueue_create_deployment, insert, json_error, lane_of};

/// Queues what `deploy` needs: its creation, or its tag's resolution first.
pub fn enqueue_tag(conn: &Connection, deploy: &TagDeploy, now: i64) -> rusqlite::Result<()> {
    if let Some(sha) = &deploy.sha {
        return enqueue_create_deployment(conn, &deploy.deployment(sha.clone()), now);
    }
    let key = format!("pr:{}#0@{}", deploy.repo, deploy.environment);
    let body = serde_json::to_string(deploy).map_err(json_error)?;
    let row = Row {
        key: &key,
        kind: "resolve_tag",
        repository: deploy.repo.as_ref(),
        deployment_id: None,
        lane: lane_of(deploy.installation)?,
        body: &body,
    };
    insert(conn, &row, now)
}

/// The resolution of `id`, a `resolve_tag` call, found `sha`: the call is done and the
/// deployment of that commit queued, in one transaction.
pub fn tag_resolved(
    conn: &Connection,
    id: i64,
    deploy: &TagDeploy,
    sha: CommitSha,
    now: i64,
) -> rusqlite::Result<()> {
    super::complete(conn, id)?;
    enqueue_create_deployment(conn, &deploy.deployment(sha), now)
}
