//! The waits as the dashboard shows them, and the gauge's counts.

use crate::model::{CheckResult, CheckState, Required, Verdict};
use crate::store::db::{Connection, Row};

use super::results::results;

/// A wait as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct WaitRow {
    pub kind: String,
    pub repository: String,
    pub environment: String,
    pub sha: String,
    pub pull_request: u64,
    /// The gate (checks).
    pub required: Option<Required>,
    pub created_at: i64,
    pub due_at: i64,
    pub from_deployment: Option<u64>,
    pub read_error: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub ended_at: Option<i64>,
    /// The results known for the commit (checks).
    pub results: Vec<CheckResult>,
}

impl WaitRow {
    /// The required checks that passed and those still pending (checks). A name reported
    /// by several sources passed only once each of them passed it; it is listed once.
    pub fn progress(&self) -> (Vec<String>, Vec<String>) {
        let Some(required) = &self.required else {
            return (vec![], vec![]);
        };
        let pending = match required.verdict(&self.results) {
            Verdict::Pending(names) => names,
            Verdict::Green | Verdict::Failed(_) => vec![],
        };
        // By name, in the results' order: whether every source's result of it passed.
        let mut by_name: Vec<(&str, bool)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for result in &self.results {
            let counts = match required {
                Required::All => true,
                Required::Named(names) => names.contains(&result.name),
            };
            if !counts {
                continue;
            }
            let at = *index.entry(result.name.as_str()).or_insert_with(|| {
                by_name.push((result.name.as_str(), true));
                by_name.len() - 1
            });
            by_name[at].1 &= result.state == CheckState::Passed;
        }
        let passed = by_name
            .into_iter()
            .filter(|(_, passed)| *passed)
            .map(|(name, _)| name.to_owned())
            .collect();
        (passed, pending)
    }
}

/// Waiting waits the dashboard shows at most (the gauge counts them all).
const MAX_WAITING_SHOWN: i64 = 200;

/// The waits still waiting, oldest first, and the most recently ended ones.
pub fn waits(conn: &Connection, ended_limit: usize) -> rusqlite::Result<Vec<WaitRow>> {
    let columns = "kind, repository, environment, sha, pull_request, required, created_at,
                   due_at, from_deployment, read_error, state, reason, ended_at";
    let mut rows: Vec<WaitRow> = conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM waits INDEXED BY waits_waiting_by_age WHERE state = 'waiting'
             ORDER BY created_at, id LIMIT ?1"
        ))?
        .query_map([MAX_WAITING_SHOWN], wait_row)?
        .collect::<Result<_, _>>()?;
    let ended: Vec<WaitRow> = conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM waits INDEXED BY waits_ended WHERE state != 'waiting'
             ORDER BY ended_at DESC NULLS LAST LIMIT ?1"
        ))?
        .query_map([i64::try_from(ended_limit).unwrap_or(i64::MAX)], wait_row)?
        .collect::<Result<_, _>>()?;
    rows.extend(ended);
    for row in &mut rows {
        if row.kind == "checks" && row.state == "waiting" {
            row.results = results(conn, &row.repository, &row.sha)?;
        }
    }
    Ok(rows)
}

/// How many waits wait now: `(checks, soak)`.
pub fn waiting_counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.prepare_cached(
        "SELECT COUNT(CASE WHEN kind = 'checks' THEN 1 END),
                COUNT(CASE WHEN kind = 'soak' THEN 1 END)
         FROM waits INDEXED BY waits_due WHERE state = 'waiting'",
    )?
    .query_row([], |row| {
        let count = |i| row.get::<_, i64>(i).map(i64::unsigned_abs);
        Ok((count(0)?, count(1)?))
    })
}

fn wait_row(row: &Row<'_>) -> rusqlite::Result<WaitRow> {
    let required: Option<String> = row.get(5)?;
    Ok(WaitRow {
        kind: row.get(0)?,
        repository: row.get(1)?,
        environment: row.get(2)?,
        sha: row.get(3)?,
        pull_request: row.get::<_, i64>(4)?.unsigned_abs(),
        required: required.and_then(|r| serde_json::from_str(&r).ok()),
        created_at: row.get(6)?,
        due_at: row.get(7)?,
        from_deployment: row.get::<_, Option<i64>>(8)?.map(i64::unsigned_abs),
        read_error: row.get(9)?,
        state: row.get(10)?,
        reason: row.get(11)?,
        ended_at: row.get(12)?,
        results: vec![],
    })
}
