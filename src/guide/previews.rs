//! Preview environments, the guide's side: what a `pull_request` delivery does to the
//! previews of the environments marked `preview = true`. Opened, reopened and pushed to
//! (`synchronize`): the head commit deploys to the pull request's own environment
//! (`pr-42`), created on the base repository, transient and not production, its payload
//! marked a preview. Closed, merged or not: its previews are torn down. Whether there is
//! room for a new preview is the store's to say: it knows how many are alive.
//!
//! Pull requests from forks get no preview unless the environment says `preview_forks =
//! true`: a preview runs the head's code on this host, and anyone can open one from a fork.

use serde_json::json;

use crate::config::{EnvironmentConfig, preview_slots};
use crate::model::{
    DEPLOY_TASK, DeploymentRequest, NewDeployment, PreviewChange, PreviewSlot, text,
};
use crate::webhook::events::{PullRequestEvent, Repository};

/// The actions that deploy a pull request's head.
const DEPLOYING: [&str; 3] = ["opened", "reopened", "synchronize"];

/// The changes `event` makes to previews: `None` when no preview environment takes this
/// repository's pull requests or the action is not one previews care about (the delivery
/// is then a merge's business alone); `Err` with why none of them takes this one.
pub fn preview_changes(
    event: &PullRequestEvent,
    environments: &[EnvironmentConfig],
) -> Option<Result<Vec<PreviewChange>, String>> {
    let repository = event.repository.as_ref()?;
    let previews: Vec<&EnvironmentConfig> = environments
        .iter()
        .filter(|e| e.preview.is_some() && e.accepts(&repository.full_name))
        .collect();
    if previews.is_empty() {
        return None;
    }
    let number = event.pull_request.number;
    if event.action == "closed" {
        return Some(Ok(vec![PreviewChange::Close {
            repo: repository.full_name.clone(),
            pull_request: number,
            slots: preview_slots(environments),
        }]));
    }
    if !DEPLOYING.contains(&event.action.as_str()) {
        return None;
    }
    let mut changes = Vec::new();
    let mut reasons = Vec::new();
    for environment in previews {
        match open(event, repository, environment) {
            Ok(change) => changes.push(change),
            Err(reason) => reasons.push(reason),
        }
    }
    if changes.is_empty() {
        return Some(Err(format!(
            "pull request #{number} of {} gets no preview: {}",
            repository.full_name,
            reasons.join("; ")
        )));
    }
    Some(Ok(changes))
}

/// The preview of `event`'s head in `environment`, or why it gets none.
fn open(
    event: &PullRequestEvent,
    repository: &Repository,
    environment: &EnvironmentConfig,
) -> Result<PreviewChange, String> {
    let name = &environment.name;
    let Some(preview) = &environment.preview else {
        return Err(format!("{name} is not a preview environment"));
    };
    let pr = &event.pull_request;
    let branch = environment.branch_of(repository.default_branch.as_deref())?;
    if pr.base.branch != branch {
        return Err(format!(
            "{name} previews pull requests into {branch}, not {}",
            pr.base.branch
        ));
    }
    let Some(head) = &pr.head else {
        return Err(format!("{name}: the payload names no head commit"));
    };
    let from = head.repo.as_ref().map(|r| r.full_name.as_str());
    let own = from.is_some_and(|f| f.eq_ignore_ascii_case(repository.full_name.as_ref()));
    if !own && !preview.forks {
        let from = from.unwrap_or("a deleted fork");
        return Err(format!(
            "{name} does not preview pull requests from forks (this one is from {from}); \
             `preview_forks = true` allows them"
        ));
    }
    let Some(target) = preview.environment_for(pr.number) else {
        return Err(format!(
            "{name}: preview_name makes no valid environment name"
        ));
    };
    let number = pr.number;
    let author = pr.user.as_ref().map_or("unknown", |u| u.login.as_str());
    let title = pr.title.as_deref().unwrap_or_default();
    let slot = PreviewSlot {
        config: name.clone(),
        limit: preview.limit,
        gate: environment.gate(),
    };
    let new = NewDeployment {
        repo: repository.full_name.clone(),
        pull_request: number,
        installation: event.installation.as_ref().map(|i| i.id),
        request: DeploymentRequest {
            git_ref: head.sha.clone(),
            task: DEPLOY_TASK.to_owned(),
            auto_merge: false,
            // With a gate deployhook waited itself; GitHub must not check again.
            required_contexts: if slot.gate.is_some() {
                vec![]
            } else {
                environment.required_contexts.clone()
            },
            environment: target.clone(),
            payload: json!({
                "environment": target,
                "deploy_user": author,
                "pull_request": number,
                "preview": {"pull_request": number, "environment": name},
            }),
            description: text::description(&format!("Preview of PR #{number}: {title}")),
            // A preview is neither production nor permanent, whatever the table says of
            // the deploys it shares settings with.
            production_environment: Some(false),
            transient_environment: Some(true),
        },
        gate: slot.gate.clone(),
    };
    Ok(PreviewChange::Open {
        new: Box::new(new),
        slot,
    })
}

/// What the answer says about `changes`.
pub fn describe(changes: &[PreviewChange]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|change| match change {
            PreviewChange::Open { new, .. } => format!(
                "previewing {}@{} in {}",
                new.repo,
                new.request.git_ref.short(),
                new.request.environment
            ),
            PreviewChange::Close {
                repo, pull_request, ..
            } => format!("closing the previews of pull request #{pull_request} of {repo}"),
        })
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests;
