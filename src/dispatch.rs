//! Routes a verified delivery to the guide's handler for its event and turns the handler's
//! decision into an acknowledgement plus the [`Effect`] to record with it. Nothing slow
//! happens here: the effect is committed with the delivery and carried out by the workers.

use axum::http::StatusCode;

use crate::config::EnvironmentConfig;
use crate::events::Event;
use crate::intake::Delivery;
use crate::process_deployment::{Decision, DeployJob, process_deployment};
use crate::start_deployment::{NewDeployment, start_deployment};
use crate::update_deployment_status::update_deployment_status;

/// Why a delivery needs no action. Not an error: it is answered 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored(pub String);

/// What a delivery led to, as reported in the response body and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Work was queued: a deployment to create or a deploy to run.
    Accepted,
    /// Recorded, nothing to do (a `deployment_status`, a `ping`).
    Recorded,
    /// Nothing to do, for the reason in the message.
    Ignored,
    /// A redelivery of a delivery already received: nothing done.
    Duplicate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Recorded => "recorded",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
        }
    }
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
    pub fn new(outcome: Outcome, message: String) -> Self {
        let status = match outcome {
            Outcome::Accepted => StatusCode::ACCEPTED,
            Outcome::Recorded | Outcome::Ignored | Outcome::Duplicate => StatusCode::OK,
        };
        Self {
            status,
            outcome,
            message,
        }
    }
}

impl From<Ignored> for Ack {
    fn from(Ignored(message): Ignored) -> Self {
        Self::new(Outcome::Ignored, message)
    }
}

/// The work a delivery sets in motion.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// One per environment that deploys the merge.
    CreateDeployment(Vec<NewDeployment>),
    Deploy(DeployJob),
    /// Record the deployment as run and failed with this description, without running it.
    Refuse(DeployJob, String),
}

/// Runs the handler for the delivery's event.
///
/// `own_app` is deployhook's GitHub App id in App mode; see [`process_deployment`].
pub fn dispatch(
    delivery: &Delivery,
    environments: &[EnvironmentConfig],
    own_app: Option<&str>,
) -> (Ack, Effect) {
    match &delivery.event {
        Event::PullRequest(event) => match start_deployment(event, environments) {
            Ok(new) => {
                let names: Vec<&str> = new.iter().map(|n| n.request.environment.as_ref()).collect();
                let message = format!(
                    "creating a deployment of {}@{} to {} for pull request #{}",
                    new[0].repo,
                    new[0].request.git_ref.short(),
                    names.join(" and "),
                    new[0].pull_request
                );
                (
                    Ack::new(Outcome::Accepted, message),
                    Effect::CreateDeployment(new),
                )
            }
            Err(ignored) => (ignored.into(), Effect::None),
        },
        Event::Deployment(event) => match process_deployment(event, environments, own_app) {
            Ok(Decision::Refuse(job, reason)) => {
                let message = format!("deployment {} not run: {reason}", job.id);
                (
                    Ack::new(Outcome::Accepted, message),
                    Effect::Refuse(job, reason),
                )
            }
            Ok(Decision::Run(job)) => {
                let message = format!(
                    "deploying deployment {} of {}@{} to {}",
                    job.id,
                    job.repo,
                    job.sha.short(),
                    job.environment
                );
                (Ack::new(Outcome::Accepted, message), Effect::Deploy(job))
            }
            Err(ignored) => (ignored.into(), Effect::None),
        },
        Event::DeploymentStatus(event) => {
            let message = update_deployment_status(event);
            (Ack::new(Outcome::Recorded, message), Effect::None)
        }
        Event::Ping(ping) => {
            let message = match ping.hook_id.or(delivery.hook_id) {
                Some(hook) => format!("pong: hook {hook}"),
                None => "pong".to_owned(),
            };
            (Ack::new(Outcome::Recorded, message), Effect::None)
        }
        Event::Other { name, .. } => (Ignored(format!("ignored: {name}")).into(), Effect::None),
    }
}
