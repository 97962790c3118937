//! The Deployments API: create a deployment (for a merge, or by hand), find one after an
//! attempt whose answer was lost, post a deployment status, and list recent deployments
//! with their latest state. Also the App's installation on a repository, which every call
//! of a repository webhook's delivery needs in App mode.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::github::{GitHubClient, GitHubError};
use crate::model::{DeploymentId, DeploymentRequest, RepoName, StatusRequest};

/// What GitHub did with a create-deployment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatedDeployment {
    /// 201: the deployment exists; its `deployment` webhook follows.
    Created(DeploymentId),
    /// 202: GitHub merged the default branch into the ref instead and created nothing
    /// (only happens with `auto_merge: true`). Carries GitHub's message.
    MergedInstead(String),
}

#[derive(Deserialize)]
struct CreatedBody {
    id: Option<DeploymentId>,
    message: Option<String>,
}

/// An element of `GET /repos/{owner}/{repo}/deployments`.
#[derive(Deserialize)]
struct ListedDeployment {
    id: DeploymentId,
    #[serde(default)]
    payload: serde_json::Value,
    /// A preview's deploy and its destroy share commit, environment and payload.
    task: Option<String>,
}

/// What `deployhook deploy` asks GitHub for.
#[derive(Debug, Clone, Serialize)]
pub struct ManualDeployment {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub environment: String,
    pub task: String,
    /// Off: deploy exactly this ref, not a merge of the default branch into it.
    pub auto_merge: bool,
    /// Empty: a person decided; GitHub does not wait for commit statuses.
    pub required_contexts: Vec<String>,
    pub payload: serde_json::Value,
    pub description: String,
}

impl ManualDeployment {
    pub fn new(git_ref: &str, environment: &str, task: &str, who: &str) -> Self {
        Self {
            git_ref: git_ref.to_owned(),
            environment: environment.to_owned(),
            task: task.to_owned(),
            auto_merge: false,
            required_contexts: vec![],
            payload: json!({ "environment": environment, "deploy_user": who }),
            description: crate::model::text::description(&format!(
                "Deploy {git_ref} by {who} (deployhook deploy)"
            )),
        }
    }
}

/// A deployment as listed, with its latest status.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub id: DeploymentId,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    pub environment: String,
    pub task: Option<String>,
    pub created_at: String,
    pub creator: Option<Creator>,
    /// What its creator put in it; a rollback says `"rollback": true` and `rolled_back`.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Filled from the statuses endpoint.
    #[serde(skip)]
    pub state: Option<String>,
    #[serde(skip)]
    pub status_description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Creator {
    pub login: String,
}

#[derive(Deserialize)]
struct Status {
    state: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

impl GitHubClient {
    /// `POST /repos/{owner}/{repo}/deployments`.
    pub async fn create_deployment(
        &self,
        repo: &RepoName,
        request: &DeploymentRequest,
    ) -> Result<CreatedDeployment, GitHubError> {
        let path = format!("/repos/{repo}/deployments");
        let response = self
            .send("create_deployment", Method::POST, &path, Some(request))
            .await?;
        let status = response.status();
        let body: CreatedBody = response.json().await.map_err(GitHubError::Decode)?;
        match (status, body.id) {
            (StatusCode::CREATED, Some(id)) => Ok(CreatedDeployment::Created(id)),
            (StatusCode::ACCEPTED, _) => Ok(CreatedDeployment::MergedInstead(
                body.message.unwrap_or_else(|| "no message".to_owned()),
            )),
            _ => Err(GitHubError::Status {
                status,
                message: "an answer the Deployments API does not document".to_owned(),
                retry_after: None,
            }),
        }
    }

    /// `POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses`.
    pub async fn create_deployment_status(
        &self,
        repo: &RepoName,
        deployment: DeploymentId,
        status: &StatusRequest,
    ) -> Result<(), GitHubError> {
        let path = format!("/repos/{repo}/deployments/{deployment}/statuses");
        self.send(
            "create_deployment_status",
            Method::POST,
            &path,
            Some(status),
        )
        .await
        .map(drop)
    }

    /// The deployment deployhook created for `request` (same commit and environment, and
    /// the same pull request, promotion and rollback in its payload), if GitHub has one: after an
    /// attempt whose answer was lost, this tells whether it created the deployment anyway.
    pub async fn find_deployment(
        &self,
        repo: &RepoName,
        request: &DeploymentRequest,
    ) -> Result<Option<DeploymentId>, GitHubError> {
        let query = serde_urlencoded::to_string([
            ("sha", request.git_ref.as_ref()),
            ("environment", request.environment.as_ref()),
            ("per_page", "100"),
        ])
        .unwrap_or_default();
        let path = format!("/repos/{repo}/deployments?{query}");
        let response = self
            .send("list_deployments", Method::GET, &path, None::<&()>)
            .await?;
        let listed: Vec<ListedDeployment> = response.json().await.map_err(GitHubError::Decode)?;
        let same = |d: &ListedDeployment, key: &str| d.payload.get(key) == request.payload.get(key);
        Ok(listed
            .into_iter()
            .find(|d| {
                same(d, "pull_request")
                    && same(d, "promoted_from")
                    && same(d, "rolled_back")
                    && d.task.as_deref().is_none_or(|t| t == request.task)
            })
            .map(|d| d.id))
    }

    /// In App mode, this client acting for the App's installation on `repo`; with a token,
    /// the client itself.
    pub async fn for_repository(&self, repo: &RepoName) -> Result<Self, GitHubError> {
        if !self.is_app() {
            return Ok(self.clone());
        }
        let path = format!("/repos/{repo}/installation");
        let response = self
            .as_app()
            .send("repository_installation", Method::GET, &path, None::<&()>)
            .await?;
        let installation: Installation = response.json().await.map_err(GitHubError::Decode)?;
        Ok(self.for_installation(Some(installation.id)))
    }

    /// Creates `deployment` on `repo`; its id, or GitHub's explanation of a 202.
    pub async fn create_manual_deployment(
        &self,
        repo: &RepoName,
        deployment: &ManualDeployment,
    ) -> Result<Result<DeploymentId, String>, GitHubError> {
        let path = format!("/repos/{repo}/deployments");
        let response = self
            .send("create_deployment", Method::POST, &path, Some(deployment))
            .await?;
        let created: CreatedBody = response.json().await.map_err(GitHubError::Decode)?;
        Ok(created.id.ok_or_else(|| {
            created
                .message
                .unwrap_or_else(|| "no deployment created".into())
        }))
    }

    /// The newest `limit` deployments of `repo` (of one environment), each with its latest
    /// status.
    pub async fn recent_deployments(
        &self,
        repo: &RepoName,
        environment: Option<&str>,
        limit: u8,
    ) -> Result<Vec<Listed>, GitHubError> {
        let mut query = vec![("per_page", limit.to_string())];
        if let Some(environment) = environment {
            query.push(("environment", environment.to_owned()));
        }
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        let path = format!("/repos/{repo}/deployments?{query}");
        let response = self
            .send("list_deployments", Method::GET, &path, None::<&()>)
            .await?;
        let mut listed: Vec<Listed> = response.json().await.map_err(GitHubError::Decode)?;
        for deployment in &mut listed {
            let path = format!(
                "/repos/{repo}/deployments/{}/statuses?per_page=1",
                deployment.id
            );
            let response = self
                .send("list_deployment_statuses", Method::GET, &path, None::<&()>)
                .await?;
            let statuses: Vec<Status> = response.json().await.map_err(GitHubError::Decode)?;
            if let Some(latest) = statuses.into_iter().next() {
                deployment.state = Some(latest.state);
                deployment.status_description = latest.description;
            }
        }
        Ok(listed)
    }
}
