//! Routes a verified delivery to the guide's handler for its event and turns the handler's
//! decision into an acknowledgement plus the [`Effect`] to record with it. Nothing slow
//! happens here: the effect is committed with the delivery and carried out by the workers.

use axum::http::StatusCode;

use crate::config::EnvironmentConfig;
use crate::guide::Ignored;
use crate::guide::process_deployment::{Decision, process_deployment};
use crate::guide::start_deployment::start_deployment;
use crate::guide::update_deployment_status::update_deployment_status;
use crate::model::{Effect, Outcome};
use crate::webhook::events::Event;
use crate::webhook::intake::Delivery;

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
