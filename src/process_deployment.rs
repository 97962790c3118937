//! `process_deployment`, the guide's handler for `deployment`: decide whether a new
//! deployment is one for deployhook to run, and describe the job. The job is queued with the
//! delivery; the [`crate::deploy_worker`] runs it in the background and reports its statuses
//! (the guide's sample did this inline, with sleeps, while GitHub waited for an answer).
//!
//! Deployments made by a person (through the API, `gh`, or deployhook with a personal token)
//! are deployhook's to run: that is how a user redeploys or rolls back. Deployments made by
//! a GitHub App or a bot (GitHub Pages, Actions workflows, other deploy tools) are someone
//! else's, and running them would deploy twice.

use crate::config::DeployConfig;
use crate::dispatch::Ignored;
use crate::events::{Deployment, DeploymentEvent};
use crate::ids::{CommitSha, DeploymentId, Environment, RepoName};
use crate::start_deployment::DEPLOY_TASK;

/// A deployment to run, with everything the deploy command is told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployJob {
    pub id: DeploymentId,
    pub repo: RepoName,
    pub environment: Environment,
    pub sha: CommitSha,
    pub git_ref: String,
    pub task: String,
    pub deploy_user: String,
    /// The deployment's `payload` as JSON text.
    pub payload: String,
}

/// Decides whether `event` is a deployment deployhook should run.
pub fn process_deployment(
    event: &DeploymentEvent,
    config: &DeployConfig,
) -> Result<DeployJob, Ignored> {
    let deployment = &event.deployment;
    let id = deployment.id;
    // GitHub only sends `created`; an absent action (older servers) means the same.
    if let Some(action) = event.action.as_deref().filter(|a| *a != "created") {
        return Err(Ignored(format!(
            "deployment {id} was {action}; nothing to run"
        )));
    }
    let Some(repository) = &event.repository else {
        return Err(Ignored(format!(
            "deployment {id}: the payload names no repository"
        )));
    };
    if deployment.environment != config.environment {
        return Err(Ignored(format!(
            "deployment {id} is for environment {}; this server deploys {}",
            deployment.environment, config.environment
        )));
    }
    if let Some(creator) = foreign_creator(deployment) {
        return Err(Ignored(format!(
            "deployment {id} was made by {creator}, not by a person or deployhook; \
             it is not deployhook's to run"
        )));
    }
    Ok(DeployJob {
        id,
        repo: repository.full_name.clone(),
        environment: deployment.environment.clone(),
        sha: deployment.sha.clone(),
        git_ref: deployment.git_ref.clone(),
        task: deployment
            .task
            .clone()
            .unwrap_or_else(|| DEPLOY_TASK.to_owned()),
        deploy_user: deploy_user(deployment),
        payload: payload_text(&deployment.payload),
    })
}

/// Names who made a deployment that deployhook must leave alone, or `None` when it is
/// deployhook's to run.
fn foreign_creator(deployment: &Deployment) -> Option<String> {
    if let Some(app) = &deployment.performed_via_github_app {
        let name = app.name.as_deref().or(app.slug.as_deref()).unwrap_or("?");
        return Some(format!("the GitHub App {name} (id {})", app.id));
    }
    let creator = deployment.creator.as_ref()?;
    creator
        .is_bot()
        .then(|| format!("the bot {}", creator.login))
}

/// Who asked for the deploy: the `deploy_user` deployhook put in the payload (the pull
/// request's author), or else the deployment's creator.
fn deploy_user(deployment: &Deployment) -> String {
    deployment
        .payload
        .get("deploy_user")
        .and_then(|u| u.as_str())
        .or(deployment.creator.as_ref().map(|c| c.login.as_str()))
        .unwrap_or("unknown")
        .to_owned()
}

/// Older API clients sent the payload as a JSON-encoded string; pass its text as it is.
fn payload_text(payload: &serde_json::Value) -> String {
    match payload {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use serde_json::{Value, json};
    use std::time::Duration;

    fn config() -> DeployConfig {
        DeployConfig {
            environment: Environment::parse("production").unwrap(),
            branch: None,
            required_contexts: vec![],
            command: vec!["true".into()],
            timeout: Duration::from_secs(60),
            pass_env: vec![],
        }
    }

    fn event(edit: impl FnOnce(&mut Value)) -> DeploymentEvent {
        let mut json = json!({
            "action": "created",
            "deployment": {
                "id": 880001, "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                "ref": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b", "task": "deploy",
                "environment": "production",
                "payload": {"environment": "production", "deploy_user": "octo-dev", "pull_request": 42},
                "creator": {"login": "maria-merge", "type": "User"},
                "performed_via_github_app": null,
            },
            "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        });
        edit(&mut json);
        match Event::parse("deployment", json.to_string().as_bytes()).unwrap() {
            Event::Deployment(event) => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deployment_made_by_a_person_becomes_a_job() {
        let job = process_deployment(&event(|_| {}), &config()).unwrap();
        assert_eq!(job.id, DeploymentId::from(880_001));
        assert_eq!(job.repo.to_string(), "acme/widgets");
        assert_eq!(job.task, "deploy");
        assert_eq!(job.deploy_user, "octo-dev");
        let payload: Value = serde_json::from_str(&job.payload).unwrap();
        assert_eq!(payload["pull_request"], 42);
    }

    #[test]
    fn without_deploy_user_in_the_payload_the_creator_deploys() {
        let job = process_deployment(
            &event(|e| e["deployment"]["payload"] = json!({})),
            &config(),
        );
        assert_eq!(job.unwrap().deploy_user, "maria-merge");
    }

    #[test]
    fn a_string_payload_is_passed_as_it_is() {
        let job = process_deployment(
            &event(|e| e["deployment"]["payload"] = json!("{\"deploy\":\"migrate\"}")),
            &config(),
        );
        assert_eq!(job.unwrap().payload, "{\"deploy\":\"migrate\"}");
    }

    #[test]
    fn deployments_made_by_an_app_or_a_bot_are_foreign() {
        let by_app = event(|e| {
            e["deployment"]["performed_via_github_app"] =
                json!({"id": 15368, "slug": "github-actions", "name": "GitHub Actions"});
        });
        let Ignored(reason) = process_deployment(&by_app, &config()).unwrap_err();
        assert!(reason.contains("GitHub Actions"), "{reason}");

        let by_bot = event(|e| {
            e["deployment"]["creator"] = json!({"login": "github-pages[bot]", "type": "Bot"});
        });
        let Ignored(reason) = process_deployment(&by_bot, &config()).unwrap_err();
        assert!(reason.contains("github-pages[bot]"), "{reason}");
    }

    #[test]
    fn other_environments_and_actions_are_ignored_with_a_reason() {
        let staging = event(|e| e["deployment"]["environment"] = json!("staging"));
        let Ignored(reason) = process_deployment(&staging, &config()).unwrap_err();
        assert!(
            reason.contains("staging") && reason.contains("production"),
            "{reason}"
        );

        let no_action = event(|e| {
            e.as_object_mut()
                .unwrap()
                .remove("action")
                .map(drop)
                .unwrap()
        });
        assert!(process_deployment(&no_action, &config()).is_ok());
    }
}
