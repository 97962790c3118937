//! The `locks` table: environments locked against automatic deploys. A lock names who took
//! it, why, since when and until when (or until unlocked); an expired lock is no lock. The
//! deploy queue reads it when it claims jobs (see [`crate::store::jobs::claim`]).

use crate::store::db::{Connection, OptionalExtension, Row, params};

/// A lock on an environment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lock {
    pub environment: String,
    pub reason: String,
    pub locked_by: String,
    /// Unix milliseconds.
    pub locked_at: i64,
    /// Unix milliseconds; `None`: until unlocked.
    pub until: Option<i64>,
}

/// Locks `environment` (or changes its lock's reason, owner and expiry).
pub fn lock(conn: &Connection, lock: &Lock) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO locks (environment, reason, locked_by, locked_at, until)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (environment) DO UPDATE SET reason = excluded.reason,
             locked_by = excluded.locked_by, locked_at = excluded.locked_at,
             until = excluded.until",
    )?
    .execute(params![
        lock.environment,
        lock.reason,
        lock.locked_by,
        lock.locked_at,
        lock.until
    ])?;
    Ok(())
}

/// Lifts the lock on `environment`; the lock it lifted, if one held at `now`.
pub fn unlock(conn: &Connection, environment: &str, now: i64) -> rusqlite::Result<Option<Lock>> {
    conn.prepare_cached(
        "DELETE FROM locks WHERE environment = ?1
         RETURNING environment, reason, locked_by, locked_at, until",
    )?
    .query_row([environment], lock_from_row)
    .optional()
    .map(|lock| lock.filter(|l| l.until.is_none_or(|until| until > now)))
}

/// The lock holding `environment` at `now`, if any.
pub fn holding(conn: &Connection, environment: &str, now: i64) -> rusqlite::Result<Option<Lock>> {
    conn.prepare_cached(
        "SELECT environment, reason, locked_by, locked_at, until FROM locks
         WHERE environment = ?1 AND (until IS NULL OR until > ?2)",
    )?
    .query_row(params![environment, now], lock_from_row)
    .optional()
}

/// Every lock holding at `now`, by environment.
pub fn holding_all(conn: &Connection, now: i64) -> rusqlite::Result<Vec<Lock>> {
    conn.prepare_cached(
        "SELECT environment, reason, locked_by, locked_at, until FROM locks
         WHERE until IS NULL OR until > ?1 ORDER BY environment",
    )?
    .query_map([now], lock_from_row)?
    .collect()
}

/// When the next lock holding at `now` expires, if one has an expiry: the deploy queue
/// looks again then.
pub fn next_expiry(conn: &Connection, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(until) FROM locks WHERE until > ?1")?
        .query_row([now], |row| row.get(0))
}

fn lock_from_row(row: &Row<'_>) -> rusqlite::Result<Lock> {
    Ok(Lock {
        environment: row.get(0)?,
        reason: row.get(1)?,
        locked_by: row.get(2)?,
        locked_at: row.get(3)?,
        until: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_engine;

    fn lock_of(environment: &str, until: Option<i64>) -> Lock {
        Lock {
            environment: environment.into(),
            reason: "incident".into(),
            locked_by: "maria".into(),
            locked_at: 0,
            until,
        }
    }

    #[test]
    fn a_lock_holds_until_it_expires_or_is_lifted() {
        each_engine(|conn| {
            lock(conn, &lock_of("staging", Some(100))).unwrap();
            lock(conn, &lock_of("production", None)).unwrap();
            // Locked again: the new reason and expiry replace the old.
            lock(
                conn,
                &Lock {
                    reason: "release".into(),
                    ..lock_of("staging", Some(200))
                },
            )
            .unwrap();
            let held: Vec<(String, String)> = holding_all(conn, 150)
                .unwrap()
                .into_iter()
                .map(|l| (l.environment, l.reason))
                .collect();
            assert_eq!(
                held,
                [
                    ("production".into(), "incident".into()),
                    ("staging".into(), "release".into())
                ]
            );
            assert_eq!(next_expiry(conn, 150).unwrap(), Some(200));
            assert!(holding(conn, "staging", 200).unwrap().is_none(), "expired");
            assert_eq!(next_expiry(conn, 200).unwrap(), None);
            // Lifting an expired lock removes it, but says no lock held.
            assert!(unlock(conn, "staging", 250).unwrap().is_none());
            assert_eq!(
                unlock(conn, "production", 250).unwrap(),
                Some(lock_of("production", None))
            );
            assert!(holding_all(conn, 0).unwrap().is_empty());
        });
    }
}
