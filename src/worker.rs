//! The background half of the guide's handlers: creates the deployments that
//! `start_deployment` decided on, and runs the jobs `process_deployment` accepted, posting
//! their statuses (`queued`, `in_progress`, then `success`, `failure` or `error`) in order.
//!
//! Two deploys of one repository and environment never overlap: each waits for the lock of
//! its pair. This state lives in memory: a restart forgets queued work (a later issue makes
//! it durable).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::github::{CreatedDeployment, DeploymentState, GitHubClient, GitHubError, StatusRequest};
use crate::ids::{Environment, RepoName};
use crate::process_deployment::DeployJob;
use crate::runner::{RunOutcome, Runner};
use crate::start_deployment::NewDeployment;
use crate::text;

/// One lock per repository + environment.
type DeployLocks = Mutex<HashMap<(RepoName, Environment), Arc<tokio::sync::Mutex<()>>>>;

/// Runs background work and tracks it, so shutdown can wait for it.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    github: GitHubClient,
    runner: Runner,
    // A std mutex: it is held only to look up an entry, never across an await.
    locks: DeployLocks,
    tasks: TaskTracker,
}

impl Worker {
    pub fn new(github: GitHubClient, runner: Runner) -> Self {
        Self {
            inner: Arc::new(Inner {
                github,
                runner,
                locks: Mutex::default(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Creates `new` in the background.
    pub fn spawn_create_deployment(&self, new: NewDeployment) {
        let worker = self.clone();
        let task = async move { worker.create_deployment(&new).await };
        self.inner.tasks.spawn(task.in_current_span());
    }

    /// Runs `job` in the background.
    pub fn spawn_deploy(&self, job: DeployJob) {
        let worker = self.clone();
        let task = async move { worker.deploy(&job).await };
        self.inner.tasks.spawn(task.in_current_span());
    }

    /// Asks GitHub for the deployment and logs what came of it.
    pub async fn create_deployment(
        &self,
        new: &NewDeployment,
    ) -> Result<CreatedDeployment, GitHubError> {
        let (repo, sha) = (&new.repo, &new.request.git_ref);
        let result = self
            .inner
            .github
            .create_deployment(repo, &new.request)
            .await;
        match &result {
            Ok(CreatedDeployment::Created(id)) => tracing::info!(
                deployment = %id, %repo, %sha,
                "created deployment {id} of {repo}@{} for pull request #{}",
                sha.short(), new.pull_request
            ),
            Ok(CreatedDeployment::MergedInstead(message)) => tracing::warn!(
                %repo, %sha,
                "GitHub created no deployment for pull request #{} (202: {message}); \
                 it merged instead of deploying, so there is nothing to run",
                new.pull_request
            ),
            Err(err) => tracing::error!(
                %repo, %sha,
                "could not create a deployment for pull request #{}: {err}",
                new.pull_request
            ),
        }
        result
    }

    /// Runs `job`: posts `queued`, waits its turn, posts `in_progress`, runs the deploy
    /// command and posts how it ended. Returns that outcome.
    pub async fn deploy(&self, job: &DeployJob) -> RunOutcome {
        let lock = self.lock_for(job);
        let queued = match lock.try_lock() {
            Ok(_) => format!("deploying {}", job.sha.short()),
            Err(_) => format!("waiting for the deploy running in {}", job.environment),
        };
        self.post_status(job, DeploymentState::Queued, &queued)
            .await;
        let _turn = lock.lock().await;
        let running = format!("running {} for {}", self.program(), job.sha.short());
        self.post_status(job, DeploymentState::InProgress, &running)
            .await;
        let outcome = self.inner.runner.run(job).await;
        tracing::info!(
            deployment = %job.id,
            state = ?outcome.state(),
            "deploy ended: {}",
            outcome.description()
        );
        self.post_status(job, outcome.state(), &outcome.description())
            .await;
        outcome
    }

    /// Stops taking new background work and waits up to `timeout` for the running work.
    /// Returns whether everything finished in time.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.tasks.close();
        let running = self.inner.tasks.len();
        if running > 0 {
            tracing::info!(running, ?timeout, "waiting for background work to finish");
        }
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }

    fn lock_for(&self, job: &DeployJob) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks
            .entry((job.repo.clone(), job.environment.clone()))
            .or_default()
            .clone()
    }

    fn program(&self) -> String {
        self.inner.runner.program().to_owned()
    }

    /// Posts a status; a failure is logged, and the deploy goes on: the command's outcome
    /// matters more than one status GitHub missed.
    async fn post_status(&self, job: &DeployJob, state: DeploymentState, description: &str) {
        let status = StatusRequest {
            state,
            description: text::description(description),
        };
        let posted = self
            .inner
            .github
            .create_deployment_status(&job.repo, job.id, &status)
            .await;
        if let Err(err) = posted {
            tracing::error!(
                deployment = %job.id, ?state,
                "could not post status {state:?} for deployment {} of {}: {err}",
                job.id, job.repo
            );
        }
    }
}
