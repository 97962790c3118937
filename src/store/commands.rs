//! The `commands` table: commands written in pull-request comments, one row per comment.
//! Recorded with their delivery (a replayed comment finds its row and does nothing), taken
//! one at a time by the command worker when due, and marked done with the outcome its
//! reply tells. A worker that stops while holding one lets it go after [`HOLD_MS`]: the
//! command is then done again, which is why each step is one the worker can repeat.
//! `reply_id` is deployhook's one reply in the pull request, kept so that later news (the
//! deploy ended) edits it instead of adding another comment.

use crate::model::{Command, CommandRequest, RepoName};
use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::int_key;

/// How long a taken command is held before another attempt may take it.
pub const HOLD_MS: i64 = 60_000;

/// A command taken to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub request: CommandRequest,
    /// Attempts before this one.
    pub attempts: u32,
    pub received_at: i64,
}

/// Commands one person may give in one repository within [`PER_AUTHOR_WINDOW_MS`]: on a
/// public repository anyone may comment, and each command costs GitHub calls and a reply.
pub const PER_AUTHOR: i64 = 30;
pub const PER_AUTHOR_WINDOW_MS: i64 = 60 * 60 * 1000;

/// What became of a command delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// Its comment was recorded before: nothing changes.
    Again,
    /// Its author gave [`PER_AUTHOR`] commands in this repository within the hour: not
    /// recorded, not answered.
    TooMany,
}

/// Records `request`, unless its comment was already recorded or its author is over the
/// limit.
pub fn record(
    conn: &Connection,
    request: &CommandRequest,
    delivery_id: &str,
    now: i64,
) -> rusqlite::Result<Recorded> {
    let recent: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM commands
                 WHERE repository = ?1 AND author = ?2 AND received_at > ?3 LIMIT ?4) AS recent",
        )?
        .query_row(
            params![
                request.repo.as_ref(),
                request.author,
                now - PER_AUTHOR_WINDOW_MS,
                PER_AUTHOR
            ],
            |row| row.get(0),
        )?;
    let command = serde_json::to_string(&request.command).expect("a command serializes");
    if recent >= PER_AUTHOR {
        let known: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM commands WHERE repository = ?1 AND comment_id = ?2)",
            )?
            .query_row(
                params![request.repo.as_ref(), int_key(request.comment_id)?],
                |row| row.get(0),
            )?;
        return Ok(if known {
            Recorded::Again
        } else {
            Recorded::TooMany
        });
    }
    let inserted = conn
        .prepare_cached(
            "INSERT INTO commands (repository, comment_id, pull_request, author, installation,
                                   command, delivery_id, received_at, state, due_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'new', ?8, ?8)
             ON CONFLICT (repository, comment_id) DO NOTHING",
        )?
        .execute(params![
            request.repo.as_ref(),
            int_key(request.comment_id)?,
            int_key(request.pull_request)?,
            request.author,
            request.installation.map(int_key).transpose()?,
            command,
            delivery_id,
            now,
        ])?;
    Ok(if inserted == 1 {
        Recorded::New
    } else {
        Recorded::Again
    })
}

/// The oldest command due at `now`, held for [`HOLD_MS`] and counted as an attempt.
pub fn take_due(conn: &Connection, now: i64) -> rusqlite::Result<Option<Taken>> {
    let row = conn
        .prepare_cached(
            "SELECT repository, comment_id, pull_request, author, installation, command,
                    attempts, received_at
             FROM commands WHERE state = 'new' AND due_at <= ?1
             ORDER BY due_at, received_at LIMIT 1",
        )?
        .query_row(params![now], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
            ))
        })
        .optional()?;
    let Some((repo, comment, pr, author, installation, command, attempts, received_at)) = row
    else {
        return Ok(None);
    };
    conn.prepare_cached(
        "UPDATE commands SET due_at = ?3, attempts = attempts + 1, updated_at = ?4
         WHERE repository = ?1 AND comment_id = ?2",
    )?
    .execute(params![repo, comment, now + HOLD_MS, now])?;
    let unreadable = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("commands row {repo}#{comment}: {what}").into(),
        )
    };
    let request = CommandRequest {
        repo: RepoName::parse(&repo).map_err(|_| unreadable("repository"))?,
        pull_request: u64::try_from(pr).map_err(|_| unreadable("pull_request"))?,
        comment_id: u64::try_from(comment).map_err(|_| unreadable("comment_id"))?,
        author,
        installation: installation.and_then(|i| u64::try_from(i).ok()),
        command: serde_json::from_str::<Command>(&command).map_err(|_| unreadable("command"))?,
    };
    Ok(Some(Taken {
        request,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        received_at,
    }))
}

/// Marks the command of `comment` done, its outcome told as `outcome`; `false` when it
/// was done already (another attempt, after this one's hold ended, got there first): the
/// caller then records nothing of its own, so that what a command does happens once.
pub fn finish(
    conn: &Connection,
    repo: &RepoName,
    comment: u64,
    outcome: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE commands SET state = 'done', outcome = ?3, updated_at = ?4
             WHERE repository = ?1 AND comment_id = ?2 AND state = 'new'",
        )?
        .execute(params![repo.as_ref(), int_key(comment)?, outcome, now])?;
    Ok(changed == 1)
}

/// Puts the command of `comment` back, to be taken again at `due_at`.
pub fn retry_at(
    conn: &Connection,
    repo: &RepoName,
    comment: u64,
    due_at: i64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE commands SET due_at = ?3, updated_at = ?4
         WHERE repository = ?1 AND comment_id = ?2 AND state = 'new'",
    )?
    .execute(params![repo.as_ref(), int_key(comment)?, due_at, now])?;
    Ok(())
}

/// When the next command is due, if one waits.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(due_at) FROM commands WHERE state = 'new'")?
        .query_row([], |row| row.get(0))
}

/// deployhook's reply to the command of `comment`, if it made one.
pub fn reply_of(conn: &Connection, repo: &str, comment: u64) -> rusqlite::Result<Option<u64>> {
    let id: Option<Option<i64>> = conn
        .prepare_cached("SELECT reply_id FROM commands WHERE repository = ?1 AND comment_id = ?2")?
        .query_row(params![repo, int_key(comment)?], |row| row.get(0))
        .optional()?;
    Ok(id.flatten().and_then(|i| u64::try_from(i).ok()))
}

/// Remembers `reply` as deployhook's reply to the command of `comment`.
pub fn set_reply(conn: &Connection, repo: &str, comment: u64, reply: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE commands SET reply_id = ?3 WHERE repository = ?1 AND comment_id = ?2",
    )?
    .execute(params![repo, int_key(comment)?, int_key(reply)?])?;
    Ok(())
}

#[cfg(test)]
mod tests;
