//! The deploy worker: claims queued jobs from the database and runs them — the slow half
//! of the guide's `process_deployment`. At most one job per repository + environment runs
//! at a time, and at most `max_concurrent` in all. Each claim and each finish is one
//! transaction that also queues the status reporting it, so the outbox tells GitHub
//! `in_progress`, then `success`, `failure` or `error`, in that order.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{EnvironmentConfig, find_environment};
use crate::deploy::log::{LogHub, LogLinks, LogWriter};
use crate::deploy::on_failure::RollBackOnFailure;
use crate::deploy::process::{kill_leftover, process_identity};
use crate::deploy::runner::{RunOutcome, RunSpec};
use crate::github::outbox_worker::OutboxWorker;
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::model::{DEPLOY_TASK, DeployJob, DeploymentState, OnInterrupt, Policy};
use crate::store::jobs::{self, Claimed};
use crate::store::locks;
use crate::store::{Store, StoreError, now_ms};

/// The longest the worker sleeps without looking at the queue.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// Runs queued deploys. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeployWorker {
    pub(crate) store: Store,
    pub(crate) environments: Arc<[EnvironmentConfig]>,
    /// Deploys running at once, across repositories and environments.
    max_concurrent: usize,
    outbox: OutboxWorker,
    pub(crate) logs: LogHub,
    metrics: Arc<Metrics>,
    /// Set while [`DeployWorker::run`] loops: what `/readyz` reports.
    alive: Liveness,
    wake: Arc<Notify>,
    pub(crate) running: TaskTracker,
    /// Cancelled when shutdown can wait no longer for running deploys, or when this
    /// replica lost the lead; replaced then, so that deploys run again once it leads again.
    abort: Arc<std::sync::Mutex<CancellationToken>>,
    /// Whether deploy output is copied into the server's log at info level.
    echo_output: bool,
    /// Log links on the listen address, printed when no public URL gives statuses one.
    local_links: Option<LocalLinks>,
    /// The name this server claims jobs under (`jobs.owner`): only it may record their end.
    pub(crate) owner: Arc<str>,
    /// Cancelled with `abort` when there is no time for a grace period: this replica lost
    /// the lead, and another may start the same environment's next deploy.
    hurry: Arc<std::sync::Mutex<CancellationToken>>,
    /// Cancelled (and replaced) when verifications must stop at once: at shutdown and on a
    /// lost lead. A stopped verification records nothing; the job stays `verifying` for
    /// the next start or leader to resume.
    verify_stop: Arc<std::sync::Mutex<CancellationToken>>,
    /// The client of HTTP verification checks.
    pub(crate) http: reqwest::Client,
    /// Records the rollback a failed verification asks for (`on_verify_failure`).
    pub(crate) rollback: Option<Arc<dyn RollBackOnFailure>>,
}

/// Links to deploy logs built on the address the server listens on: for the operator at
/// the server's console when `DEPLOYHOOK_PUBLIC_URL` is not set.
#[derive(Debug, Clone)]
pub struct LocalLinks {
    pub links: LogLinks,
    /// `http://127.0.0.1:4567`, without a trailing slash.
    pub base: String,
}

impl DeployWorker {
    pub fn new(
        store: Store,
        environments: Arc<[EnvironmentConfig]>,
        max_concurrent: usize,
        outbox: OutboxWorker,
        logs: LogHub,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            environments,
            max_concurrent,
            outbox,
            logs,
            metrics,
            alive: Liveness::default(),
            wake: Arc::new(Notify::new()),
            running: TaskTracker::new(),
            abort: Arc::default(),
            echo_output: false,
            local_links: None,
            owner: format!("deployhook-{}", std::process::id()).into(),
            hurry: Arc::default(),
            verify_stop: Arc::default(),
            http: crate::deploy::check::client(),
            rollback: None,
        }
    }

    /// Rolls back with `hook` when a verification fails in an environment that says
    /// `on_verify_failure = "rollback"`.
    #[must_use]
    pub fn with_rollback(mut self, hook: Arc<dyn RollBackOnFailure>) -> Self {
        self.rollback = Some(hook);
        self
    }

    /// The token that stops the verifications running now.
    pub(crate) fn verify_stop(&self) -> CancellationToken {
        self.verify_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn hurry_token(&self) -> CancellationToken {
        self.hurry.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the verifications running now, leaving their jobs `verifying`.
    fn stop_verifying(&self) {
        let mut stop = self.verify_stop.lock().unwrap_or_else(|e| e.into_inner());
        stop.cancel();
        *stop = CancellationToken::new();
    }

    /// Claims jobs as `owner` (this replica's id).
    #[must_use]
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = owner.into();
        self
    }

    /// Copies each deploy's output lines into the server's log at info level.
    #[must_use]
    pub fn with_output_in_server_log(mut self, echo: bool) -> Self {
        self.echo_output = echo;
        self
    }

    /// Prints each deploy's log link on the listen address, for a server without a public
    /// URL.
    #[must_use]
    pub fn with_local_links(mut self, links: Option<LocalLinks>) -> Self {
        self.local_links = links;
        self
    }

    /// How many deploys run now.
    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// Stops the running deploys now (SIGTERM, then SIGKILL), as the shutdown timeout
    /// would: for an operator who will not wait (a second Ctrl-C).
    pub fn stop_running(&self) {
        let mut abort = self.abort.lock().unwrap_or_else(|e| e.into_inner());
        abort.cancel();
        *abort = CancellationToken::new();
    }

    /// SIGKILLs the running deploys' process groups at once (no grace period) and waits
    /// until each has recorded its end (or failed to): for a replica that lost the lead,
    /// before another one may run the same environments.
    pub async fn kill_running_and_wait(&self) {
        self.stop_verifying();
        {
            let mut hurry = self.hurry.lock().unwrap_or_else(|e| e.into_inner());
            hurry.cancel();
            *hurry = CancellationToken::new();
        }
        self.stop_running();
        self.running.close();
        self.running.wait().await;
        self.running.reopen();
    }

    /// Whether the queue loop runs.
    pub fn is_alive(&self) -> bool {
        self.alive.is_alive()
    }

    /// Tells the worker a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// At start, before any job runs: settles the jobs a previous process left running.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        // Their commands may still run, in process groups of their own: stop them first, so
        // the next deploy of the same repository and environment never runs beside one.
        for (deployment, pgid, identity) in self.store.write(jobs::running_processes).await? {
            if kill_leftover(pgid, &identity) {
                tracing::warn!(
                    deployment,
                    pgid,
                    "stopped the command of deploy {deployment}, left running by the previous \
                     deployhook"
                );
            }
        }
        let environments = self.environments.clone();
        let on_interrupt = move |name: &str| {
            find_environment(&environments, name).map_or(OnInterrupt::Error, |e| e.on_interrupt)
        };
        let now = now_ms();
        let count = self
            .store
            .write(move |c| jobs::recover_interrupted(c, on_interrupt, now))
            .await?;
        if count > 0 {
            tracing::warn!(
                "{count} deploy(s) were running when deployhook stopped: reported as error, \
                 or queued again where the environment says on_interrupt = \"retry\""
            );
        }
        self.resume_verifications().await?;
        Ok(count)
    }

    /// Starts jobs as they become runnable, until `stop` is cancelled. Jobs already running
    /// go on; wait for them with [`DeployWorker::finish_running`].
    pub async fn run(self, stop: CancellationToken) {
        let _alive = self.alive.mark();
        loop {
            if let Err(err) = self.start_due().await {
                tracing::error!("could not claim deploys: {err}");
            }
            // A lock that expires releases what waits for it, and so does a window that
            // opens or a freeze that ends: look again then.
            let now = now_ms();
            let lock_expiry: Option<i64> = self
                .store
                .read(move |c| locks::next_expiry(c, now))
                .await
                .unwrap_or_default();
            let idle = [lock_expiry, self.next_schedule_change(now)]
                .into_iter()
                .flatten()
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
                .fold(IDLE_POLL, Duration::min);
            tokio::select! {
                // Stopping wins over a wake-up that came at the same moment.
                biased;
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// When a window of some environment next opens or closes, or a freeze starts or ends
    /// (Unix milliseconds): what held jobs may start then.
    fn next_schedule_change(&self, now: i64) -> Option<i64> {
        let instant = crate::model::window::instant(now);
        self.environments
            .iter()
            .filter_map(|e| e.schedule.next_change(instant))
            .map(|t| t.as_millisecond())
            .min()
    }

    /// Claims the jobs that may start now and starts them in the background; returns how
    /// many started. The seam for driving the queue without the background loop.
    pub async fn start_due(&self) -> Result<usize, StoreError> {
        let max = self.max_concurrent;
        let environments = self.environments.clone();
        let now = now_ms();
        let owner = self.owner.clone();
        let claimed = self
            .store
            .write(move |c| {
                let find = |name: &str| find_environment(&environments, name);
                let policy = |name: &str| find(name).map_or(Policy::Queue, |e| e.policy);
                let instant = crate::model::window::instant(now);
                let hold = |name: &str| find(name).and_then(|e| e.schedule.hold_at(instant));
                let claimed = jobs::claim_with_holds(c, &owner, max, policy, hold, now)?;
                for Claimed { job, .. } in &claimed {
                    let program = find(job.environment.as_ref())
                        .and_then(|e| RunSpec::for_job(e, job))
                        .map_or_else(|| job.task.clone(), |spec| spec.program().to_owned());
                    let running = format!("running {program} for {}", job.sha.short());
                    jobs::report_started(c, job, &running, now)?;
                }
                Ok(claimed)
            })
            .await?;
        if !claimed.is_empty() {
            self.outbox.wake();
        }
        let started = claimed.len();
        for claimed in claimed {
            // From the payload: recorded as strings, quoted and escaped in the text log.
            let span = tracing::info_span!(
                "deploy",
                deployment = claimed.job.id.get(),
                repo = claimed.job.repo.as_ref(),
                environment = claimed.job.environment.as_ref(),
                delivery = claimed.delivery_id.as_str(),
            );
            self.running
                .spawn(self.clone().execute(claimed).instrument(span));
        }
        Ok(started)
    }

    /// Runs one claimed job and records how it ended.
    async fn execute(self, claimed: Claimed) {
        let Claimed {
            job, previous_sha, ..
        } = claimed;
        let environments = self.environments.clone();
        let environment = find_environment(&environments, job.environment.as_ref());
        let Some((mut spec, limit)) =
            environment.and_then(|e| Some((RunSpec::for_job(e, &job)?, e.log_limit)))
        else {
            // Configured when it was queued, gone from the configuration since.
            let outcome = RunOutcome::NotConfigured {
                environment: job.environment.to_string(),
                task: job.task.clone(),
            };
            return self.record_end(job, &outcome).await;
        };
        match (&job.log_url, &self.local_links) {
            (Some(url), _) => tracing::info!("deploy log: {url}"),
            (None, Some(local)) => tracing::info!(
                "deploy log: {}{} (on the listen address: DEPLOYHOOK_PUBLIC_URL is not set, so \
                 GitHub shows no log link)",
                local.base,
                local.links.path(job.id)
            ),
            (None, None) => {}
        }
        spec.echo_output = self.echo_output;
        spec.previous_sha = previous_sha;
        let (writer, log) =
            LogWriter::start(self.store.clone(), self.logs.clone(), job.id, limit).await;
        let (started, pid) = oneshot::channel();
        let record = async {
            let Ok(pid) = pid.await else {
                return; // it never started
            };
            let (id, identity) = (job.id, process_identity(pid));
            let owner = self.owner.clone();
            let recorded = self
                .store
                .write(move |c| jobs::record_process(c, id, &owner, pid, identity.as_deref()))
                .await;
            if let Err(err) = recorded {
                tracing::warn!("could not record the deploy's process: {err}");
            }
        };
        let abort = self.abort.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let hurry = self.hurry.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (outcome, ()) = tokio::join!(spec.run(&job, &abort, &hurry, started, log), record);
        // Every line is stored before the end is: a reader that sees the job finished has
        // seen the whole log.
        writer.finish().await;
        self.record_end(job, &outcome).await;
    }

    /// Records how a job ended and queues the status that reports it.
    async fn record_end(&self, job: DeployJob, outcome: &RunOutcome) {
        let (state, description) = (outcome.state(), outcome.description_for(&job));
        tracing::info!(state = state.as_str(), "deploy ended: {description}");
        let environments = self.environments.clone();
        if state == DeploymentState::Success
            && job.task == DEPLOY_TASK
            && let Some(environment) = find_environment(&environments, job.environment.as_ref())
            && let Some(verify) = &environment.verify
        {
            let (now, owner) = (now_ms(), self.owner.clone());
            let (verified, what) = (job.clone(), verify.verifying());
            let began = self
                .store
                .write_persistently("the start of the verification", move |c| {
                    jobs::verify::begin(c, &verified, &owner, &what, now)
                })
                .await;
            self.outbox.wake();
            match began {
                // Counted in the metrics when the verification ends, as what it ends.
                Ok(true) => self.verify(job, environment, now, outcome.ran()).await,
                Ok(false) => tracing::warn!(
                    "this deploy is not verified here: another replica took the job over"
                ),
                Err(err) => tracing::error!("could not start the verification: {err}"),
            }
            return;
        }
        self.count_end(&job, state, outcome.ran());
        let now = now_ms();
        let owner = self.owner.clone();
        let finished = self
            .store
            .write_persistently("the end of the deploy", move |c| {
                let finished = jobs::finish_run(c, &job, &owner, state, &description, now)?;
                // A preview's destroy closes it, and marks its deployments inactive.
                if finished {
                    crate::store::previews::destroyed(c, &job, state, now)?;
                }
                Ok(finished)
            })
            .await;
        match finished {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "the end of this deploy was not recorded: another replica took the job over                  (this one lost the lead) and reported it"
            ),
            // The job stays `running` in the database; the next start (or leader) reports
            // it as interrupted rather than losing it.
            Err(err) => tracing::error!("could not record the end of the deploy: {err}"),
        }
        self.after_end();
    }

    /// Counts a deploy that ended in `state` (its command having run for `ran`) in the
    /// metrics, with its lead time when it succeeded.
    pub(crate) fn count_end(&self, job: &DeployJob, state: DeploymentState, ran: Option<Duration>) {
        self.metrics
            .deploy_ended(job.environment.as_ref(), state.as_str(), ran);
        if state == DeploymentState::Success
            && let Some(lead_time) = lead_time(&job.payload)
        {
            self.metrics.lead_time(job.environment.as_ref(), lead_time);
        }
    }

    /// After a job's end is recorded: tells log readers, the outbox and the queue.
    pub(crate) fn after_end(&self) {
        self.logs.notify();
        self.outbox.wake();
        self.wake();
    }

    /// At shutdown: waits up to `timeout` for the running deploys, then stops those still
    /// running (SIGTERM, then SIGKILL) and reports them as `error`. Returns whether they all
    /// finished by themselves.
    pub async fn finish_running(&self, timeout: Duration) -> bool {
        // A verification may have minutes to go: it stops now and resumes at the next start.
        self.stop_verifying();
        self.running.close();
        let count = self.running.len();
        if count > 0 {
            tracing::info!(
                running = count,
                ?timeout,
                "waiting for running deploys to finish"
            );
        }
        if tokio::time::timeout(timeout, self.running.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!("deploys still running after {timeout:?}; stopping them");
        self.stop_running();
        self.running.wait().await;
        false
    }
}

/// Since the merge recorded in a deployment's payload (`merged_at`, put there by
/// `start_deployment`), if it names one.
fn lead_time(payload: &str) -> Option<Duration> {
    let payload: serde_json::Value = serde_json::from_str(payload).ok()?;
    let merged_at = humantime::parse_rfc3339_weak(payload.get("merged_at")?.as_str()?).ok()?;
    SystemTime::now().duration_since(merged_at).ok()
}
