//! Verification after a deploy: once the `deploy` task's command succeeded in an
//! environment with `verify`, the job is `verifying` (see `store::jobs::verify`) and this
//! runs its check every `interval` until it has passed for `hold_for` without a failure
//! (then `success`), or until `timeout` from the start (then `failure`, saying what failed
//! last). A failure resets the hold clock: a flapping service never holds. With
//! `on_verify_failure = "rollback"` the failure also rolls back to the last verified
//! success, through the same decision and record as `deployhook rollback` (a
//! [`RollBackOnFailure`] the web layer supplies), in the transaction that records the
//! failure. A rollback's own verification never rolls back again.
//!
//! A verification stopped by shutdown or a lost lead records nothing: the job stays
//! `verifying`, and the next start (or leader) resumes it, its timeout still counted from
//! the stored start, its hold clock restarted (nobody watched the check meanwhile).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::verify::{OnVerifyFailure, VerifyConfig};
use crate::config::{EnvironmentConfig, find_environment};
use crate::deploy::check::{self, Checked};
use crate::deploy::log::{LogSender, LogWriter};
use crate::deploy::runner::is_rollback;
use crate::deploy::worker::DeployWorker;
use crate::model::{DeployJob, DeploymentState, text};
use crate::store::jobs;
use crate::store::logs::{self, LogLine, Stream};
use crate::store::{StoreError, now_ms};

/// How a verification ended, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Held(String),
    Failed(String),
}

impl DeployWorker {
    /// Takes over the jobs being verified when the previous process (or leader) stopped,
    /// and verifies them on: their timeout counts from when they began, so one whose time
    /// ran out meanwhile is judged failed at once.
    pub(crate) async fn resume_verifications(&self) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        let verifying = self
            .store
            .write(move |c| jobs::verify::take_over(c, &owner))
            .await?;
        for found in verifying {
            let job = found.claimed.job;
            tracing::info!(
                deployment = job.id.get(),
                "resuming the verification of deploy {} left by the previous deployhook",
                job.id
            );
            let span = tracing::info_span!(
                "verify",
                deployment = job.id.get(),
                repo = job.repo.as_ref(),
                environment = job.environment.as_ref(),
            );
            let worker = self.clone();
            self.running.spawn(
                async move {
                    let environments = worker.environments.clone();
                    match find_environment(&environments, job.environment.as_ref()) {
                        Some(environment) if environment.verify.is_some() => {
                            worker
                                .verify(job, environment, found.started_at, None)
                                .await;
                        }
                        // Its verification was removed from the configuration since: what
                        // ran succeeded, and nothing is left to check.
                        _ => worker.verification_dropped(job).await,
                    }
                }
                .instrument(span),
            );
        }
        Ok(())
    }

    /// Verifies `job`, `verifying` since `started_at` (Unix ms), to its end — or until this
    /// worker stops verifying (shutdown, a lost lead), leaving the job to be resumed.
    /// `ran`: how long its command ran, when this process ran it (for the metrics).
    pub(crate) async fn verify(
        &self,
        job: DeployJob,
        environment: &EnvironmentConfig,
        started_at: i64,
        ran: Option<Duration>,
    ) {
        let Some(verify) = environment.verify.clone() else {
            return;
        };
        let stop = self.verify_stop();
        let (writer, log) = LogWriter::resume(
            self.store.clone(),
            self.logs.clone(),
            job.id,
            environment.log_limit,
        )
        .await;
        let verdict = self
            .check_until_verdict(&job, environment, &verify, started_at, &stop, &log)
            .await;
        drop(log);
        writer.finish().await;
        let Some(verdict) = verdict else {
            tracing::info!("verification stopped; the next leader or start resumes it");
            return;
        };
        self.record_verdict(job, &verify, verdict, ran).await;
    }

    async fn check_until_verdict(
        &self,
        job: &DeployJob,
        environment: &EnvironmentConfig,
        verify: &VerifyConfig,
        started_at: i64,
        stop: &CancellationToken,
        log: &LogSender,
    ) -> Option<Verdict> {
        let timeout_ms = i64::try_from(verify.timeout.as_millis()).unwrap_or(i64::MAX);
        let hold_ms = i64::try_from(verify.hold_for.as_millis()).unwrap_or(i64::MAX);
        let deadline = started_at.saturating_add(timeout_ms);
        let what = verify.check.what();
        let line = format!(
            "verify: {what} every {}, until it holds {} (timeout {})",
            humantime::format_duration(verify.interval),
            humantime::format_duration(verify.hold_for),
            humantime::format_duration(verify.timeout)
        );
        log.line(Stream::Deployhook, &line).await;
        let mut held_since: Option<i64> = None;
        let mut last_failure: Option<String> = None;
        let mut checks = 0_u32;
        loop {
            let began = now_ms();
            if began >= deadline {
                return Some(self.timed_out(verify, checks, last_failure, log).await);
            }
            checks += 1;
            let budget = Duration::from_millis(u64::try_from(deadline - began).unwrap_or(0));
            let checked = check::run(
                &verify.check,
                &self.http,
                environment,
                job,
                verify.interval,
                budget,
                stop,
                &self.hurry_token(),
                log,
            )
            .await;
            let now = now_ms();
            match checked {
                Checked::Stopped => return None,
                Checked::Passed(saw) => {
                    let since = *held_since.get_or_insert(began);
                    if since == began {
                        self.record_hold(job, Some(since)).await;
                    }
                    let held = now - since;
                    if held >= hold_ms {
                        let line = format!("verify: passed: {saw}; held {}", ms_text(held));
                        log.line(Stream::Deployhook, &line).await;
                        return Some(Verdict::Held(saw));
                    }
                    let line = format!(
                        "verify: passing: {saw} (held {} of {})",
                        ms_text(held),
                        humantime::format_duration(verify.hold_for)
                    );
                    log.line(Stream::Deployhook, &line).await;
                }
                Checked::Failed(why) => {
                    let line = if held_since.take().is_some() {
                        self.record_hold(job, None).await;
                        format!("verify: failing: {why} (the hold starts over)")
                    } else {
                        format!("verify: failing: {why}")
                    };
                    log.line(Stream::Deployhook, &line).await;
                    last_failure = Some(why);
                }
            }
            let next = began
                .saturating_add(i64::try_from(verify.interval.as_millis()).unwrap_or(i64::MAX));
            let wait =
                Duration::from_millis(u64::try_from(next.min(deadline) - now_ms()).unwrap_or(0));
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn timed_out(
        &self,
        verify: &VerifyConfig,
        checks: u32,
        last_failure: Option<String>,
        log: &LogSender,
    ) -> Verdict {
        let why = match last_failure {
            Some(failed) => format!("verification failed: {failed}"),
            None if checks == 0 => format!(
                "verification timed out: its {} ran out while deployhook was stopped",
                humantime::format_duration(verify.timeout)
            ),
            None => format!(
                "verification failed: {} did not hold {} within {}",
                verify.check.what(),
                humantime::format_duration(verify.hold_for),
                humantime::format_duration(verify.timeout)
            ),
        };
        log.line(Stream::Deployhook, &why).await;
        Verdict::Failed(why)
    }

    /// Ends the verification of `job` whose environment no longer verifies (the
    /// configuration changed during a restart): its command succeeded, nothing is left to
    /// check.
    pub(crate) async fn verification_dropped(&self, job: DeployJob) {
        let (owner, now, counted) = (self.owner.clone(), now_ms(), job.clone());
        let description = format!(
            "deployed {}; not verified: its environment no longer has `verify`",
            job.sha.short()
        );
        let ended = self
            .store
            .write_persistently("the end of the verification", move |c| {
                jobs::verify::finish(c, &job, &owner, DeploymentState::Success, now, |_| {
                    Ok(text::description(&description))
                })
            })
            .await;
        match ended {
            Ok(true) => self.count_end(&counted, DeploymentState::Success, None),
            Ok(false) => {}
            Err(err) => tracing::error!("could not record the end of the verification: {err}"),
        }
        self.after_end();
    }

    async fn record_hold(&self, job: &DeployJob, since: Option<i64>) {
        let (job, owner) = (job.clone(), self.owner.clone());
        let recorded = self
            .store
            .write(move |c| jobs::verify::record_hold(c, &job, &owner, since))
            .await;
        if let Err(err) = recorded {
            tracing::warn!("could not record the verification's hold: {err}");
        }
    }

    /// Records the end of the verification, with its rollback if the environment asks
    /// for one (and the job is not itself a rollback).
    async fn record_verdict(
        &self,
        job: DeployJob,
        verify: &VerifyConfig,
        verdict: Verdict,
        ran: Option<Duration>,
    ) {
        let (state, why) = match verdict {
            Verdict::Held(_) => (DeploymentState::Success, None),
            Verdict::Failed(why) => (DeploymentState::Failure, Some(why)),
        };
        let rollback = match (&why, verify.on_failure) {
            (Some(_), OnVerifyFailure::Rollback) if is_rollback(&job) => Plan::NotAgain,
            (Some(_), OnVerifyFailure::Rollback) => match &self.rollback {
                Some(hook) => Plan::RollBack(hook.clone()),
                None => Plan::None,
            },
            _ => Plan::None,
        };
        let success = format!(
            "deployed {} and verified: {}",
            job.sha.short(),
            verify.check.what()
        );
        let now = now_ms();
        let owner = self.owner.clone();
        let reported = job.clone();
        let ended = self
            .store
            .write_persistently("the end of the verification", move |c| {
                jobs::verify::finish(c, &reported, &owner, state, now, |c| {
                    let description = match why.clone() {
                        None => text::description(&success),
                        Some(why) => {
                            let rolled = match rollback.clone() {
                                Plan::None => String::new(),
                                Plan::NotAgain => "; not rolled back (this is a rollback)".into(),
                                Plan::RollBack(hook) => match hook.roll_back(c, &reported, now)? {
                                    Ok(to) => format!("; rolled back to {to}"),
                                    Err(_) => "; nothing earlier to roll back to".into(),
                                },
                            };
                            text::description_ending(&why, &rolled)
                        }
                    };
                    // The log's last line, in the transaction that ends the job: a reader
                    // that sees it finished has read how it ended.
                    let line = LogLine {
                        seq: logs::next_seq(c, reported.id)?,
                        at: now,
                        stream: Stream::Deployhook,
                        text: format!("{}: {description}", state.as_str()),
                    };
                    logs::append(c, reported.id, &[line], None)?;
                    Ok(description)
                })
            })
            .await;
        match ended {
            Ok(true) => {
                tracing::info!(state = state.as_str(), "verification ended");
                self.count_end(&job, state, ran);
            }
            Ok(false) => tracing::warn!(
                "the end of this verification was not recorded: another replica took it over"
            ),
            Err(err) => tracing::error!("could not record the end of the verification: {err}"),
        }
        self.after_end();
    }
}

/// What a failed verification does besides reporting.
#[derive(Clone)]
enum Plan {
    None,
    /// The job is itself a rollback: rolling back from it could loop.
    NotAgain,
    RollBack(std::sync::Arc<dyn crate::deploy::on_failure::RollBackOnFailure>),
}

fn ms_text(ms: i64) -> String {
    let tenths = u64::try_from(ms / 100).unwrap_or(0);
    format!("{}.{}s", tenths / 10, tenths % 10)
}
