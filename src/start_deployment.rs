//! `start_deployment`, the guide's handler for `pull_request`: when a pull request is merged
//! into the deploy branch, ask GitHub for a deployment of the merge commit.
//!
//! Unlike the guide's sample, the deployment is created on the *base* repository (the one
//! that received the merge; a pull request from a fork has its head elsewhere), for
//! `merge_commit_sha` (the commit now on the branch, not the pre-merge head), and with
//! `auto_merge: false` (with it on, GitHub tries to merge the default branch into the ref
//! and answers 409 for a SHA).

use serde_json::json;

use crate::config::DeployConfig;
use crate::dispatch::Ignored;
use crate::events::PullRequestEvent;
use crate::github::DeploymentRequest;
use crate::ids::RepoName;
use crate::text;

/// The task deployhook asks for; the deploy command receives it as `DEPLOYHOOK_TASK`.
pub const DEPLOY_TASK: &str = "deploy";

/// A deployment to create, decided from a merged pull request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The base repository.
    pub repo: RepoName,
    pub pull_request: u64,
    pub request: DeploymentRequest,
}

/// Decides whether `event` should create a deployment, and of what.
pub fn start_deployment(
    event: &PullRequestEvent,
    config: &DeployConfig,
) -> Result<NewDeployment, Ignored> {
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
    let Some(repository) = event.repository.as_ref().or(pr.base.repo.as_ref()) else {
        return Err(Ignored(format!(
            "pull request #{number}: the payload names no repository"
        )));
    };
    let Some(deploy_branch) = config
        .branch
        .as_deref()
        .or(repository.default_branch.as_deref())
    else {
        return Err(Ignored(format!(
            "pull request #{number}: {} has no default branch in the payload; \
             set DEPLOYHOOK_BRANCH",
            repository.full_name
        )));
    };
    if pr.base.branch != deploy_branch {
        return Err(Ignored(format!(
            "pull request #{number} was merged into {}, not the deploy branch {deploy_branch}",
            pr.base.branch
        )));
    }
    let Some(sha) = pr.merge_commit_sha.clone() else {
        return Err(Ignored(format!(
            "merged pull request #{number} has no merge_commit_sha"
        )));
    };
    let author = pr.user.as_ref().map_or("unknown", |u| u.login.as_str());
    let title = pr.title.as_deref().unwrap_or_default();
    Ok(NewDeployment {
        repo: repository.full_name.clone(),
        pull_request: number,
        request: DeploymentRequest {
            git_ref: sha,
            task: DEPLOY_TASK.to_owned(),
            auto_merge: false,
            required_contexts: config.required_contexts.clone(),
            environment: config.environment.clone(),
            payload: json!({
                "environment": config.environment,
                "deploy_user": author,
                "pull_request": number,
            }),
            description: text::description(&format!("Deploy PR #{number}: {title}")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::ids::Environment;
    use std::time::Duration;

    const MERGE_SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";

    fn config(branch: Option<&str>) -> DeployConfig {
        DeployConfig {
            environment: Environment::parse("production").unwrap(),
            branch: branch.map(str::to_owned),
            required_contexts: vec!["ci/build".into()],
            command: vec!["true".into()],
            timeout: Duration::from_secs(60),
            pass_env: vec![],
        }
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
        let new =
            start_deployment(&event("closed", true, "main", "Fix typo"), &config(None)).unwrap();
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
        let new = start_deployment(&event("closed", true, "main", &long), &config(None)).unwrap();
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
                "not the deploy branch main",
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
}
