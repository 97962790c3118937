//! What deployhook says back in a pull request where a command was written: reactions to
//! the command's comment and its one reply, queued in the outbox like any GitHub call. A
//! command's calls share one ordering key, so the reply is posted before it is edited and
//! the reactions come in the order decided. A deployment a command made carries the
//! command in its payload; its statuses bring news to the reply (see [`news_of_status`]).

use super::{Call, Row, insert, json_error, lane_of};
use crate::model::command::{CommandMark, deploy_news};
use crate::model::{DeployJob, DeploymentState};
use crate::store::db::Connection;

/// The key that keeps one command's calls in order.
fn key(repository: &str, comment: u64) -> String {
    format!("command:{repository}#{comment}")
}

/// Queues the reaction `content` (`eyes`, `rocket`, `-1`…) to the command's comment.
pub fn enqueue_reaction(
    conn: &Connection,
    repository: &str,
    comment: u64,
    content: &str,
    installation: Option<u64>,
    now: i64,
) -> rusqlite::Result<()> {
    let body = serde_json::json!({ "comment_id": comment, "content": content }).to_string();
    let row = Row {
        key: &key(repository, comment),
        kind: "reaction",
        repository,
        deployment_id: None,
        lane: lane_of(installation)?,
        body: &body,
    };
    insert(conn, &row, now)
}

/// Queues `text` as deployhook's reply to the command's comment: posted the first time,
/// an edit of that reply after.
pub fn enqueue_reply(
    conn: &Connection,
    repository: &str,
    pull_request: u64,
    comment: u64,
    text: &str,
    installation: Option<u64>,
    now: i64,
) -> rusqlite::Result<()> {
    // Which command it answers: in a long conversation, replies edited long after their
    // command are otherwise hard to pair with it. A link within the page, nobody mentioned.
    let text = format!("{text}\n\n<sub>in answer to [this command](#issuecomment-{comment})</sub>");
    let body = serde_json::json!({
        "pull_request": pull_request,
        "comment_id": comment,
        "body": text,
    })
    .to_string();
    let row = Row {
        key: &key(repository, comment),
        kind: "reply",
        repository,
        deployment_id: None,
        lane: lane_of(installation)?,
        body: &body,
    };
    insert(conn, &row, now)
}

/// When `job` was made by a command, what its new status `state` tells the pull request:
/// the reply edited, and at the end a reaction (🚀 or 👎).
pub fn news_of_status(
    conn: &Connection,
    job: &DeployJob,
    state: DeploymentState,
    description: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let Some((mark, payload)) = CommandMark::of_payload(&job.payload) else {
        return Ok(());
    };
    let (text, reaction) = deploy_news(job, &payload, state, description);
    let repository = job.repo.as_ref();
    enqueue_reply(
        conn,
        repository,
        mark.pull_request,
        mark.comment_id,
        &text,
        job.installation,
        now,
    )?;
    if let Some(reaction) = reaction {
        enqueue_reaction(
            conn,
            repository,
            mark.comment_id,
            reaction,
            job.installation,
            now,
        )?;
    }
    Ok(())
}

/// The call a `reaction` or `reply` row asks for.
pub(super) fn call_from(kind: &str, repository: String, body: &str) -> rusqlite::Result<Call> {
    let body: serde_json::Value = serde_json::from_str(body).map_err(json_error)?;
    let number = |key: &str| body[key].as_u64().unwrap_or_default();
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
    Ok(match kind {
        "reaction" => Call::React {
            repository,
            comment_id: number("comment_id"),
            content: text("content"),
        },
        _ => Call::Reply {
            repository,
            pull_request: number("pull_request"),
            comment_id: number("comment_id"),
            body: text("body"),
        },
    })
}
