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
            "creating the deployment of {repository}@{} for pull request #{pull_request}",
            request.git_ref.short()
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

pub(super) fn log_created(
    repo: &RepoName,
    pull_request: u64,
    sha: &str,
    created: &CreatedDeployment,
) {
    match created {
        CreatedDeployment::Created(id) => tracing::info!(
            repo = repo.as_ref(),
            deployment = id.get(),
            "created deployment {id} of {repo}@{sha} for pull request #{pull_request}"
        ),
        CreatedDeployment::MergedInstead(message) => tracing::warn!(
            repo = repo.as_ref(),
            "GitHub created no deployment of {repo}@{sha} for pull request #{pull_request} \
             (202: {message}); it merged instead of deploying, so there is nothing to run"
        ),
    }
}
