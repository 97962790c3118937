//! Why a queued deployment has not started, in the words every place that shows it uses
//! (the admin API and so `deployhook log --follow`, the dashboard's Queued table, the
//! answer to its deployment's delivery): the lock holding its environment — who took it,
//! since when, why, until when — or the deploy of the same repository and environment
//! running ahead of it, or the deploy window or freeze of its environment (see
//! [`crate::model::window`]; the caller, which knows the configuration, says what holds
//! the environment). Worked out when asked, never stored: a lock comes and goes.

use std::time::{Duration, UNIX_EPOCH};

use crate::model::{Clearance, Hold};
use crate::store::db::{Connection, OptionalExtension, params};
use crate::store::locks::{self, Lock};

/// What holds a queued deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Waiting {
    /// Its environment is locked, and it is not forced through locks.
    Locked(Lock),
    /// Its environment's window is closed, or a freeze holds it, and it does not pass.
    Held(Hold),
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
            Self::Held(hold) => hold.sentence(),
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

/// What holds a queued deployment (`forced` through locks or not, of `clearance` for
/// windows and freezes), given the lock on its environment, what holds the environment
/// (`hold`: a closed window, a freeze) and the deployment running in its repository and
/// environment, if any; `None` when none holds it: it starts when the queue looks next.
/// A lock is named first (a person took it), then the window or freeze (it outlasts the
/// deploy running ahead).
pub fn why(
    forced: bool,
    clearance: Clearance,
    lock: Option<&Lock>,
    hold: Option<&Hold>,
    running: Option<(u64, Option<i64>, bool)>,
) -> Option<Waiting> {
    match (lock, hold, running) {
        (Some(lock), _, _) if !forced => Some(Waiting::Locked(lock.clone())),
        (_, Some(hold), _) if !hold.lets_through(clearance) => Some(Waiting::Held(hold.clone())),
        (_, _, Some((deployment, since, verifying))) => Some(Waiting::Behind {
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
    (forced, clearance): (bool, Clearance),
    hold: Option<&Hold>,
    now: i64,
) -> rusqlite::Result<Option<Waiting>> {
    let lock = locks::holding(conn, environment, now)?;
    let running = conn
        .prepare_cached(
            "SELECT deployment_id, COALESCE(verify_started_at, started_at), state FROM jobs
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
    Ok(why(forced, clearance, lock.as_ref(), hold, running))
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

    const AUTO: Clearance = Clearance::Automatic;

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
            why(false, AUTO, Some(&lock()), None, running).map(|w| w.sentence()),
            Some(
                "production is locked by alice since 1970-01-01 00:00:00 UTC: incident 4711 \
                 (until unlocked)"
                    .to_owned()
            )
        );
        assert_eq!(
            why(true, AUTO, Some(&lock()), None, running).map(|w| w.sentence()),
            Some("behind deployment 880001, running since 1970-01-01 00:00:01 UTC".to_owned())
        );
        assert_eq!(why(true, AUTO, Some(&lock()), None, None), None);
        assert_eq!(why(false, AUTO, None, None, None), None);
        assert_eq!(
            why(true, AUTO, None, None, Some((880_001, Some(1_000), true))).map(|w| w.sentence()),
            Some("behind deployment 880001, verifying since 1970-01-01 00:00:01 UTC".to_owned())
        );
        let until = Lock {
            until: Some(3_600_000),
            ..lock()
        };
        let sentence = why(false, AUTO, Some(&until), None, None)
            .unwrap()
            .sentence();
        assert!(
            sentence.ends_with("(until 1970-01-01 01:00:00 UTC)"),
            "{sentence}"
        );
    }

    #[test]
    fn a_window_or_freeze_is_named_after_a_lock_and_before_the_deploy_running_ahead() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let until = "2027-01-04T08:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .to_zoned(paris);
        let frozen = Hold::Frozen {
            until,
            reason: "holidays".into(),
        };
        let running = Some((880_001, Some(1_000), false));
        assert_eq!(
            why(false, AUTO, None, Some(&frozen), running).map(|w| w.sentence()),
            Some("frozen until 2027-01-04 09:00 Europe/Paris: holidays".to_owned())
        );
        assert!(matches!(
            why(false, AUTO, Some(&lock()), Some(&frozen), running),
            Some(Waiting::Locked(_))
        ));
        // A rollback passes the freeze and waits only for the deploy ahead.
        assert!(matches!(
            why(true, Clearance::Urgent, None, Some(&frozen), running),
            Some(Waiting::Behind { .. })
        ));
        let closed = Hold::Closed { opens: None };
        assert_eq!(
            why(false, Clearance::Deliberate, None, Some(&closed), None),
            None
        );
    }
}
