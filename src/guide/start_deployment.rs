//! `start_deployment`, the guide's handler for `pull_request`: when a pull request is merged
//! into the deploy branch, ask GitHub for a deployment of the merge commit.
//!
//! Unlike the guide's sample, the deployment is created on the *base* repository (the one
//! that received the merge; a pull request from a fork has its head elsewhere), for
//! `merge_commit_sha` (the commit now on the branch, not the pre-merge head), and with
//! `auto_merge: false` (with it on, GitHub tries to merge the default branch into the ref
//! and answers 409 for a SHA).

use serde_json::json;

use crate::config::EnvironmentConfig;
use crate::guide::Ignored;
use crate::model::{
    CommitSha, DEPLOY_TASK, DeploymentRequest, Gate, NewDeployment, RepoName, text,
};
use crate::webhook::events::{PullRequestEvent, Repository};

/// Decides which deployments `event` should create: one for each environment that deploys
/// merges of this repository into this branch.
pub fn start_deployment(
    event: &PullRequestEvent,
    environments: &[EnvironmentConfig],
) -> Result<Vec<NewDeployment>, Ignored> {
    let pr = &event.pull_request;
    let number = pr.number;
    if event.action != "closed" {
        return Err(Ignored(format!(
            "pull request #{number} was {}; only merged pull requests deploy",
            event.action
        )));
    }
    if !pr.merged {
        return Err(Ignored(format!(
            "pull request #{number} was closed without merging"
        )));
    }
    let Some(repository) = event.repository.as_ref() else {
        return Err(Ignored(format!(
            "pull request #{number}: the payload names no repository"
        )));
    };
    let Some(sha) = pr.merge_commit_sha.clone() else {
        return Err(Ignored(format!(
            "merged pull request #{number} has no merge_commit_sha"
        )));
    };
    let mut deployments = Vec::new();
    let mut reasons = Vec::new();
    for environment in environments {
        match deploys_here(event, repository, environment) {
            Ok(()) => deployments.push(new_deployment(
                event,
                &repository.full_name,
                &sha,
                environment,
            )),
            Err(reason) => reasons.push(reason),
        }
    }
    if deployments.is_empty() {
        let message = format!(
            "merged pull request #{number} of {} deploys nowhere: {}",
            repository.full_name,
            reasons.join("; ")
        );
        // Worth a line, unlike the many unmerged pull requests: a merge did not deploy.
        tracing::info!(answer = message.as_str(), "a merge deploys nowhere");
        return Err(Ignored(message));
    }
    Ok(deployments)
}

/// Why `environment` does not deploy this merge, if it does not.
fn deploys_here(
    event: &PullRequestEvent,
    repository: &Repository,
    environment: &EnvironmentConfig,
) -> Result<(), String> {
    let name = &environment.name;
    if !environment.accepts(&repository.full_name) {
        return Err(format!("{name} does not list {}", repository.full_name));
    }
    if !environment.deploy_on_merge {
        let triggers = &environment.triggers;
        if !triggers.tags.is_empty() || triggers.releases {
            return Err(format!(
                "{name} deploys tags or releases, not merges (deploy_on_merge = true adds them)"
            ));
        }
        return Err(format!("{name} deploys only deployments made by hand"));
    }
    if environment.preview.is_some() {
        return Err(format!(
            "{name} deploys pull requests' previews, not merges"
        ));
    }
    if let Some(from) = &environment.promote_from {
        return Err(format!(
            "{name} deploys what succeeded in {from}, not merges"
        ));
    }
    let branch = environment.branch_of(repository.default_branch.as_deref())?;
    let merged_into = &event.pull_request.base.branch;
    if merged_into != branch {
        return Err(format!(
            "{name} deploys merges into {branch}, not {merged_into}"
        ));
    }
    Ok(())
}

fn new_deployment(
    event: &PullRequestEvent,
    repo: &RepoName,
    sha: &CommitSha,
    environment: &EnvironmentConfig,
) -> NewDeployment {
    let pr = &event.pull_request;
    let number = pr.number;
    let author = pr.user.as_ref().map_or("unknown", |u| u.login.as_str());
    let title = pr.title.as_deref().unwrap_or_default();
    let mut payload = json!({
        "environment": environment.name,
        "deploy_user": author,
        "pull_request": number,
    });
    if let Some(merged_at) = pr.merged_at {
        // What orders automatic deploys (an older merge never deploys over a newer one,
        // nor is promoted over it), and the start of the merge-to-deploy lead time,
        // measured when the deploy succeeds. As RFC 3339 in UTC, whatever offset GitHub used.
        payload["merged_at"] = json!(merged_at.to_string());
    }
    let gate = environment.checks.clone().map(|required| Gate {
        required,
        timeout: environment.checks_timeout,
        policy: environment.policy,
        merged_at: pr.merged_at,
    });
    NewDeployment {
        repo: repo.clone(),
        pull_request: number,
        installation: event.installation.as_ref().map(|i| i.id),
        // deployhook checked the checks itself: GitHub must not check them again.
        request: DeploymentRequest {
            git_ref: sha.clone(),
            task: DEPLOY_TASK.to_owned(),
            auto_merge: false,
            required_contexts: if gate.is_some() {
                vec![]
            } else {
                environment.required_contexts.clone()
            },
            environment: environment.name.clone(),
            payload,
            description: text::description(&format!("Deploy PR #{number}: {title}")),
            production_environment: environment.production_environment,
            transient_environment: environment.transient_environment,
        },
        gate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepoPattern;
    use crate::model::Environment;
    use crate::webhook::events::Event;

    const MERGE_SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";

    fn environment(name: &str, branch: Option<&str>) -> EnvironmentConfig {
        let mut environment =
            EnvironmentConfig::new(Environment::parse(name).unwrap(), vec!["true".into()]);
        environment.branch = branch.map(str::to_owned);
        environment.required_contexts = vec!["ci/build".into()];
        environment
    }

    fn config(branch: Option<&str>) -> Vec<EnvironmentConfig> {
        vec![environment("production", branch)]
    }

    fn one(result: Result<Vec<NewDeployment>, Ignored>) -> NewDeployment {
        let mut deployments = result.unwrap();
        assert_eq!(deployments.len(), 1, "{deployments:?}");
        deployments.pop().unwrap()
    }

    /// A pull request event from a fork into acme/widgets.
    fn event(action: &str, merged: bool, base: &str, title: &str) -> PullRequestEvent {
        let json = json!({
            "action": action,
            "pull_request": {
                "number": 43, "title": title, "merged": merged, "merge_commit_sha": MERGE_SHA,
                "user": {"login": "outside-contrib", "type": "User"},
                "base": {"ref": base, "sha": "1111111111aaaaaaaaaa2222222222bbbbbbbbbb",
                         "repo": {"full_name": "acme/widgets", "default_branch": "main"}},
                "head": {"ref": "fix-typo", "sha": "3333333333cccccccccc4444444444dddddddddd",
                         "repo": {"full_name": "outside-contrib/widgets", "default_branch": "main"}},
            },
            "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        });
        match Event::parse("pull_request", json.to_string().as_bytes()).unwrap() {
            Event::PullRequest(event) => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_merged_fork_pull_request_deploys_the_merge_commit_of_the_base_repository() {
        let new = one(start_deployment(
            &event("closed", true, "main", "Fix typo"),
            &config(None),
        ));
        assert_eq!(new.repo.to_string(), "acme/widgets");
        let body = serde_json::to_value(&new.request).unwrap();
        assert_eq!(
            body,
            json!({
                "ref": MERGE_SHA, "task": "deploy", "auto_merge": false,
                "required_contexts": ["ci/build"], "environment": "production",
                "payload": {"environment": "production", "deploy_user": "outside-contrib",
                            "pull_request": 43},
                "description": "Deploy PR #43: Fix typo",
            })
        );
    }

    #[test]
    fn the_description_stays_within_140_characters_for_a_long_title() {
        let long = "word ".repeat(60);
        let new = one(start_deployment(
            &event("closed", true, "main", &long),
            &config(None),
        ));
        assert!(new.request.description.chars().count() <= 140);
        assert!(new.request.description.starts_with("Deploy PR #43: word"));
    }

    #[test]
    fn other_actions_unmerged_closes_and_other_branches_are_ignored_with_a_reason() {
        let cases = [
            (event("opened", false, "main", "t"), "was opened"),
            (event("closed", false, "main", "t"), "without merging"),
            (
                event("closed", true, "release/1.x", "t"),
                "deploys merges into main, not release/1.x",
            ),
        ];
        for (event, why) in cases {
            let Ignored(reason) = start_deployment(&event, &config(None)).unwrap_err();
            assert!(reason.contains(why), "{reason:?} should say {why:?}");
        }
    }

    #[test]
    fn deployhook_branch_overrides_the_default_branch() {
        let config = config(Some("release/1.x"));
        assert!(start_deployment(&event("closed", true, "release/1.x", "t"), &config).is_ok());
        assert!(start_deployment(&event("closed", true, "main", "t"), &config).is_err());
    }

    #[test]
    fn a_gated_environment_waits_and_a_promoted_one_takes_no_merges() {
        use crate::model::Required;
        let mut staging = environment("staging", None);
        staging.checks = Some(Required::Named(vec!["test".into(), "lint".into()]));
        let mut production = environment("production", None);
        production.promote_from = Some(Environment::parse("staging").unwrap());
        let created =
            start_deployment(&event("closed", true, "main", "t"), &[staging, production]).unwrap();
        assert_eq!(created.len(), 1);
        let gate = created[0].gate.as_ref().expect("staging is gated");
        assert_eq!(
            gate.required,
            Required::Named(vec!["test".into(), "lint".into()])
        );
        assert!(
            created[0].request.required_contexts.is_empty(),
            "GitHub must not check again what deployhook waited for"
        );
    }

    #[test]
    fn each_environment_that_deploys_the_branch_gets_its_own_deployment() {
        let mut staging = environment("staging", Some("main"));
        staging.transient_environment = Some(true);
        let mut production = environment("production", None);
        production.deploy_on_merge = false;
        let mut elsewhere = environment("docs", None);
        elsewhere.repositories = vec![RepoPattern::parse("acme/docs").unwrap()];
        let environments = [staging, production, elsewhere];

        let merged = event("closed", true, "main", "t");
        let created = start_deployment(&merged, &environments).unwrap();
        let names: Vec<String> = created
            .iter()
            .map(|d| d.request.environment.to_string())
            .collect();
        assert_eq!(names, ["staging"]);
        let body = serde_json::to_value(&created[0].request).unwrap();
        assert_eq!(body["transient_environment"], true);
        assert!(body.get("production_environment").is_none(), "{body}");

        let Ignored(reason) =
            start_deployment(&event("closed", true, "develop", "t"), &environments).unwrap_err();
        for why in [
            "staging deploys merges into main, not develop",
            "production deploys only deployments made by hand",
            "docs does not list acme/widgets",
        ] {
            assert!(reason.contains(why), "{reason:?} should say {why:?}");
        }
    }
}
