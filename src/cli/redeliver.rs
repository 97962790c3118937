//! `deployhook redeliver`: catch up after downtime. GitHub never redelivers by itself what
//! a server missed, but it keeps each hook's recent deliveries: this lists them through the
//! REST API, picks those that failed and that deployhook never recorded, and asks GitHub to
//! send them again. A dry run by default (`--apply` acts); safe to repeat, since a
//! redelivery deployhook already has is a duplicate it ignores.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::cli::RedeliverArgs;
use crate::cli::terminal::{field, outln};
use crate::github::hooks::{Attempt, Hook};
use crate::model::DatabaseLocation;
use crate::store;

/// The command.
pub async fn run(args: RedeliverArgs) -> anyhow::Result<ExitCode> {
    // Before asking GitHub anything: a setting that cannot work is said at once.
    let database = DatabaseLocation::parse(&args.database)?;
    let hook = match (&args.repo, &args.org, args.hook_id) {
        (Some(repo), _, Some(id)) => Hook::Repository {
            repo: super::repository(repo)?,
            id,
        },
        (None, Some(org), Some(id)) => Hook::Organization {
            org: org.clone(),
            id,
        },
        _ => Hook::App,
    };
    let github = super::github(&args.github)?;
    anyhow::ensure!(
        !github.is_app() || matches!(hook, Hook::App),
        "with GitHub App credentials, redeliver reads the App's own webhook: use --app (or \
         GITHUB_TOKEN with admin access to the repository's or organisation's webhook)"
    );
    let attempts = github
        .hook_deliveries(&hook, cutoff(args.since))
        .await
        .context("could not list the hook's deliveries")?;
    let seen = attempts.len();
    let guids: Vec<String> = attempts.iter().map(|a| a.guid.clone()).collect();
    let hook_id = hook.id();
    let recorded: std::collections::HashSet<String> =
        store::read_beside(database.expose_secret(), move |c| {
            let mut recorded = std::collections::HashSet::new();
            for guid in guids {
                if store::deliveries::is_recorded(c, &guid, hook_id)? {
                    recorded.insert(guid);
                }
            }
            Ok(recorded)
        })
        .await
        .context("could not read deployhook's database")?;
    let plan = plan(attempts, &recorded);
    outln!(
        "{seen} delivery attempts since {}: {} delivered, {} recorded by deployhook though \
         GitHub saw them fail, {} to redeliver",
        humantime::format_duration(args.since),
        plan.delivered,
        plan.recorded,
        plan.redeliver.len()
    );
    for attempt in &plan.redeliver {
        let line = describe(attempt);
        if !args.apply {
            outln!("would redeliver {line}");
            continue;
        }
        match github.redeliver(&hook, attempt.id).await {
            Ok(()) => outln!("redelivered {line}"),
            Err(err) => {
                outln!("could not redeliver {line}: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if !args.apply && !plan.redeliver.is_empty() {
        outln!("dry run: pass --apply to redeliver");
    }
    Ok(ExitCode::SUCCESS)
}

/// What to do about the deliveries of a period.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The latest failed attempt of each delivery to send again, oldest first.
    pub redeliver: Vec<Attempt>,
    /// Deliveries that reached deployhook (an attempt succeeded).
    pub delivered: usize,
    /// Deliveries whose attempts all failed, but that deployhook recorded anyway (it
    /// answered too late for GitHub, say).
    pub recorded: usize,
}

/// Decides which deliveries to send again: those whose every attempt failed and that
/// `recorded` (deployhook's database) does not know.
pub fn plan(attempts: Vec<Attempt>, recorded: &std::collections::HashSet<String>) -> Plan {
    let mut by_guid: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
    for attempt in attempts {
        by_guid
            .entry(attempt.guid.clone())
            .or_default()
            .push(attempt);
    }
    let mut plan = Plan::default();
    for (guid, attempts) in by_guid {
        if attempts.iter().any(Attempt::succeeded) {
            plan.delivered += 1;
        } else if recorded.contains(&guid) {
            plan.recorded += 1;
        } else if let Some(latest) = attempts.into_iter().max_by_key(|a| a.id) {
            plan.redeliver.push(latest);
        }
    }
    plan.redeliver.sort_by_key(|a| a.id);
    plan
}

/// One line about an attempt, for the command's output.
pub fn describe(attempt: &Attempt) -> String {
    let action = attempt
        .action
        .as_deref()
        .map(|a| format!(".{}", field(a)))
        .unwrap_or_default();
    let status = if attempt.status.is_empty() {
        format!("status {}", attempt.status_code)
    } else {
        field(&attempt.status).into_owned()
    };
    format!(
        "{} {}{action} delivered_at {} ({status}), attempt {}",
        field(&attempt.guid),
        field(&attempt.event),
        field(&attempt.delivered_at),
        attempt.id
    )
}

/// `now - since`, for `--since 2h`.
pub fn cutoff(since: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(since)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: u64, guid: &str, status_code: u16) -> Attempt {
        Attempt {
            id,
            guid: guid.to_owned(),
            delivered_at: "2026-11-26T10:00:00Z".to_owned(),
            redelivery: false,
            status: String::new(),
            status_code,
            event: "pull_request".to_owned(),
            action: Some("closed".to_owned()),
        }
    }

    #[test]
    fn only_failed_and_unrecorded_deliveries_are_redelivered_once_each() {
        let attempts = vec![
            attempt(1, "ok", 202),
            attempt(2, "failed", 0),
            attempt(3, "recorded", 503),
            attempt(4, "twice", 502),
            attempt(5, "twice", 0),
            attempt(6, "failed-then-ok", 0),
            attempt(7, "failed-then-ok", 200),
        ];
        let recorded = ["recorded".to_owned()].into();
        let plan = plan(attempts, &recorded);
        let ids: Vec<u64> = plan.redeliver.iter().map(|a| a.id).collect();
        assert_eq!(ids, [2, 5], "the latest attempt of each failed delivery");
        assert_eq!((plan.delivered, plan.recorded), (2, 1));
    }
}
