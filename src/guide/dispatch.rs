//! Routes a verified delivery to the guide's handler for its event and turns the handler's
//! decision into an acknowledgement plus the [`Effect`] to record with it. Nothing slow
//! happens here: the effect is committed with the delivery and carried out by the workers.

use axum::http::StatusCode;

use crate::config::EnvironmentConfig;
use crate::guide::Ignored;
use crate::guide::checks::{check_run_reported, check_suite_reported, describe, status_reported};
use crate::guide::comment_command::comment_command;
use crate::guide::previews::preview_changes;
use crate::guide::process_deployment::{Decision, process_deployment};
use crate::guide::start_deployment::start_deployment;
use crate::guide::tags::{release_published, tag_pushed};
use crate::guide::update_deployment_status::update_deployment_status;
use crate::model::{CheckReport, Effect, NewDeployment, Outcome, PreviewChange};
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
            Outcome::Recorded | Outcome::Ignored | Outcome::Duplicate | Outcome::Skipped => {
                StatusCode::OK
            }
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
/// `prefix` starts comment commands (`.`).
pub fn dispatch(
    delivery: &Delivery,
    environments: &[EnvironmentConfig],
    own_app: Option<&str>,
    prefix: &str,
) -> (Ack, Effect) {
    match &delivery.event {
        Event::PullRequest(event) => {
            let merged = match start_deployment(event, environments) {
                Ok(new) => {
                    let message = merge_message(&new, environments);
                    (
                        Ack::new(Outcome::Accepted, message),
                        Effect::CreateDeployment(new),
                    )
                }
                Err(ignored) => (ignored.into(), Effect::None),
            };
            with_previews(merged, preview_changes(event, environments))
        }
        Event::CheckRun(event) => checks(check_run_reported(event, environments)),
        Event::CheckSuite(event) => checks(check_suite_reported(event, environments)),
        Event::Status(event) => checks(status_reported(event, environments)),
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
            Ok(Decision::AwaitApproval(job, asked)) => {
                let message = format!(
                    "deployment {} of {}@{} to {}: {}",
                    job.id,
                    job.repo,
                    job.sha.short(),
                    job.environment,
                    asked.rule.waiting_for()
                );
                (
                    Ack::new(Outcome::Accepted, message),
                    Effect::AwaitApproval(job, asked),
                )
            }
            Err(ignored) => (ignored.into(), Effect::None),
        },
        Event::DeploymentStatus(event) => {
            let (message, promotions) = update_deployment_status(event, environments);
            if promotions.is_empty() {
                return (Ack::new(Outcome::Recorded, message), Effect::None);
            }
            let targets: Vec<String> = promotions
                .iter()
                .map(|p| {
                    format!(
                        "{} after a soak of {}",
                        p.new.request.environment,
                        humantime::format_duration(p.soak)
                    )
                })
                .collect();
            let message = format!(
                "{message}: promoting {} to {}",
                promotions[0].new.request.git_ref.short(),
                targets.join(" and ")
            );
            (
                Ack::new(Outcome::Accepted, message),
                Effect::Promote(promotions),
            )
        }
        Event::IssueComment(event) => match comment_command(event, prefix) {
            Ok(request) => {
                let message = format!(
                    "{} on #{} by {}: recorded for the command worker",
                    request.command.name(),
                    request.pull_request,
                    request.author
                );
                (
                    Ack::new(Outcome::Accepted, message),
                    Effect::Command(request),
                )
            }
            Err(ignored) => (ignored.into(), Effect::None),
        },
        Event::Push(event) => tagged(tag_pushed(event, environments)),
        Event::Release(event) => tagged(release_published(event, environments)),
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

/// A pull request's answer and effect: the merge's (`merged`), with what it does to
/// previews. A pull request no preview environment takes keeps the merge's alone.
fn with_previews(
    (ack, effect): (Ack, Effect),
    previews: Option<Result<Vec<PreviewChange>, String>>,
) -> (Ack, Effect) {
    match previews {
        None => (ack, effect),
        Some(Err(reason)) if ack.outcome == Outcome::Ignored => {
            (Ack::new(Outcome::Ignored, reason), effect)
        }
        Some(Err(_)) => (ack, effect),
        Some(Ok(changes)) => {
            let mut message = crate::guide::previews::describe(&changes);
            if ack.outcome == Outcome::Accepted {
                message = format!("{}; {message}", ack.message);
            }
            (
                Ack::new(Outcome::Accepted, message),
                Effect::Preview(changes, Box::new(effect)),
            )
        }
    }
}

/// What a merge sets in motion, environment by environment.
fn merge_message(new: &[NewDeployment], environments: &[EnvironmentConfig]) -> String {
    let first = &new[0];
    let parts: Vec<String> = new
        .iter()
        .map(|n| match &n.gate {
            None => {
                let name = n.request.environment.as_ref();
                // With `paths`, the outbox worker decides, once it read the changed files.
                match crate::config::find_environment(environments, name)
                    .map(|e| &e.triggers.paths)
                    .filter(|paths| !paths.is_empty())
                {
                    Some(paths) => format!("creating a deployment to {name} if it changed {paths}"),
                    None => format!("creating a deployment to {name}"),
                }
            }
            Some(gate) => format!(
                "waiting for {} before deploying to {}",
                gate.required, n.request.environment
            ),
        })
        .collect();
    format!(
        "pull request #{} merged {}@{}: {}",
        first.pull_request,
        first.repo,
        first.request.git_ref.short(),
        parts.join("; ")
    )
}

/// A pushed tag or a published release: its deployments to create.
fn tagged(deploys: Result<Vec<crate::model::TagDeploy>, Ignored>) -> (Ack, Effect) {
    let deploys = match deploys {
        Ok(deploys) => deploys,
        Err(ignored) => return (ignored.into(), Effect::None),
    };
    let first = &deploys[0];
    let targets: Vec<&str> = deploys.iter().map(|d| d.environment.as_ref()).collect();
    let commit = first
        .sha
        .as_ref()
        .map_or("its commit, once resolved", |s| s.short());
    let message = format!(
        "tag {} of {}: creating a deployment of {commit} to {}",
        first.tag,
        first.repo,
        targets.join(" and ")
    );
    (
        Ack::new(Outcome::Accepted, message),
        Effect::DeployTag(deploys),
    )
}

/// A check event: recorded with the waits it settles.
fn checks(report: Result<CheckReport, Ignored>) -> (Ack, Effect) {
    match report {
        Ok(report) => (
            Ack::new(Outcome::Recorded, describe(&report)),
            Effect::Checks(report),
        ),
        Err(ignored) => (ignored.into(), Effect::None),
    }
}
