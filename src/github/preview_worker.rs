//! The preview worker: the backstop for a `closed` delivery that never came (the server was
//! down, the hook failed). Every `preview_check` (the shortest of the preview environments')
//! it asks GitHub whether the pull requests with a live or waiting preview are still open,
//! a bounded batch at a time, and closes the previews of those that are not — through the
//! same [`crate::store::previews::apply`] a `closed` delivery goes through, so their
//! `destroy` runs and waiting previews start. Run beside the gate worker, on the leader
//! only. Each read has a deadline; one that fails is tried again next round.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{EnvironmentConfig, preview_slots};
use crate::github::GitHubClient;
use crate::github::outbox_worker::OutboxWorker;
use crate::model::{PreviewChange, RepoName};
use crate::store::previews::{self, OpenPull};
use crate::store::{Store, now_ms};

/// Pull requests read per round; more wait for the next, which follows at once.
const BATCH: i64 = 20;
/// The longest one read may take, beyond the client's own bound.
const READ_DEADLINE: Duration = Duration::from_secs(40);
/// The longest the worker sleeps without looking at the previews.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// Checks that previews' pull requests are still open. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PreviewWorker {
    store: Store,
    github: GitHubClient,
    environments: Arc<[EnvironmentConfig]>,
    outbox: OutboxWorker,
    every: Duration,
    checks_poll: Duration,
}

impl PreviewWorker {
    /// The worker, or `None` when no environment is a preview environment.
    pub fn new(
        store: Store,
        github: GitHubClient,
        environments: Arc<[EnvironmentConfig]>,
        outbox: OutboxWorker,
        checks_poll: Duration,
    ) -> Option<Self> {
        let every = environments
            .iter()
            .filter_map(|e| e.preview.as_ref().map(|p| p.check_every))
            .min()?;
        Some(Self {
            store,
            github,
            environments,
            outbox,
            every,
            checks_poll,
        })
    }

    /// Checks until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let every_ms = i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX / 2);
        loop {
            let checked = self.check_due(every_ms).await;
            let sleep = if checked >= BATCH {
                Duration::ZERO
            } else {
                match self.store.read(previews::oldest_check).await {
                    Ok(Some(at)) => {
                        let due = at.saturating_add(every_ms).saturating_sub(now_ms());
                        Duration::from_millis(u64::try_from(due).unwrap_or(0)).min(IDLE_POLL)
                    }
                    Ok(None) => IDLE_POLL.min(self.every),
                    Err(err) => {
                        tracing::error!("could not look at the previews: {err}");
                        IDLE_POLL
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One round: reads the pull requests due and closes the previews of those no longer
    /// open; how many it read.
    pub async fn check_due(&self, every_ms: i64) -> i64 {
        let before = now_ms().saturating_sub(every_ms);
        let due = match self
            .store
            .read(move |c| previews::due_for_check(c, before, BATCH))
            .await
        {
            Ok(due) => due,
            Err(err) => {
                tracing::error!("could not look at the previews: {err}");
                return 0;
            }
        };
        let count = i64::try_from(due.len()).unwrap_or(BATCH);
        for pull in due {
            self.check(pull).await;
        }
        count
    }

    async fn check(&self, pull: OpenPull) {
        let Ok(repo) = RepoName::parse(&pull.repository) else {
            return;
        };
        let github = match pull.installation {
            Some(installation) => Ok(self.github.for_installation(Some(installation))),
            None => self.github.for_repository(&repo).await,
        };
        let read = match github {
            Ok(github) => {
                tokio::time::timeout(
                    READ_DEADLINE,
                    github.pull_request_is_open(&repo, pull.pull_request),
                )
                .await
            }
            Err(err) => Ok(Err(err)),
        };
        let open = match read {
            Ok(Ok(open)) => Some(open),
            Ok(Err(err)) => {
                tracing::warn!(
                    repo = repo.as_ref(),
                    pull_request = pull.pull_request,
                    "could not read whether pull request #{} is open; asking again next round: {err}",
                    pull.pull_request
                );
                None
            }
            Err(_) => {
                tracing::warn!(
                    repo = repo.as_ref(),
                    pull_request = pull.pull_request,
                    "GitHub did not answer in time whether pull request #{} is open",
                    pull.pull_request
                );
                None
            }
        };
        let close = (open == Some(false)).then(|| PreviewChange::Close {
            repo: repo.clone(),
            pull_request: pull.pull_request,
            slots: preview_slots(&self.environments),
        });
        let poll_ms = i64::try_from(self.checks_poll.as_millis()).unwrap_or(i64::MAX / 2);
        let written = self
            .store
            .write(move |c| {
                let now = now_ms();
                previews::checked(c, &pull, now)?;
                match &close {
                    Some(change) => previews::apply(c, std::slice::from_ref(change), poll_ms, now)
                        .map(|a| a.notes),
                    None => Ok(vec![]),
                }
            })
            .await;
        match written {
            Ok(notes) if !notes.is_empty() => {
                tracing::info!(
                    repo = repo.as_ref(),
                    "a preview's pull request closed without its delivery: {}",
                    notes.join("; ")
                );
                self.outbox.wake();
            }
            Ok(_) => {}
            Err(err) => tracing::error!("could not record the previews' check: {err}"),
        }
    }
}
