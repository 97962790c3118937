//! Why a queued deployment has not started, in the words every place that shows it uses
//! (the admin API and so `deployhook log --follow`, the dashboard's Queued table, the
//! answer to its deployment's delivery): the lock holding its environment — who took it,
//! since when, why, until when — or the deploy of the same repository and environment
//! running ahead of it. Worked out when asked, never stored: a lock comes and goes.

use std::time::{Duration, UNIX_EPOCH};

use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::locks::{self, Lock};

/// What holds a queued deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Its environment is locked, and it is not forced through locks.
    Locked(Lock),
    /// A deploy of the same repository and environment runs: one runs at a time there.
    Behind {
        deployment: u64,
        /// When it started (Unix milliseconds).
        since: Option<i64>,
        /// Its command ended and its check after the deploy runs (`verify`).
        verifying: bool,
    },
}

impl Waiting {
    /// The reason in one sentence, with times in UTC:
    /// `production is locked by alice since 2026-12-07 05:00:00 UTC: incident 4711 (until
    /// unlocked)`, `behind deployment 880001, running since 2026-12-07 05:00:01 UTC`.
    pub fn sentence(&self) -> String {
        match self {
            Self::Locked(lock) => {
                let until = lock.until.map_or_else(
                    || "until unlocked".to_owned(),
                    |u| format!("until {}", at(u)),
                );
                format!(
                    "{} is locked by {} since {}: {} ({until})",
                    lock.environment,
                    lock.locked_by,
                    at(lock.locked_at),
                    lock.reason
                )
            }
            Self::Behind {
                deployment,
                since,
                verifying,
            } => {
                let doing = if *verifying { "verifying" } else { "running" };
                match since {
                    Some(since) => {
                        format!(
                            "behind deployment {deployment}, {doing} since {}",
                            at(*since)
                        )
                    }
                    None => format!("behind deployment {deployment}, {doing}"),
                }
            }
        }
    }
}

/// What holds a queued deployment (`forced` through locks or not), given the lock on its
/// environment and the deployment running in its repository and environment, if any;
/// `None` when neither holds it: it starts when the queue looks next.
pub fn why(
    forced: bool,
    lock: Option<&Lock>,
    running: Option<(u64, Option<i64>, bool)>,
) -> Option<Waiting> {
    match (lock, running) {
        (Some(lock), _) if !forced => Some(Waiting::Locked(lock.clone())),
        (_, Some((deployment, since, verifying))) => Some(Waiting::Behind {
            deployment,
            since,
            verifying,
        }),
        _ => None,
    }
}

/// [`why`], read for one queued deployment of `repository` to `environment` at `now`.
pub fn of_queued(
    conn: &Connection,
    repository: &str,
    environment: &str,
    forced: bool,
    now: i64,
) -> rusqlite::Result<Option<Waiting>> {
    let lock = locks::holding(conn, environment, now)?;
    let running = conn
        .prepare_cached(
            "SELECT deployment_id, started_at, state FROM jobs
             WHERE state IN ('running', 'verifying') AND repository = ?1 AND environment = ?2
             ORDER BY deployment_id LIMIT 1",
        )?
        .query_row(params![repository, environment], |row| {
            let state: String = row.get(2)?;
            Ok((
                row.get::<_, i64>(0)?.unsigned_abs(),
                row.get(1)?,
                state == "verifying",
            ))
        })
        .optional()?;
    Ok(why(forced, lock.as_ref(), running))
}

/// Unix milliseconds as `2026-12-07 05:00:00 UTC`, as the dashboard writes times.
fn at(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lock {
        Lock {
            environment: "production".into(),
            reason: "incident 4711".into(),
            locked_by: "alice".into(),
            locked_at: 0,
            until: None,
        }
    }

    #[test]
    fn a_lock_holds_what_is_not_forced_and_a_running_deploy_holds_the_rest() {
        let running = Some((880_001, Some(1_000), false));
        assert_eq!(
            why(false, Some(&lock()), running).map(|w| w.sentence()),
            Some(
                "production is locked by alice since 1970-01-01 00:00:00 UTC: incident 4711 \
                 (until unlocked)"
                    .to_owned()
            )
        );
        assert_eq!(
            why(true, Some(&lock()), running).map(|w| w.sentence()),
            Some("behind deployment 880001, running since 1970-01-01 00:00:01 UTC".to_owned())
        );
        assert_eq!(
            why(true, None, Some((880_001, Some(1_000), true))).map(|w| w.sentence()),
            Some("behind deployment 880001, verifying since 1970-01-01 00:00:01 UTC".to_owned())
        );
        assert_eq!(why(true, Some(&lock()), None), None);
        assert_eq!(why(false, None, None), None);
        let until = Lock {
            until: Some(3_600_000),
            ..lock()
        };
        let sentence = why(false, Some(&until), None).unwrap().sentence();
        assert!(
            sentence.ends_with("(until 1970-01-01 01:00:00 UTC)"),
            "{sentence}"
        );
    }
}
