//! Routes a verified delivery to the guide's handler for its event and turns the decision
//! into an acknowledgement for GitHub. Slow work (GitHub calls, deploys) is handed to the
//! [`Worker`] so the answer goes back in milliseconds.

use axum::http::StatusCode;

use crate::config::DeployConfig;
use crate::events::Event;
use crate::process_deployment::process_deployment;
use crate::start_deployment::start_deployment;
use crate::update_deployment_status::update_deployment_status;
use crate::worker::Worker;

/// Why a delivery needs no action. Not an error: it is answered 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored(pub String);

/// What a delivery led to, as reported in the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Work was handed to the background: a deployment to create or a deploy to run.
    Accepted,
    /// Recorded, nothing to do (a `deployment_status`, a `ping`).
    Recorded,
    /// Nothing to do, for the reason in the message.
    Ignored,
}

/// The answer to an accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ack {
    #[serde(skip)]
    pub status: StatusCode,
    pub outcome: Outcome,
    pub message: String,
}

impl Ack {
    fn accepted(message: String) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            outcome: Outcome::Accepted,
            message,
        }
    }

    fn recorded(message: String) -> Self {
        Self {
            status: StatusCode::OK,
            outcome: Outcome::Recorded,
            message,
        }
    }
}

impl From<Ignored> for Ack {
    fn from(Ignored(message): Ignored) -> Self {
        Self {
            status: StatusCode::OK,
            outcome: Outcome::Ignored,
            message,
        }
    }
}

/// Runs the handler for `event` and hands any slow work to `worker`.
pub fn dispatch(event: Event, config: &DeployConfig, worker: &Worker) -> Ack {
    match event {
        Event::PullRequest(event) => match start_deployment(&event, config) {
            Ok(new) => {
                let message = format!(
                    "creating a deployment of {}@{} to {} for pull request #{}",
                    new.repo,
                    new.request.git_ref.short(),
                    new.request.environment,
                    new.pull_request
                );
                worker.spawn_create_deployment(new);
                Ack::accepted(message)
            }
            Err(ignored) => ignored.into(),
        },
        Event::Deployment(event) => match process_deployment(&event, config) {
            Ok(job) => {
                let message = format!(
                    "deploying deployment {} of {}@{} to {}",
                    job.id,
                    job.repo,
                    job.sha.short(),
                    job.environment
                );
                worker.spawn_deploy(job);
                Ack::accepted(message)
            }
            Err(ignored) => ignored.into(),
        },
        Event::DeploymentStatus(event) => Ack::recorded(update_deployment_status(&event)),
        Event::Ping(ping) => Ack::recorded(match ping.hook_id {
            Some(hook) => format!("pong: hook {hook}"),
            None => "pong".to_owned(),
        }),
        Event::Other(name) => Ignored(format!("ignored: {name}")).into(),
    }
}
