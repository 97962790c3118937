//! [`TagDeploy`]: a deployment that a pushed tag or a published release asks for. Unlike a
//! merge's it carries no merge time, so the merge marks neither refuse it nor move for it:
//! a tag is a deliberate act, like a rollback or a deployment made by hand (see
//! `store::merges::marks`). A release names its tag but not its commit: the outbox worker
//! resolves the tag first, and only then is the deployment created.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::deployment::{DEPLOY_TASK, DeploymentRequest, NewDeployment};
use crate::model::ids::{CommitSha, Environment, RepoName};

/// A deployment of a tag's commit to one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagDeploy {
    pub repo: RepoName,
    /// The GitHub App installation whose token creates it (App mode).
    pub installation: Option<u64>,
    pub tag: String,
    /// The tag's commit, when the event names it (a push); `None` for a release, whose
    /// tag the outbox worker resolves.
    pub sha: Option<CommitSha>,
    pub environment: Environment,
    /// Who pushed the tag or published the release.
    pub deploy_user: String,
    pub description: String,
    pub required_contexts: Vec<String>,
    pub production_environment: Option<bool>,
    pub transient_environment: Option<bool>,
}

impl TagDeploy {
    /// The deployment of `sha`, the tag's commit. Its payload names the tag (the deploy
    /// command reads it from `DEPLOYHOOK_PAYLOAD`) and no pull request or merge time.
    pub fn deployment(&self, sha: CommitSha) -> NewDeployment {
        NewDeployment {
            repo: self.repo.clone(),
            pull_request: 0,
            installation: self.installation,
            request: DeploymentRequest {
                git_ref: sha,
                task: DEPLOY_TASK.to_owned(),
                auto_merge: false,
                required_contexts: self.required_contexts.clone(),
                environment: self.environment.clone(),
                payload: json!({
                    "environment": self.environment,
                    "deploy_user": self.deploy_user,
                    "tag": self.tag,
                }),
                description: self.description.clone(),
                production_environment: self.production_environment,
                transient_environment: self.transient_environment,
            },
            gate: None,
        }
    }
}
