//! The `deploy_logs` table, the output of deploy commands, and the `settings` table that
//! holds the key signing log links. Lines are appended in batches by the runner's log
//! writer and read back in `seq` order by the log endpoint, while the deploy runs and after.

use crate::store::db::{Connection, OptionalExtension, params};

use crate::model::DeploymentId;
use crate::store::int_key;

/// A line of a deploy's output, or a note of deployhook's about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: i64,
    /// Unix milliseconds, when the line was read.
    pub at: i64,
    pub stream: Stream,
    pub text: String,
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by deployhook: what it ran, how it ended.
    Deployhook,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Deployhook => "deployhook",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "stdout" => Self::Stdout,
            "stderr" => Self::Stderr,
            _ => Self::Deployhook,
        }
    }
}

/// Where a deployment's job stands, as the log endpoint needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// No such deployment in the queue.
    Unknown,
    Queued,
    Running,
    Finished,
}

/// Appends `lines`, then deletes the lines `drop` (inclusive `seq` range) to keep the run
/// within its limit.
pub fn append(
    conn: &Connection,
    deployment: DeploymentId,
    lines: &[LogLine],
    drop: Option<(i64, i64)>,
) -> rusqlite::Result<()> {
    let id = int_key(deployment.get())?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO deploy_logs (deployment_id, seq, at, stream, line)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (deployment_id, seq) DO UPDATE SET
             at = excluded.at, stream = excluded.stream, line = excluded.line",
    )?;
    for line in lines {
        insert.execute(params![
            id,
            line.seq,
            line.at,
            line.stream.as_str(),
            line.text
        ])?;
    }
    if let Some((first, last)) = drop {
        conn.prepare_cached(
            "DELETE FROM deploy_logs WHERE deployment_id = ?1 AND seq BETWEEN ?2 AND ?3",
        )?
        .execute(params![id, first, last])?;
    }
    Ok(())
}

/// The seq the next line of `deployment` takes: 0 for a first run, after the earlier run's
/// lines for a run again.
pub fn next_seq(conn: &Connection, deployment: DeploymentId) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE(MAX(seq), -1) + 1 FROM deploy_logs WHERE deployment_id = ?1",
    )?
    .query_row([int_key(deployment.get())?], |row| row.get(0))
}

/// Up to `limit` lines of `deployment` after `after` (all when `None`), with the job's state
/// read in the same transaction: a finished job with no line left to read has a complete log.
pub fn read_after(
    conn: &Connection,
    deployment: DeploymentId,
    after: Option<i64>,
    limit: usize,
) -> rusqlite::Result<(Vec<LogLine>, JobState)> {
    let id = int_key(deployment.get())?;
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM jobs WHERE deployment_id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?;
    let state = match state.as_deref() {
        None => JobState::Unknown,
        Some("queued") => JobState::Queued,
        // Verification writes its checks into the log: it is still live.
        Some("running" | "verifying") => JobState::Running,
        Some(_) => JobState::Finished,
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lines = conn
        .prepare_cached(
            "SELECT seq, at, stream, line FROM deploy_logs
             WHERE deployment_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?
        .query_map(params![id, after.unwrap_or(-1), limit], |row| {
            Ok(LogLine {
                seq: row.get(0)?,
                at: row.get(1)?,
                stream: Stream::parse(&row.get::<_, String>(2)?),
                text: row.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((lines, state))
}

/// The value of setting `name`, created with `create` on first use.
pub fn setting_or_insert(
    conn: &Connection,
    name: &str,
    create: impl FnOnce() -> Vec<u8>,
) -> rusqlite::Result<Vec<u8>> {
    let existing: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM settings WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(value) = existing {
        return Ok(value);
    }
    // Another replica starting at the same time may insert first: keep its value.
    conn.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, create()],
    )?;
    conn.query_row(
        "SELECT value FROM settings WHERE name = ?1",
        [name],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs;
    use crate::store::tests::{each_engine, job};

    fn line(seq: i64, text: &str) -> LogLine {
        LogLine {
            seq,
            at: 1_000 + seq,
            stream: if seq % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            text: text.into(),
        }
    }

    #[test]
    fn lines_are_read_in_order_after_a_seq_and_a_dropped_range_is_gone() {
        each_engine(|conn| {
            let id = DeploymentId::from(1);
            assert_eq!(
                read_after(conn, id, None, 10).unwrap(),
                (vec![], JobState::Unknown)
            );
            jobs::enqueue(conn, &job(1, None), "d", 0).unwrap();
            assert_eq!(next_seq(conn, id).unwrap(), 0);
            let lines: Vec<LogLine> = (0..5).map(|seq| line(seq, &format!("l{seq}"))).collect();
            append(conn, id, &lines[..3], None).unwrap();
            // A line written again replaces the first write; lines 1 and 2 are dropped.
            append(
                conn,
                id,
                &[line(2, "again"), lines[3].clone(), lines[4].clone()],
                Some((1, 2)),
            )
            .unwrap();
            assert_eq!(next_seq(conn, id).unwrap(), 5);
            let (read, state) = read_after(conn, id, None, 10).unwrap();
            assert_eq!(state, JobState::Queued);
            assert_eq!(read, [lines[0].clone(), lines[3].clone(), lines[4].clone()]);
            let (read, _) = read_after(conn, id, Some(0), 1).unwrap();
            assert_eq!(read, [lines[3].clone()]);
        });
    }

    #[test]
    fn a_setting_is_created_once_and_kept() {
        each_engine(|conn| {
            let key = setting_or_insert(conn, "log_key", || vec![0, 1, 255]).unwrap();
            assert_eq!(key, [0, 1, 255]);
            let again = setting_or_insert(conn, "log_key", || unreachable!()).unwrap();
            assert_eq!(again, key);
        });
    }
}
