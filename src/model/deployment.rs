//! The deployments deployhook creates and runs, as every layer sees them: the job a
//! `deployment` event becomes, the deployment a merge asks for, and the bodies of the two
//! Deployments API calls with the states a status can carry. Decided by the guide's
//! handlers, queued by the store, run by the deploy worker, sent by the GitHub client.

use serde::{Deserialize, Serialize};

use crate::model::ids::{CommitSha, DeploymentId, Environment, RepoName};

/// The task deployhook asks for; the deploy command receives it as `DEPLOYHOOK_TASK`.
pub const DEPLOY_TASK: &str = "deploy";

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
    /// Where statuses point for the deployed environment (sent with `success`).
    pub environment_url: Option<String>,
    /// Where statuses point for the deploy's output; set by the server, which holds the key
    /// that makes these links unguessable.
    pub log_url: Option<String>,
    /// The GitHub App installation whose token posts its statuses (App mode).
    pub installation: Option<u64>,
}

/// A deployment to create, decided from a merged pull request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The base repository.
    pub repo: RepoName,
    pub pull_request: u64,
    /// The GitHub App installation whose token creates it (App mode).
    pub installation: Option<u64>,
    pub request: DeploymentRequest,
    /// When set, the deployment is created only once the merge commit's checks are green.
    pub gate: Option<crate::model::checks::Gate>,
}

/// A deployment to create once a commit has soaked in the environment it is promoted from.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub new: NewDeployment,
    /// The deployment whose success started the soak.
    pub from_deployment: DeploymentId,
    pub soak: std::time::Duration,
    /// `Latest`: a newer success replaces a promotion still soaking.
    pub policy: crate::model::policy::Policy,
}

/// The body of `POST /repos/{owner}/{repo}/deployments`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentRequest {
    #[serde(rename = "ref")]
    pub git_ref: CommitSha,
    pub task: String,
    pub auto_merge: bool,
    pub required_contexts: Vec<String>,
    pub environment: Environment,
    pub payload: serde_json::Value,
    pub description: String,
    /// Sent only when configured: GitHub then keeps its own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_environment: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_environment: Option<bool>,
}

/// The states of a deployment status that deployhook posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Waiting for people to approve it (an environment with `approvals`): not queued yet.
    Pending,
    Queued,
    InProgress,
    Success,
    Failure,
    Error,
    /// Never run: a newer deployment superseded it.
    Inactive,
}

impl DeploymentState {
    /// The state as GitHub spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
            Self::Inactive => "inactive",
        }
    }
}

/// The body of `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusRequest {
    pub state: DeploymentState,
    /// At most 140 characters; see [`crate::model::text::description`].
    pub description: String,
    /// Where the deploy's output can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Where the deployed environment can be seen; sent with `success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
}
