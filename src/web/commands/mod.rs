//! The command worker: carries out the commands people write in pull-request comments
//! (`store::commands`), one at a time, on the leader. It lives beside the dashboard and
//! the admin API because it is another door people use: it asks the same [`authorize`]
//! (the comment's author, as the signed delivery names them, with their permission read
//! from GitHub), and locks, unlocks, rolls back and approves through the same actions, with
//! their audit lines.
//!
//! For each command: 👀 on the comment at once, then the command, then one reply saying
//! how it went (🚀 or 👎 on the comment). A deploy's reply is edited as its statuses come
//! (see `store::outbox` `news_of_status`). When GitHub cannot be asked, the command is
//! tried again with backoff, and after [`MAX_ATTEMPTS`] answered with why.
//!
//! [`authorize`]: crate::web::people::authorize

mod act;
mod deploy;
pub mod wcid;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::model::{AuditEntry, CommandRequest, NewDeployment};
use crate::store::commands::{self, Taken};
use crate::store::{audit, now_ms, outbox};
use crate::web::AppState;

/// Attempts at a command GitHub cannot answer for before it is answered with the failure.
const MAX_ATTEMPTS: u32 = 5;
/// The first wait before a command is tried again; doubled each attempt.
const FIRST_RETRY: Duration = Duration::from_secs(15);
/// How long one command may take, GitHub's answers included: well within the hold
/// (`store::commands::HOLD_MS`), so that no other attempt takes it meanwhile, and so that
/// one command GitHub is slow about holds the others up this long at most.
const ACT_WITHIN: Duration = Duration::from_secs(45);
/// The longest the worker sleeps without looking for commands.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// How a command went: the reply's text, the reaction that ends it, and what it leaves to
/// record with them.
#[derive(Debug)]
pub(super) struct Answer {
    pub text: String,
    /// `None`: the reply will be edited later (a deploy in progress).
    pub reaction: Option<&'static str>,
    /// A deployment to create, with the audit line of the person who asked for it.
    pub deployment: Option<(NewDeployment, AuditEntry)>,
}

impl Answer {
    pub fn done(text: String) -> Self {
        Self {
            text,
            reaction: Some("rocket"),
            deployment: None,
        }
    }

    pub fn refused(text: String) -> Self {
        Self {
            text: format!("👎 {text}"),
            reaction: Some("-1"),
            deployment: None,
        }
    }
}

/// GitHub (or the store) could not answer: try the command again later.
#[derive(Debug)]
pub(super) struct Retry(pub String);

/// Runs the commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CommandWorker {
    state: AppState,
    wake: Arc<Notify>,
}

impl CommandWorker {
    pub fn new(state: AppState) -> Self {
        let wake = state.command_wake.clone();
        Self { state, wake }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Takes and carries out commands until `stop`. A command taken when the server
    /// stopped is taken again after its hold (`store::commands::HOLD_MS`).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let now = now_ms();
            let taken = self
                .state
                .store
                .write(move |c| commands::take_due(c, now))
                .await;
            let sleep = match taken {
                Ok(Some(taken)) => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = self.carry_out(taken) => {}
                    }
                    continue;
                }
                Ok(None) => self.next_due().await,
                Err(err) => {
                    tracing::error!("could not read the commands: {err}");
                    FIRST_RETRY
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn next_due(&self) -> Duration {
        match self.state.store.read(commands::next_due).await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        }
    }

    async fn carry_out(&self, taken: Taken) {
        let request = &taken.request;
        let span = tracing::info_span!(
            "command",
            repo = request.repo.as_ref(),
            pull_request = request.pull_request,
            comment = request.comment_id,
            command = request.command.name(),
            by = request.author.as_str()
        );
        self.carry_out_in_span(&taken).instrument(span).await;
    }

    async fn carry_out_in_span(&self, taken: &Taken) {
        let request = taken.request.clone();
        if taken.attempts == 0 {
            // 👀 at once: the command was seen, whatever comes of it.
            let (repo, comment, installation) = (
                request.repo.to_string(),
                request.comment_id,
                request.installation,
            );
            let reacted = self
                .state
                .store
                .write(move |c| {
                    outbox::enqueue_reaction(c, &repo, comment, "eyes", installation, now_ms())
                })
                .await;
            if let Err(err) = reacted {
                tracing::warn!("could not queue the reaction to a command: {err}");
            }
            self.state.outbox.wake();
        }
        // Within the hold: a command GitHub answers too slowly is put back, not taken twice.
        let acted = tokio::time::timeout(ACT_WITHIN, act::act(&self.state, &request)).await;
        let acted = acted.unwrap_or_else(|_| {
            Err(Retry(format!(
                "GitHub did not answer within {}s",
                ACT_WITHIN.as_secs()
            )))
        });
        let answer = match acted {
            Ok(answer) => answer,
            Err(Retry(why)) if taken.attempts + 1 < MAX_ATTEMPTS => {
                let wait = FIRST_RETRY * 2u32.saturating_pow(taken.attempts);
                tracing::warn!(retry_in = ?wait, "a command waits for GitHub: {why}");
                let (repo, comment) = (request.repo.clone(), request.comment_id);
                let due = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4);
                let put_back = self
                    .state
                    .store
                    .write(move |c| commands::retry_at(c, &repo, comment, due, now_ms()))
                    .await;
                if let Err(err) = put_back {
                    tracing::error!("could not put a command back: {err}");
                }
                return;
            }
            Err(Retry(why)) => Answer::refused(format!(
                "could not do `{}` after {MAX_ATTEMPTS} attempts: {why}",
                request.command.name()
            )),
        };
        if let Err(err) = self.record(&request, answer).await {
            // Taken again after its hold: each step of a command may be repeated.
            tracing::error!("could not record how a command went: {err}");
        }
    }

    /// Records `answer` in one transaction: the deployment it creates, the reply, the
    /// reaction, and the command done.
    async fn record(
        &self,
        request: &CommandRequest,
        answer: Answer,
    ) -> Result<(), crate::store::StoreError> {
        let request = request.clone();
        let outcome = answer.text.clone();
        tracing::info!(outcome = outcome.as_str(), "command done");
        self.state
            .store
            .write(move |c| {
                let now = now_ms();
                let repo = request.repo.as_ref();
                // First: an attempt that lost its hold to another records nothing.
                if !commands::finish(c, &request.repo, request.comment_id, &outcome, now)? {
                    return Ok(());
                }
                if let Some((new, audited)) = &answer.deployment {
                    outbox::enqueue_create_deployment(c, new, now)?;
                    audit::record(c, audited)?;
                }
                outbox::enqueue_reply(
                    c,
                    repo,
                    request.pull_request,
                    request.comment_id,
                    &answer.text,
                    request.installation,
                    now,
                )?;
                if let Some(reaction) = answer.reaction {
                    outbox::enqueue_reaction(
                        c,
                        repo,
                        request.comment_id,
                        reaction,
                        request.installation,
                        now,
                    )?;
                }
                Ok(())
            })
            .await?;
        self.state.outbox.wake();
        Ok(())
    }
}
