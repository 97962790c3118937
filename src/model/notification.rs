//! What a team is told: a [`Notification`] is one event — a deploy that started or ended, a
//! merge whose checks failed or timed out, an environment locked or unlocked or frozen, a deployment
//! waiting for approval — with what a person needs to know about it. The store queues it in the transaction that decided it;
//! the outbox worker sends it to each receiver configured for its event and environment.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::changelog::{Changelog, TITLES_SHOWN};
use crate::model::deployment::{DeployJob, DeploymentState, NewDeployment};
use crate::model::ids::{CommitSha, DeploymentId, Environment, RepoName};

/// The events a `[[notify]]` table can choose, as the config file and the webhook body
/// spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    DeployStarted,
    DeploySucceeded,
    DeployFailed,
    DeployErrored,
    /// Never run: a newer deployment of the same environment superseded it.
    DeploySuperseded,
    /// A merge waiting for its checks (the CI gate) saw one fail: it will not deploy.
    ChecksFailed,
    /// A merge's checks were still pending at its `checks_timeout`: it will not deploy.
    ChecksTimedOut,
    Locked,
    Unlocked,
    /// A deployment into an environment with `approvals` waits for people to approve it.
    ApprovalRequested,
    /// A freeze of the environment began: only forced deploys and rollbacks run.
    FreezeStarted,
    /// It ended: what it held runs, in its policy's order.
    FreezeEnded,
}

impl NotificationKind {
    /// Every event, in the order the README lists them.
    pub const ALL: [Self; 12] = [
        Self::DeployStarted,
        Self::DeploySucceeded,
        Self::DeployFailed,
        Self::DeployErrored,
        Self::DeploySuperseded,
        Self::ChecksFailed,
        Self::ChecksTimedOut,
        Self::Locked,
        Self::Unlocked,
        Self::ApprovalRequested,
        Self::FreezeStarted,
        Self::FreezeEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeployStarted => "deploy_started",
            Self::DeploySucceeded => "deploy_succeeded",
            Self::DeployFailed => "deploy_failed",
            Self::DeployErrored => "deploy_errored",
            Self::DeploySuperseded => "deploy_superseded",
            Self::ChecksFailed => "checks_failed",
            Self::ChecksTimedOut => "checks_timed_out",
            Self::Locked => "locked",
            Self::Unlocked => "unlocked",
            Self::ApprovalRequested => "approval_requested",
            Self::FreezeStarted => "freeze_started",
            Self::FreezeEnded => "freeze_ended",
        }
    }

    /// The event a deployment status in `state` reports; `None` for `queued`, which is
    /// not news, and for `pending`, whose news ([`Self::ApprovalRequested`]) says more
    /// than a status can and is queued with it.
    pub fn of_deploy(state: DeploymentState) -> Option<Self> {
        match state {
            DeploymentState::Pending | DeploymentState::Queued => None,
            DeploymentState::InProgress => Some(Self::DeployStarted),
            DeploymentState::Success => Some(Self::DeploySucceeded),
            DeploymentState::Failure => Some(Self::DeployFailed),
            DeploymentState::Error => Some(Self::DeployErrored),
            DeploymentState::Inactive => Some(Self::DeploySuperseded),
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event to tell. Every field but `event`, `environment`, `who`, `description` and `at`
/// may be missing: a lock concerns no commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: NotificationKind,
    pub repository: Option<RepoName>,
    pub environment: Environment,
    pub sha: Option<CommitSha>,
    pub deployment: Option<DeploymentId>,
    pub pull_request: Option<u64>,
    /// Who set it in motion: the deployment's `deploy_user` (the merged pull request's
    /// author), or who took the lock.
    pub who: String,
    /// How it went, in a sentence: the status's description, the wait's reason, the
    /// lock's reason.
    pub description: String,
    /// How long the deploy ran, when it ran.
    pub duration_ms: Option<u64>,
    /// The deploy's log.
    pub log_url: Option<String>,
    /// When it happened, in Unix milliseconds.
    pub at: i64,
    /// A rollback's deploy (`"rollback": true` in its payload): told as one, not as a
    /// deploy. Absent from events queued by older releases.
    #[serde(default)]
    pub rollback: bool,
    /// For a rollback, the commit it rolled back from (`rolled_back` of its payload).
    #[serde(default)]
    pub rolled_back: Option<String>,
    /// For a deploy's start and success: what it deploys (see [`ChangelogNote`]).
    #[serde(default)]
    pub changelog: Option<ChangelogNote>,
}

/// What a deploy's notification says of its changelog: read when the event was queued, or
/// only where to read it (a notification never waits for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangelogNote {
    /// Its sentence (`12 commits since 6f1e3c9`); `None` while it is not read yet.
    pub summary: Option<String>,
    /// At most [`TITLES_SHOWN`] titles, then `and N more`.
    pub titles: Vec<String>,
    /// The deployment's page, with the whole list, when the public URL is configured.
    pub url: Option<String>,
}

impl ChangelogNote {
    /// The note of `changelog` (`None`: not read yet) of the deploy whose log is at
    /// `log_url`; `None` when there is nothing to say.
    pub fn new(changelog: Option<&Changelog>, log_url: Option<&str>) -> Option<Self> {
        let url = log_url.and_then(page_url);
        if changelog.is_none() && url.is_none() {
            return None;
        }
        Some(Self {
            summary: changelog.map(Changelog::summary),
            titles: changelog.map_or_else(Vec::new, |log| log.titles(TITLES_SHOWN)),
            url,
        })
    }
}

/// The deployment's page from its log's link: `https://host/deployments/7/log?token=…`
/// gives `https://host/deployments/7`.
pub fn page_url(log_url: &str) -> Option<String> {
    let (page, _) = log_url.rsplit_once("/log")?;
    page.contains("/deployments/").then(|| page.to_owned())
}

impl Notification {
    /// A deploy's status `state`, described by `description`; `None` for `queued`.
    /// `duration_ms`: how long it ran, if it ran.
    pub fn of_deploy(
        job: &DeployJob,
        state: DeploymentState,
        description: &str,
        duration_ms: Option<u64>,
        now: i64,
    ) -> Option<Self> {
        let event = NotificationKind::of_deploy(state)?;
        let ran = !matches!(state, DeploymentState::Inactive);
        let mut told = Self::about_job(event, job, description.to_owned(), now);
        told.duration_ms = duration_ms;
        told.log_url = job.log_url.clone().filter(|_| ran);
        Some(told)
    }

    /// `event` about `job`, with no duration and no log.
    fn about_job(event: NotificationKind, job: &DeployJob, description: String, now: i64) -> Self {
        let payload = serde_json::from_str::<serde_json::Value>(&job.payload).ok();
        let payload = payload.as_ref();
        Self {
            rollback: payload.is_some_and(super::rollback::is_rollback),
            rolled_back: payload.and_then(super::rollback::rolled_back),
            event,
            repository: Some(job.repo.clone()),
            environment: job.environment.clone(),
            sha: Some(job.sha.clone()),
            deployment: Some(job.id),
            pull_request: payload_number(&job.payload, "pull_request"),
            who: job.deploy_user.clone(),
            description,
            duration_ms: None,
            log_url: None,
            at: now,
            changelog: None,
        }
    }

    /// `job` waits for approval: `waiting_for` says by whom (the rule's sentence), and the
    /// description adds until when (`deadline`, Unix milliseconds). `who` is the change's
    /// author, as for its deploy.
    pub fn approval_requested(job: &DeployJob, waiting_for: &str, deadline: i64, now: i64) -> Self {
        let description = match rfc3339(deadline) {
            Some(until) => format!("{waiting_for}, until {until}"),
            None => waiting_for.to_owned(),
        };
        // It has not run: there is no log to read yet.
        Self::about_job(NotificationKind::ApprovalRequested, job, description, now)
    }

    /// A merge's wait for its checks ended `outcome` (`failed`, `timed_out`) because of
    /// `reason`; `None` for the other outcomes, which are not news (`passed` shows up as
    /// the deploy that follows).
    pub fn checks_ended(
        new: &NewDeployment,
        outcome: &str,
        reason: &str,
        now: i64,
    ) -> Option<Self> {
        let event = match outcome {
            "failed" => NotificationKind::ChecksFailed,
            "timed_out" => NotificationKind::ChecksTimedOut,
            _ => return None,
        };
        let request = &new.request;
        let who = request
            .payload
            .get("deploy_user")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("unknown");
        Some(Self {
            event,
            repository: Some(new.repo.clone()),
            environment: request.environment.clone(),
            sha: Some(request.git_ref.clone()),
            deployment: None,
            pull_request: (new.pull_request != 0).then_some(new.pull_request),
            who: who.to_owned(),
            description: reason.to_owned(),
            duration_ms: None,
            log_url: None,
            at: now,
            rollback: false,
            rolled_back: None,
            changelog: None,
        })
    }

    /// `who` locked `environment` because of `reason`, until `until` (Unix milliseconds)
    /// or until unlocked.
    pub fn locked(
        environment: &Environment,
        who: &str,
        reason: &str,
        until: Option<i64>,
        now: i64,
    ) -> Self {
        let mut description = reason.trim().to_owned();
        if let Some(until) = until.and_then(rfc3339) {
            if !description.is_empty() {
                description.push_str(" — ");
            }
            description.push_str(&format!("until {until}"));
        }
        Self::about_environment(NotificationKind::Locked, environment, who, description, now)
    }

    /// `who` lifted the lock on `environment`.
    pub fn unlocked(environment: &Environment, who: &str, now: i64) -> Self {
        let description = "automatic deploys run again".to_owned();
        Self::about_environment(
            NotificationKind::Unlocked,
            environment,
            who,
            description,
            now,
        )
    }

    /// A freeze of `environment` started (`started`) or ended; `description` says why and
    /// until when (`frozen until 2027-01-04 09:00 Europe/Paris: holidays`).
    pub fn freeze(environment: &Environment, started: bool, description: String, now: i64) -> Self {
        let event = if started {
            NotificationKind::FreezeStarted
        } else {
            NotificationKind::FreezeEnded
        };
        Self::about_environment(event, environment, "deployhook", description, now)
    }

    fn about_environment(
        event: NotificationKind,
        environment: &Environment,
        who: &str,
        description: String,
        now: i64,
    ) -> Self {
        Self {
            event,
            repository: None,
            environment: environment.clone(),
            sha: None,
            deployment: None,
            pull_request: None,
            who: who.to_owned(),
            description,
            duration_ms: None,
            log_url: None,
            at: now,
            rollback: false,
            rolled_back: None,
            changelog: None,
        }
    }
}

/// Unix milliseconds as RFC 3339 (UTC, to the millisecond); `None` before 1970.
pub fn rfc3339(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Some(humantime::format_rfc3339_millis(time).to_string())
}

/// A number in a deployment's JSON payload.
fn payload_number(payload: &str, key: &str) -> Option<u64> {
    let payload: serde_json::Value = serde_json::from_str(payload).ok()?;
    payload.get(key)?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> DeployJob {
        DeployJob {
            id: DeploymentId::from(880_001),
            repo: RepoName::parse("acme/widgets").unwrap(),
            environment: Environment::parse("production").unwrap(),
            sha: CommitSha::parse("6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b").unwrap(),
            git_ref: "main".into(),
            task: "deploy".into(),
            deploy_user: "octocat".into(),
            payload: r#"{"pull_request": 42}"#.into(),
            environment_url: None,
            log_url: Some("https://deploy.example.com/deployments/880001/log?token=t".into()),
            installation: None,
        }
    }

    #[test]
    fn each_final_state_of_a_deploy_is_its_own_event_and_queued_is_none() {
        let events: Vec<Option<&str>> = [
            DeploymentState::Pending,
            DeploymentState::Queued,
            DeploymentState::InProgress,
            DeploymentState::Success,
            DeploymentState::Failure,
            DeploymentState::Error,
            DeploymentState::Inactive,
        ]
        .into_iter()
        .map(|s| NotificationKind::of_deploy(s).map(NotificationKind::as_str))
        .collect();
        assert_eq!(
            events,
            [
                None,
                None,
                Some("deploy_started"),
                Some("deploy_succeeded"),
                Some("deploy_failed"),
                Some("deploy_errored"),
                Some("deploy_superseded"),
            ]
        );
    }

    #[test]
    fn a_deploy_event_carries_the_pull_request_and_a_superseded_one_no_log() {
        let failed =
            Notification::of_deploy(&job(), DeploymentState::Failure, "exit 3", Some(2_000), 5)
                .unwrap();
        assert_eq!(failed.pull_request, Some(42));
        assert_eq!(failed.who, "octocat");
        assert!(failed.log_url.is_some());
        let superseded =
            Notification::of_deploy(&job(), DeploymentState::Inactive, "superseded", None, 5)
                .unwrap();
        assert_eq!(superseded.log_url, None, "it never ran: there is no log");
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["event"], "deploy_failed");
        assert_eq!(
            serde_json::from_value::<Notification>(json).unwrap(),
            failed
        );
    }

    #[test]
    fn an_approval_request_says_by_whom_and_until_when_and_has_no_log() {
        let asked = Notification::approval_requested(
            &job(),
            "waiting for approval by octocat, @acme/sre",
            4 * 3_600_000,
            0,
        );
        assert_eq!(asked.event, NotificationKind::ApprovalRequested);
        assert_eq!(
            asked.description,
            "waiting for approval by octocat, @acme/sre, until 1970-01-01T04:00:00.000Z"
        );
        assert_eq!(asked.who, "octocat");
        assert_eq!(asked.pull_request, Some(42));
        assert_eq!(asked.log_url, None);
        let json = serde_json::to_value(&asked).unwrap();
        assert_eq!(json["event"], "approval_requested");
    }

    #[test]
    fn a_lock_says_why_and_until_when() {
        let production = Environment::parse("production").unwrap();
        let lock = Notification::locked(&production, "alice", "incident 42", Some(0), 0);
        assert_eq!(
            lock.description,
            "incident 42 — until 1970-01-01T00:00:00.000Z"
        );
        assert_eq!(lock.repository, None);
        let unlock = Notification::unlocked(&production, "alice", 0);
        assert_eq!(unlock.event, NotificationKind::Unlocked);
        assert_eq!(unlock.description, "automatic deploys run again");
    }
}
