//! What the outbox worker's log lines say of a call: what it was doing when it failed,
//! and what a deployment's creation came to.

use super::{notifications, replies, tags};
use crate::github::CreatedDeployment;
use crate::model::RepoName;
use crate::notify::Notifier;
use crate::store::outbox::Call;

pub(super) fn describe(call: &Call) -> String {
    match call {
        Call::CreateDeployment {
            repository,
            pull_request,
            request,
        } => format!(
            "creating the deployment of {repository}@{} {}",
            request.git_ref.short(),
            asked_by(*pull_request, &request.payload)
        ),
        Call::DeploymentStatus {
            repository,
            deployment_id,
            request,
        } => format!(
            "posting status {} of deployment {deployment_id} of {repository}",
            request.state.as_str()
        ),
        Call::ReadChecks { repository, sha } => {
            format!(
                "reading the checks of {repository}@{}",
                &sha[..sha.len().min(7)]
            )
        }
        Call::React { .. } | Call::Reply { .. } => replies::describe(call),
        Call::ResolveTag(deploy) => tags::describe(deploy),
        Call::Changelog {
            repository,
            deployment_id,
            ..
        } => format!("reading the changelog of deployment {deployment_id} of {repository}"),
        Call::Notify(event) => {
            format!("notifying {}", notifications::describe_event(event))
        }
        Call::Notification {
            receiver, event, ..
        } => format!(
            "sending {} to {}",
            notifications::describe_event(event),
            Notifier::describe(receiver)
        ),
    }
}

/// What asked for a deployment: a pull request (merged, or a command's or a preview's),
/// a tag, or someone by hand (a rollback).
fn asked_by(pull_request: u64, payload: &serde_json::Value) -> String {
    match (pull_request, payload.get("tag").and_then(|t| t.as_str())) {
        (0, Some(tag)) => format!("for tag {tag}"),
        (0, None) => "asked for by hand".to_owned(),
        (number, _) => format!("for pull request #{number}"),
    }
}

pub(super) fn log_created(
    repo: &RepoName,
    request: &crate::model::DeploymentRequest,
    pull_request: u64,
    created: &CreatedDeployment,
) {
    let sha = request.git_ref.short();
    let pull_request = asked_by(pull_request, &request.payload);
    match created {
        CreatedDeployment::Created(id) => tracing::info!(
            repo = repo.as_ref(),
            deployment = id.get(),
            "created deployment {id} of {repo}@{sha} {pull_request}"
        ),
        CreatedDeployment::MergedInstead(message) => tracing::warn!(
            repo = repo.as_ref(),
            "GitHub created no deployment of {repo}@{sha} {pull_request} \
             (202: {message}); it merged instead of deploying, so there is nothing to run"
        ),
    }
}
