//! What the Insights page measures: for each environment, over a window of days, the four
//! DORA measures — deploys per day by outcome, lead time from merge to success, change
//! failure rate, time to restore (automatic rollbacks of failed verifications included,
//! and told apart) — and the recent failed verifications, computed from the deploys that
//! ran.
//!
//! One bounded query reads the deploys that finished in the window (through the
//! `jobs_finished` index, newest rows capped at [`MAX_DEPLOYS`]), each with the time its
//! commit's merge was recorded (through `merges_by_commit`); the measures are computed
//! here, in Rust, from those rows. So the page costs the same however long the history.

use std::collections::{BTreeMap, HashSet};

use crate::store::db::{Connection, params};

/// A day in milliseconds: days are UTC days.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// The most deploys one window reads; past it, the oldest are left out and the page says
/// so (a thousand deploys a day for 90 days).
pub const MAX_DEPLOYS: i64 = 90_000;

/// How a deploy that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    /// The command failed (non-zero exit).
    Failure,
    /// deployhook could not see it through: timed out, interrupted, could not start.
    Error,
}

impl Outcome {
    fn parse(result: &str) -> Option<Self> {
        match result {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// One day's deploys in an environment, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// The day's first millisecond (UTC midnight).
    pub day: i64,
    pub success: u32,
    pub failure: u32,
    pub error: u32,
}

impl DayCounts {
    pub fn total(&self) -> u32 {
        self.success + self.failure + self.error
    }
}

/// A commit's first success in an environment, and how long after its merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadTime {
    /// When the successful deploy finished.
    pub delivered_at: i64,
    /// From when its merge was recorded to then, in milliseconds.
    pub millis: i64,
}

/// A failure and the success that restored its repository in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restore {
    /// When the first failed deploy of the streak finished.
    pub failed_at: i64,
    /// When the next successful deploy finished; `None`: still failing.
    pub restored_at: Option<i64>,
    /// Whether a failed verification rolled back by itself in this streak
    /// (`on_verify_failure = "rollback"`): the restore was automatic.
    pub automatic: bool,
}

/// A verification that failed: the deploy ran, its check after the deploy did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationFailure {
    pub finished_at: i64,
    pub repository: String,
    pub sha: String,
    /// What failed last, and whether it rolled back.
    pub description: String,
}

/// Failed verifications an environment lists at most, newest first.
pub const MAX_VERIFICATION_FAILURES: usize = 20;

/// Whether a failure's description says its verification failed (see `deploy::verify`).
fn is_verification_failure(description: &str) -> bool {
    description.starts_with("verification failed")
        || description.starts_with("verification timed out")
}

/// Whether a failure's description says it rolled back by itself.
fn rolled_back_by_itself(description: &str) -> bool {
    is_verification_failure(description) && description.contains("; rolled back to ")
}

/// The measures of one environment over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentInsights {
    pub environment: String,
    /// One entry per day of the window, oldest first, empty days included.
    pub days: Vec<DayCounts>,
    /// The lead times of the successes whose merge is on record, in the order they
    /// finished.
    pub lead_times: Vec<LeadTime>,
    /// Failures and their restores, in order.
    pub restores: Vec<Restore>,
    /// Failed verifications, newest first, at most [`MAX_VERIFICATION_FAILURES`].
    pub verification_failures: Vec<VerificationFailure>,
    /// All failed verifications in the window (the list above may be cut).
    pub verification_failed: u32,
}

impl EnvironmentInsights {
    pub fn deploys(&self) -> u32 {
        self.days.iter().map(DayCounts::total).sum()
    }

    /// Deploys that failed or errored.
    pub fn failed(&self) -> u32 {
        self.days.iter().map(|d| d.failure + d.error).sum()
    }

    /// Failed deploys per deploy, `None` without deploys.
    pub fn change_failure_rate(&self) -> Option<f64> {
        let deploys = self.deploys();
        (deploys > 0).then(|| f64::from(self.failed()) / f64::from(deploys))
    }

    /// Lead times in milliseconds, ascending.
    pub fn lead_time_values(&self) -> Vec<i64> {
        let mut values: Vec<i64> = self.lead_times.iter().map(|l| l.millis).collect();
        values.sort_unstable();
        values
    }

    /// Restore times (milliseconds) of the failures that were restored, ascending.
    pub fn restore_times(&self) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .restores
            .iter()
            .filter_map(|r| r.restored_at.map(|at| at - r.failed_at))
            .collect();
        times.sort_unstable();
        times
    }

    /// Restores done by an automatic rollback (counted in [`Self::restore_times`] too).
    pub fn automatic_restores(&self) -> usize {
        self.restores
            .iter()
            .filter(|r| r.automatic && r.restored_at.is_some())
            .count()
    }
}

/// Every environment's measures over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insights {
    /// The first millisecond of the window's first day.
    pub since: i64,
    pub until: i64,
    /// Environments with deploys in the window, by name.
    pub environments: Vec<EnvironmentInsights>,
    /// Whether [`MAX_DEPLOYS`] cut the window's oldest deploys off.
    pub truncated: bool,
}

impl Insights {
    /// The measures of `environment`, empty when it has no deploy in the window.
    pub fn of(&self, environment: &str) -> EnvironmentInsights {
        self.environments
            .iter()
            .find(|e| e.environment == environment)
            .cloned()
            .unwrap_or_else(|| EnvironmentInsights {
                environment: environment.to_owned(),
                days: empty_days(self.since, self.until),
                ..EnvironmentInsights::default()
            })
    }
}

/// A deploy that ran, as read.
struct Deploy {
    environment: String,
    repository: String,
    sha: String,
    outcome: Outcome,
    finished_at: i64,
    /// When its commit's merge was first recorded, if it is on record.
    merged_at: Option<i64>,
    /// A failure's description (read for failures only).
    description: Option<String>,
}

/// The measures over the `days` UTC days that end with the one holding `now`.
pub fn insights(conn: &Connection, days: u32, now: i64) -> rusqlite::Result<Insights> {
    insights_of(conn, days, now, |_| true)
}

/// [`insights`] over the deploys of the repositories `readable` accepts (a person's: the
/// page's figures are then theirs alone).
pub fn insights_of(
    conn: &Connection,
    days: u32,
    now: i64,
    readable: impl Fn(&str) -> bool,
) -> rusqlite::Result<Insights> {
    let since = (now.div_euclid(DAY_MS) - i64::from(days.max(1)) + 1) * DAY_MS;
    // Newest first, so the cap drops the oldest; a deploy that never started (refused,
    // superseded) is not a deploy.
    let mut deploys: Vec<Deploy> = conn
        .prepare_cached(
            "SELECT environment, repository, sha, result, finished_at,
                    (SELECT MIN(m.recorded_at) FROM merges AS m
                     WHERE m.repository = jobs.repository AND m.sha = jobs.sha),
                    CASE WHEN result = 'failure' THEN description END
             FROM jobs INDEXED BY jobs_finished
             WHERE state = 'finished' AND finished_at >= ?1 AND finished_at <= ?2
               AND started_at IS NOT NULL AND result IN ('success', 'failure', 'error')
             ORDER BY finished_at DESC LIMIT ?3",
        )?
        .query_map(params![since, now, MAX_DEPLOYS + 1], |row| {
            let result: String = row.get(3)?;
            Ok(Deploy {
                environment: row.get(0)?,
                repository: row.get(1)?,
                sha: row.get(2)?,
                outcome: Outcome::parse(&result).unwrap_or(Outcome::Error),
                finished_at: row.get(4)?,
                merged_at: row.get(5)?,
                description: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let truncated = deploys.len() > usize::try_from(MAX_DEPLOYS).unwrap_or(usize::MAX);
    deploys.truncate(usize::try_from(MAX_DEPLOYS).unwrap_or(usize::MAX));
    deploys.reverse();
    deploys.retain(|d| readable(&d.repository));
    let mut by_environment: BTreeMap<String, Vec<Deploy>> = BTreeMap::new();
    for deploy in deploys {
        by_environment
            .entry(deploy.environment.clone())
            .or_default()
            .push(deploy);
    }
    let environments = by_environment
        .into_iter()
        .map(|(environment, deploys)| measure(environment, &deploys, since, now))
        .collect();
    Ok(Insights {
        since,
        until: now,
        environments,
        truncated,
    })
}

fn empty_days(since: i64, until: i64) -> Vec<DayCounts> {
    (since.div_euclid(DAY_MS)..=until.div_euclid(DAY_MS))
        .map(|day| DayCounts {
            day: day * DAY_MS,
            ..DayCounts::default()
        })
        .collect()
}

/// The measures of one environment's deploys, oldest first.
fn measure(environment: String, deploys: &[Deploy], since: i64, until: i64) -> EnvironmentInsights {
    let mut days = empty_days(since, until);
    let mut lead_times = Vec::new();
    // A commit's lead time is to its first success in the environment: a redeploy of the
    // same commit is not a change reaching it.
    let mut delivered: HashSet<(&str, &str)> = HashSet::new();
    // Per repository: the open failure streak, as an index into `restores`.
    let mut failing: BTreeMap<&str, usize> = BTreeMap::new();
    let mut restores: Vec<Restore> = Vec::new();
    let mut verification_failures = Vec::new();
    for deploy in deploys {
        let description = deploy.description.as_deref().unwrap_or_default();
        if deploy.outcome == Outcome::Failure && is_verification_failure(description) {
            verification_failures.push(VerificationFailure {
                finished_at: deploy.finished_at,
                repository: deploy.repository.clone(),
                sha: deploy.sha.clone(),
                description: description.to_owned(),
            });
        }
        let index = usize::try_from((deploy.finished_at - since).div_euclid(DAY_MS)).unwrap_or(0);
        if let Some(day) = days.get_mut(index) {
            match deploy.outcome {
                Outcome::Success => day.success += 1,
                Outcome::Failure => day.failure += 1,
                Outcome::Error => day.error += 1,
            }
        }
        let repository = deploy.repository.as_str();
        if deploy.outcome == Outcome::Success {
            if let Some(open) = failing.remove(repository) {
                restores[open].restored_at = Some(deploy.finished_at);
            }
            let key = (repository, deploy.sha.as_str());
            if delivered.insert(key)
                && let Some(merged) = deploy.merged_at.filter(|&m| m <= deploy.finished_at)
            {
                lead_times.push(LeadTime {
                    delivered_at: deploy.finished_at,
                    millis: deploy.finished_at - merged,
                });
            }
        } else {
            let open = *failing.entry(repository).or_insert_with(|| {
                restores.push(Restore {
                    failed_at: deploy.finished_at,
                    restored_at: None,
                    automatic: false,
                });
                restores.len() - 1
            });
            restores[open].automatic |= rolled_back_by_itself(description);
        }
    }
    let verification_failed = u32::try_from(verification_failures.len()).unwrap_or(u32::MAX);
    verification_failures.reverse();
    verification_failures.truncate(MAX_VERIFICATION_FAILURES);
    EnvironmentInsights {
        environment,
        days,
        lead_times,
        restores,
        verification_failures,
        verification_failed,
    }
}

/// The `p`-th percentile (0 to 100) of ascending `values`, nearest rank: a value that
/// occurred, never an interpolation between two. `None` when empty.
pub fn percentile(values: &[i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    // Nearest rank: ceil(p/100 × n), 1-based.
    let rank = (usize::try_from(p.min(100)).unwrap_or(100) * n).div_ceil(100);
    Some(values[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests;
