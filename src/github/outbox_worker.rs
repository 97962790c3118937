//! The outbox worker: sends the GitHub calls queued in the outbox (deployments to create,
//! statuses to post), a few at a time, one at a time per ordering key. A call that fails
//! for a reason that may pass (5xx, no answer, rate limit) is retried with exponential
//! backoff, or after the wait GitHub asked for, until it is older than the configured
//! maximum age; a call GitHub refuses (401, 404, 409, 422…) is logged and given up.
//! Reads of a commit's checks go the same way; what they read is recorded with the call's
//! completion, in one transaction, and settles the merges that wait on the commit.
//! Notifications too, in lanes of their own ([`notifications`]): an event is fanned out to
//! its receivers, and each message is retried like a call, never holding up GitHub's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{EnvironmentConfig, OutboxConfig};
use crate::github::{GitHubClient, GitHubError};
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::model::{CheckResult, DeploymentId, RepoName};
use crate::notify::Notifier;
use crate::store::outbox::{self, Call, Item};
use crate::store::{Store, StoreError, now_ms};
use crate::store::{merges, waits};
use lines::{describe, log_created};

/// Calls in flight at once, across ordering keys.
const CONCURRENCY: usize = 8;
/// The longest an outage of GitHub pauses an installation's calls between two probes.
const MAX_OUTAGE_PAUSE: Duration = Duration::from_secs(30);
/// The longest the worker sleeps without looking at the table.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// Sends the outbox's calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboxWorker {
    store: Store,
    github: GitHubClient,
    config: OutboxConfig,
    wake: Arc<Notify>,
    /// Set while [`OutboxWorker::run`] loops: what `/readyz` reports.
    alive: Liveness,
    /// Counts the waits that a read of checks ended.
    metrics: Option<Arc<Metrics>>,
    /// Sends notifications; `None`: events are dropped when they come up.
    notifier: Option<Notifier>,
    /// Their `paths` decide whether a merge's deployment is created ([`paths`]).
    environments: Arc<[EnvironmentConfig]>,
}

mod changelog;
mod lines;
mod notifications;
mod paths;
mod replies;
mod tags;

/// What a call brought back that must be recorded with its completion.
enum Sent {
    Done,
    Checks(Vec<CheckResult>),
    /// Not created: the merge changed no file its environment's `paths` match (why).
    Skipped(String),
    /// A release's tag names this commit: its deployment is queued next.
    Resolved(crate::model::CommitSha),
    /// What a deployment deploys, read from the compare API.
    Changelog(crate::model::Changelog),
}

impl OutboxWorker {
    pub fn new(store: Store, github: GitHubClient, config: OutboxConfig) -> Self {
        Self {
            store,
            github,
            config,
            wake: Arc::new(Notify::new()),
            alive: Liveness::default(),
            metrics: None,
            notifier: None,
            environments: Arc::new([]),
        }
    }

    /// This worker, sending notifications through `notifier`.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// This worker, counting the waits it ends in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, ended: &[waits::Ended]) {
        if let Some(metrics) = &self.metrics {
            for wait in ended {
                metrics.wait_ended(wait.kind, wait.outcome);
            }
        }
    }

    /// Whether the send loop runs.
    pub fn is_alive(&self) -> bool {
        self.alive.is_alive()
    }

    /// Tells the worker new calls were queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sends calls until `stop` is cancelled; then sends what is due and returns once nothing
    /// is due or in flight (the caller bounds how long). Calls waiting out a backoff stay
    /// queued for the next start.
    pub async fn run(self, stop: CancellationToken) {
        let _alive = self.alive.mark();
        let mut in_flight = JoinSet::new();
        let mut stopping = false;
        loop {
            let room = CONCURRENCY - in_flight.len();
            let taken = if room > 0 {
                self.take_due(room).await
            } else {
                vec![]
            };
            let took_any = !taken.is_empty();
            for item in taken {
                // The key names a repository and an environment: recorded as a string.
                let span =
                    tracing::info_span!("outbox", call = item.id, key = item.ordering_key.as_str());
                in_flight.spawn(self.clone().deliver(item).instrument(span));
            }
            let idle = if took_any {
                Duration::ZERO
            } else if in_flight.len() == CONCURRENCY {
                // Full: only a finished call makes room; what is due can wait for it.
                IDLE_POLL
            } else {
                match self.next_due().await {
                    Some(due) if stopping && in_flight.is_empty() && !due.is_zero() => return,
                    None if stopping && in_flight.is_empty() => return,
                    Some(due) => due,
                    None => IDLE_POLL,
                }
            };
            tokio::select! {
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
                () = stop.cancelled(), if !stopping => stopping = true,
            }
        }
    }

    async fn take_due(&self, limit: usize) -> Vec<Item> {
        let now = now_ms();
        match self
            .store
            .write(move |c| outbox::take_due(c, now, limit))
            .await
        {
            Ok(items) => items,
            Err(err) => {
                tracing::error!("could not read the outbox: {err}");
                vec![]
            }
        }
    }

    /// How long until the next call falls due; `None` when nothing is pending.
    async fn next_due(&self) -> Option<Duration> {
        let now = now_ms();
        match self.store.write(move |c| outbox::next_due(c, now)).await {
            Ok(Some(at)) => {
                let wait = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                Some(wait.min(IDLE_POLL))
            }
            Ok(None) => None,
            Err(err) => {
                tracing::error!("could not read the outbox: {err}");
                Some(IDLE_POLL)
            }
        }
    }

    /// Sends one call and records how it went.
    async fn deliver(self, item: Item) {
        if matches!(item.call, Call::Notify(_) | Call::Notification { .. }) {
            return self.deliver_notification(item).await;
        }
        let result = self.call(&item).await;
        let id = item.id;
        let recorded = match result {
            Ok(Sent::Done) => {
                self.store
                    .write_persistently("a sent call", move |c| outbox::complete(c, id))
                    .await
            }
            Ok(Sent::Checks(results)) => {
                let Call::ReadChecks { repository, sha } = item.call.clone() else {
                    unreachable!("only a read of checks brings checks back");
                };
                let results = Arc::new(results);
                let ended = self
                    .store
                    .write_persistently("the checks read", move |c| {
                        let ended = waits::record_read(c, &repository, &sha, &results, now_ms())?;
                        outbox::complete(c, id)?;
                        Ok(ended)
                    })
                    .await;
                ended.map(|ended| {
                    if ended.iter().any(|e| e.outcome == "passed") {
                        self.wake();
                    }
                    self.count(&ended);
                })
            }
            Ok(Sent::Skipped(why)) => self.record_skipped(&item, why).await,
            Ok(Sent::Resolved(sha)) => self.record_resolved(&item, sha).await,
            Ok(Sent::Changelog(log)) => self.record_changelog(&item, log).await,
            Err(err) => self.reschedule(&item, &err).await,
        };
        if let Err(err) = recorded {
            tracing::error!("could not record the outcome of outbox call {id}: {err}");
        }
    }

    async fn call(&self, item: &Item) -> Result<Sent, GitHubError> {
        let github = match item.installation {
            Some(installation) => self.github.for_installation(Some(installation)),
            // App mode, and a delivery from a repository webhook, which names no
            // installation: the App's installation on the repository makes the call.
            None if self.github.is_app() => {
                self.github
                    .for_repository(&parse_repo(item.call.repository())?)
                    .await?
            }
            None => self.github.clone(),
        };
        match &item.call {
            Call::CreateDeployment {
                repository,
                pull_request,
                request,
            } => {
                let repo = parse_repo(repository)?;
                // An earlier attempt may have created it and lost only the answer (a
                // timeout, a crash): ask before creating it twice.
                if item.attempts > 0
                    && let Some(id) = github.find_deployment(&repo, request).await?
                {
                    tracing::info!(
                        repo = repo.as_ref(),
                        deployment = id.get(),
                        "deployment {id} of {repo}@{} was created by an earlier attempt",
                        request.git_ref.short()
                    );
                    return Ok(Sent::Done);
                }
                if let Some(why) = self.skipped_by_paths(&github, &repo, request).await? {
                    return Ok(Sent::Skipped(why));
                }
                let created = github.create_deployment(&repo, request).await?;
                log_created(&repo, request, *pull_request, &created);
                Ok(Sent::Done)
            }
            Call::DeploymentStatus {
                repository,
                deployment_id,
                request,
            } => {
                let repo = parse_repo(repository)?;
                let deployment = DeploymentId::from(*deployment_id);
                github
                    .create_deployment_status(&repo, deployment, request)
                    .await?;
                tracing::debug!(
                    repo = repo.as_ref(),
                    deployment = deployment.get(),
                    state = request.state.as_str(),
                    "status posted"
                );
                Ok(Sent::Done)
            }
            Call::ReadChecks { repository, sha } => {
                let repo = parse_repo(repository)?;
                let results = github.read_checks(&repo, sha).await?;
                tracing::debug!(
                    repo = repo.as_ref(),
                    sha = sha.as_str(),
                    checks = results.len(),
                    "checks read"
                );
                Ok(Sent::Checks(results))
            }
            Call::React { .. } | Call::Reply { .. } => {
                replies::send(&github, &self.store, &item.call).await?;
                Ok(Sent::Done)
            }
            Call::ResolveTag(deploy) => self.resolve_tag(&github, deploy).await,
            Call::Changelog {
                repository,
                base,
                head,
                ..
            } => {
                let repo = parse_repo(repository)?;
                Ok(Sent::Changelog(github.changelog(&repo, base, head).await?))
            }
            Call::Notify(_) | Call::Notification { .. } => {
                unreachable!("notifications never reach GitHub: `deliver` sends them")
            }
        }
    }

    /// Schedules a retry, or gives up on a call that cannot succeed or is too old.
    async fn reschedule(&self, item: &Item, err: &GitHubError) -> Result<(), StoreError> {
        let id = item.id;
        let what = describe(&item.call);
        let error = err.to_string();
        let age = Duration::from_millis(u64::try_from(now_ms() - item.created_at).unwrap_or(0));
        if err.is_retryable() && age < self.config.max_age {
            let rate_limited = err.retry_after().is_some() || err.is_secondary_rate_limit();
            let wait = match err.retry_after() {
                Some(wait) => wait,
                None if err.is_secondary_rate_limit() => self.secondary_backoff(item.attempts),
                None => self.backoff(item.attempts),
            };
            tracing::warn!(attempt = item.attempts + 1, retry_in = ?wait, "{what} failed, will retry: {error}");
            let now = now_ms();
            let at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            // A rate limit is the client's, not this call's. And when GitHub itself fails
            // (no answer, a 502/503/504), the installation's other calls would fail the same way:
            // one call probes per pause, instead of every waiting call trying in turn,
            // which with thousands waiting kept the writer busy recording failures.
            let pause = if rate_limited {
                Some(at)
            } else if err.is_outage() {
                Some(now + i64::try_from(wait.min(MAX_OUTAGE_PAUSE).as_millis()).unwrap_or(0))
            } else {
                None
            };
            let installation = item.installation;
            self.store
                .write_persistently("a call to retry", move |c| {
                    outbox::retry_at(c, id, at, &error)?;
                    if let Some(until) = pause {
                        outbox::pause_installation(c, installation, until)?;
                    }
                    Ok(())
                })
                .await
        } else {
            let why = if err.is_retryable() {
                format!(
                    "still failing after {}",
                    humantime::format_duration(Duration::from_secs(age.as_secs()))
                )
            } else {
                "GitHub refused it".to_owned()
            };
            let error = match err.hint(self.github.is_app()) {
                Some(hint) => format!("{error} — {hint}"),
                None => error,
            };
            tracing::error!("{what}: {why}, giving up: {error}");
            // A merge whose deployment could not be created may ask again: GitHub's
            // Redeliver button then retries it, instead of meeting "already asked".
            let merge = match &item.call {
                // A promotion (its pull request merged elsewhere) or a tag (#0) recorded no merge.
                Call::CreateDeployment {
                    repository,
                    pull_request,
                    request,
                } if request.payload.get("promoted_from").is_none() && *pull_request != 0 => {
                    Some((
                        repository.clone(),
                        *pull_request,
                        request.environment.clone(),
                    ))
                }
                Call::CreateDeployment { .. } => None,
                Call::DeploymentStatus { .. }
                | Call::ReadChecks { .. }
                | Call::React { .. }
                | Call::Reply { .. }
                | Call::ResolveTag(_)
                | Call::Changelog { .. }
                | Call::Notify(_)
                | Call::Notification { .. } => None,
            };
            // A changelog that cannot be read is recorded as such: nothing to retry by hand.
            if let Call::Changelog { .. } = &item.call {
                return self.changelog_failed(item, &error).await;
            }
            // The merges waiting on a commit whose checks cannot be read learn why, and
            // those past their deadline time out with it.
            // A read is not kept as a failed call: the next poll reads again, and the
            // waits show the error. (Kept, a refused read would add a failed row per wait
            // per poll.)
            let read = match &item.call {
                Call::ReadChecks { repository, sha } => Some((repository.clone(), sha.clone())),
                _ => None,
            };
            // A deployment that waited (for checks, or a soak) and cannot be created ends
            // its wait `given_up`, so that it may be asked for again.
            let creation = match &item.call {
                Call::CreateDeployment {
                    repository,
                    request,
                    ..
                } => Some((repository.clone(), request.clone())),
                _ => None,
            };
            let ended = self
                .store
                .write_persistently("a given-up call", move |c| {
                    let now = now_ms();
                    if let Some((repository, sha)) = &read {
                        outbox::complete(c, id)?;
                        return waits::read_failed(c, repository, sha, &error, now);
                    }
                    outbox::give_up(c, id, &error)?;
                    if let Some((repository, number, environment)) = &merge {
                        merges::forget_merge(c, repository, *number, environment)?;
                    }
                    match &creation {
                        Some((repository, request)) => {
                            waits::creation_given_up(c, repository, request, &error, now)
                        }
                        None => Ok(vec![]),
                    }
                })
                .await?;
            self.count(&ended);
            Ok(())
        }
    }

    /// `secondary_rate_limit` doubled per earlier attempt, at most `max_retry` (but never
    /// below a first wait longer than it).
    fn secondary_backoff(&self, earlier_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(earlier_attempts.min(20));
        let first = self.config.secondary_rate_limit;
        first
            .saturating_mul(factor)
            .min(self.config.max_retry.max(first))
    }

    /// `first_retry` doubled per earlier attempt, at most `max_retry`.
    fn backoff(&self, earlier_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(earlier_attempts.min(20));
        self.config
            .first_retry
            .saturating_mul(factor)
            .min(self.config.max_retry)
    }
}

fn parse_repo(name: &str) -> Result<RepoName, GitHubError> {
    // Stored from a validated `RepoName`; a failure means the row was edited by hand.
    RepoName::parse(name).map_err(|e| GitHubError::Status {
        status: reqwest::StatusCode::BAD_REQUEST,
        message: e.to_string(),
        retry_after: None,
    })
}
