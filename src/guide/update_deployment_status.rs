//! `update_deployment_status`, the guide's handler for `deployment_status`: record what
//! GitHub says a deployment's state now is. Statuses posted by deployhook come back this
//! way too, so this is also where an operator sees GitHub confirm them.
//!
//! It is also where promotion starts: a `success` in an environment that another one is
//! promoted from (`promote_from`) schedules the same commit for that one, after its soak.
//! Whoever deployed — deployhook, or another system posting statuses — the success counts,
//! when what was deployed is the deploy branch: a commit (deployhook deploys merge commits
//! by SHA) or the branch itself. A feature branch someone deployed to staging by hand to
//! try it is not promoted to production.

use serde_json::json;

use crate::config::EnvironmentConfig;
use crate::model::{
    DEPLOY_TASK, DeploymentRequest, Environment, MergedAt, NewDeployment, Promotion, RepoName, text,
};
use crate::webhook::events::DeploymentStatusEvent;

/// Logs the new state; returns the sentence that says it and the promotions it starts.
pub fn update_deployment_status(
    event: &DeploymentStatusEvent,
    environments: &[EnvironmentConfig],
) -> (String, Vec<Promotion>) {
    let status = &event.deployment_status;
    let repo = event.repository.as_ref().map_or_else(
        || "an unnamed repository".to_owned(),
        |r| r.full_name.to_string(),
    );
    let environment = status
        .environment
        .as_deref()
        .or(event.deployment.environment.as_deref())
        .unwrap_or("an unnamed environment");
    let message = format!(
        "deployment {} of {repo} to {environment} is {}",
        event.deployment.id, status.state
    );
    // Every value from the payload is a string field: quoted and escaped in the text log, so
    // an environment name or a description cannot pass for other fields.
    tracing::info!(
        deployment = event.deployment.id.get(),
        repo = repo.as_str(),
        environment,
        state = status.state.as_str(),
        description = status.description.as_deref().unwrap_or_default(),
        log_url = status
            .log_url
            .as_deref()
            .or(status.target_url.as_deref())
            .unwrap_or_default(),
        environment_url = status.environment_url.as_deref().unwrap_or_default(),
        "deployment status received"
    );
    let (promotions, refused) = promotions(event, environment, environments);
    match refused {
        Some(why) => (format!("{message}; {why}"), promotions),
        None => (message, promotions),
    }
}

/// The environments that receive this deployment's commit, if it just succeeded; and why
/// it is not promoted where it would have been, if so.
fn promotions(
    event: &DeploymentStatusEvent,
    from: &str,
    environments: &[EnvironmentConfig],
) -> (Vec<Promotion>, Option<String>) {
    let deployment = &event.deployment;
    let (Some(repository), Some(sha)) = (&event.repository, &deployment.sha) else {
        return (vec![], None);
    };
    // Only a deploy of the code counts: a migration or other task says nothing of it.
    let task = deployment.task.as_deref().unwrap_or(DEPLOY_TASK);
    if event.deployment_status.state != "success" || task != DEPLOY_TASK {
        return (vec![], None);
    }
    let targets: Vec<&EnvironmentConfig> = environments
        .iter()
        .filter(|e| e.promote_from.as_ref().is_some_and(|f| f.as_ref() == from))
        .filter(|e| e.accepts(&repository.full_name))
        .collect();
    if let (Some(target), Some(git_ref)) = (targets.first(), deployment.git_ref.as_deref()) {
        let branch = target
            .branch
            .as_deref()
            .or(repository.default_branch.as_deref());
        let is_sha = crate::model::CommitSha::parse(git_ref).is_ok();
        if !is_sha && branch.is_some_and(|b| b != git_ref) {
            let names: Vec<&str> = targets.iter().map(|t| t.name.as_ref()).collect();
            let why = format!(
                "not promoted to {}: it deployed {git_ref}, not {}",
                names.join(", "),
                branch.unwrap_or_default()
            );
            tracing::info!(reason = why.as_str(), "success not promoted");
            return (vec![], Some(why));
        }
    }
    let repo: &RepoName = &repository.full_name;
    let payload = &deployment.payload;
    let who = payload
        .get("deploy_user")
        .and_then(|u| u.as_str())
        .or(deployment.creator.as_ref().map(|c| c.login.as_str()))
        .unwrap_or("unknown");
    let pull_request = payload
        .get("pull_request")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    // The promotion carries the merge it deploys: an older merge's success, delivered
    // late, is then not promoted over a newer one (see `store::merges::marks`).
    let merged_at = payload
        .get("merged_at")
        .and_then(serde_json::Value::as_str)
        .and_then(|text| MergedAt::parse(text).ok());
    let promotions = targets
        .into_iter()
        .map(|target| Promotion {
            new: NewDeployment {
                repo: repo.clone(),
                pull_request,
                installation: event.installation.as_ref().map(|i| i.id),
                request: promotion_request(
                    target.name.clone(),
                    sha,
                    from,
                    deployment.id,
                    who,
                    (pull_request, merged_at),
                    target,
                ),
                gate: None,
            },
            from_deployment: deployment.id,
            soak: target.soak,
            policy: target.policy,
        })
        .collect();
    (promotions, None)
}

fn promotion_request(
    environment: Environment,
    sha: &crate::model::CommitSha,
    from: &str,
    from_deployment: crate::model::DeploymentId,
    who: &str,
    (pull_request, merged_at): (u64, Option<MergedAt>),
    target: &EnvironmentConfig,
) -> DeploymentRequest {
    let mut payload = json!({
        "environment": environment,
        "deploy_user": who,
        "promoted_from": {"environment": from, "deployment": from_deployment.get()},
    });
    if pull_request != 0 {
        payload["pull_request"] = json!(pull_request);
    }
    if let Some(merged_at) = merged_at {
        payload["merged_at"] = json!(merged_at.to_string());
    }
    DeploymentRequest {
        git_ref: sha.clone(),
        task: DEPLOY_TASK.to_owned(),
        auto_merge: false,
        // It passed its gate (if any) on its way to `from`.
        required_contexts: vec![],
        environment,
        payload,
        description: text::description(&format!(
            "Promote {} from {from} (deployment {from_deployment})",
            sha.short()
        )),
        production_environment: target.production_environment,
        transient_environment: target.transient_environment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::events::Event;

    fn event(state: &str, environment: &str) -> DeploymentStatusEvent {
        let json = json!({
            "action": "created",
            "deployment_status": {"state": state, "environment": environment},
            "deployment": {"id": 880001, "environment": environment, "task": "deploy",
                           "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                           "payload": {"deploy_user": "octo-dev", "pull_request": 42},
                           "creator": {"login": "deploy-bot-token", "type": "User"}},
            "repository": {"full_name": "acme/widgets"},
        });
        let Event::DeploymentStatus(event) =
            Event::parse("deployment_status", json.to_string().as_bytes()).unwrap()
        else {
            panic!("not a deployment status");
        };
        event
    }

    fn environments() -> Vec<EnvironmentConfig> {
        let staging =
            EnvironmentConfig::new(Environment::parse("staging").unwrap(), vec!["true".into()]);
        let mut production = EnvironmentConfig::new(
            Environment::parse("production").unwrap(),
            vec!["true".into()],
        );
        production.promote_from = Some(Environment::parse("staging").unwrap());
        production.soak = std::time::Duration::from_secs(600);
        vec![staging, production]
    }

    #[test]
    fn the_sentence_names_deployment_repository_environment_and_state() {
        let (message, promotions) = update_deployment_status(&event("failure", "production"), &[]);
        assert_eq!(
            message,
            "deployment 880001 of acme/widgets to production is failure"
        );
        assert!(promotions.is_empty());
    }

    #[test]
    fn a_staging_success_promotes_the_same_commit_and_a_failure_nothing() {
        let (_, promotions) =
            update_deployment_status(&event("success", "staging"), &environments());
        assert_eq!(promotions.len(), 1);
        let promotion = &promotions[0];
        assert_eq!(promotion.soak, std::time::Duration::from_secs(600));
        assert_eq!(promotion.new.request.environment.as_ref(), "production");
        assert_eq!(
            promotion.new.request.git_ref.as_ref(),
            "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b"
        );
        assert_eq!(
            promotion.new.request.payload,
            json!({"environment": "production", "deploy_user": "octo-dev", "pull_request": 42,
                   "promoted_from": {"environment": "staging", "deployment": 880001}})
        );
        // The merge it deploys goes with it, so an older one is never promoted over it.
        let mut merged = event("success", "staging");
        merged.deployment.payload["merged_at"] = json!("2026-03-03T16:02:11+02:00");
        let (_, promotions) = update_deployment_status(&merged, &environments());
        assert_eq!(
            promotions[0].new.request.payload["merged_at"],
            "2026-03-03T14:02:11Z"
        );
        // A feature branch deployed to staging by hand is not promoted; the branch is.
        let mut feature = event("success", "staging");
        feature.deployment.git_ref = Some("feature-x".into());
        feature.repository.as_mut().unwrap().default_branch = Some("main".into());
        let (message, none) = update_deployment_status(&feature, &environments());
        assert!(none.is_empty());
        assert!(
            message.ends_with("not promoted to production: it deployed feature-x, not main"),
            "{message}"
        );
        feature.deployment.git_ref = Some("main".into());
        assert_eq!(
            update_deployment_status(&feature, &environments()).1.len(),
            1
        );
        for (state, environment) in [("failure", "staging"), ("success", "production")] {
            let (_, none) = update_deployment_status(&event(state, environment), &environments());
            assert!(none.is_empty(), "{state} in {environment} promotes nothing");
        }
    }
}
