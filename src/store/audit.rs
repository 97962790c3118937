//! The `audit` table: who did what, where, from which address, and whether it was done or
//! refused (see [`crate::model::audit`]). Append-only: [`record`] adds a row and nothing
//! here changes or deletes one; retention (`store::retention`) prunes them with the
//! deploys' age, and nothing else does.
//!
//! [`record`] is meant to run in the write transaction of the action it records: the
//! action and its row commit together, or neither does, so the log never tells of an
//! action that did not happen, nor misses one that did.

use crate::model::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::model::people::{Actor, Via};
use crate::store::db::{Connection, Row, ToSql, params};

/// Rows a page holds at most, whatever was asked.
pub const MAX_PAGE: usize = 500;

/// An entry as kept: its id (the log's order), and the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

/// Which entries a page shows: those older than `before` (an id), newest first, at most
/// `limit` (up to [`MAX_PAGE`]), matching every filter given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub before: Option<i64>,
    pub limit: usize,
    /// The actor's login.
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub environment: Option<String>,
    pub repository: Option<String>,
}

/// Adds `entry` to the log; its id.
pub fn record(conn: &Connection, entry: &AuditEntry) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit (at, login, via, action, repository, environment, target, detail,
                            address, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         RETURNING id",
    )?
    .query_row(
        params![
            entry.at(),
            entry.actor().login,
            entry.via().as_str(),
            entry.action().as_str(),
            entry.repository(),
            entry.environment(),
            entry.target(),
            entry.detail(),
            entry.address(),
            entry.outcome().as_str()
        ],
        |row| row.get(0),
    )
}

/// A page of the log, newest first (see [`AuditQuery`]). Each filter given is one
/// equality on an indexed column, and the page runs backwards along the id: the query
/// reads about as many rows as it returns, however large the log.
pub fn page(conn: &Connection, query: &AuditQuery) -> rusqlite::Result<Vec<AuditRecord>> {
    let action = query.action.map(AuditAction::as_str);
    let filters: [(&str, Option<&str>); 4] = [
        ("login", query.actor.as_deref()),
        ("action", action),
        ("environment", query.environment.as_deref()),
        ("repository", query.repository.as_deref()),
    ];
    let limit = i64::try_from(query.limit.min(MAX_PAGE)).unwrap_or(0);
    let mut values: Vec<&dyn ToSql> = vec![&limit];
    let mut conditions = Vec::new();
    if let Some(before) = &query.before {
        values.push(before);
        conditions.push(format!("id < ?{}", values.len()));
    }
    // Only the filters given are in the statement: `?N IS NULL OR …` would keep SQLite
    // from using their index. At most sixteen statements, each prepared once.
    for (column, value) in &filters {
        if let Some(value) = value {
            values.push(value);
            conditions.push(format!("{column} = ?{}", values.len()));
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    conn.prepare_cached(&format!(
        "SELECT id, at, login, via, action, repository, environment, target, detail, address,
                outcome
         FROM audit {filter} ORDER BY id DESC LIMIT ?1"
    ))?
    .query_map(values.as_slice(), record_from_row)?
    .collect()
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let unknown = |column: usize, text: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("{text:?} is not known here").into(),
        )
    };
    let via: String = row.get(3)?;
    let via = Via::parse(&via).ok_or_else(|| unknown(3, &via))?;
    let action: String = row.get(4)?;
    let action = AuditAction::parse(&action).map_err(|_| unknown(4, &action))?;
    let outcome: String = row.get(10)?;
    let outcome = AuditOutcome::parse(&outcome).ok_or_else(|| unknown(10, &outcome))?;
    let login: String = row.get(2)?;
    let address: String = row.get(9)?;
    let detail: String = row.get(8)?;
    let mut entry = AuditEntry::new(row.get(1)?, &Actor::person(&login, via), action, &address);
    if let Some(repository) = row.get::<_, Option<String>>(5)? {
        entry = entry.with_repository(&repository);
    }
    if let Some(environment) = row.get::<_, Option<String>>(6)? {
        entry = entry.with_environment(&environment);
    }
    if let Some(target) = row.get::<_, Option<String>>(7)? {
        entry = entry.with_target(&target);
    }
    entry = match outcome {
        AuditOutcome::Done => entry.with_detail(&detail),
        AuditOutcome::Refused => entry.refused(&detail),
    };
    Ok(AuditRecord {
        id: row.get(0)?,
        entry,
    })
}

#[cfg(test)]
pub(crate) mod tests;
