//! `deployhook deploy` and `deployhook deployments`: manual deploys, rollbacks and a look
//! at what was deployed, from the command line, through GitHub's Deployments API. A manual
//! deploy is an ordinary GitHub deployment: GitHub sends its `deployment` event and the
//! server runs it like any other, with its queue, log and statuses.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::github::{GitHubClient, GitHubError};
use crate::ids::{DeploymentId, RepoName};

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
            description: crate::text::description(&format!(
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

#[derive(Deserialize)]
struct Created {
    id: Option<DeploymentId>,
    message: Option<String>,
}

impl GitHubClient {
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
        let created: Created = response.json().await.map_err(GitHubError::Decode)?;
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

/// The table `deployhook deployments` prints.
pub fn table(deployments: &[Listed]) -> String {
    let mut out = format!(
        "{:<12} {:<12} {:<12} {:<9} {:<20} {:<16} {}\n",
        "DEPLOYMENT", "ENVIRONMENT", "STATE", "SHA", "CREATED", "BY", "REF / DESCRIPTION"
    );
    for d in deployments {
        let sha: String = d.sha.chars().take(7).collect();
        let by = d.creator.as_ref().map_or("?", |c| c.login.as_str());
        let state = d.state.as_deref().unwrap_or("(no status)");
        let task = d.task.as_deref().filter(|t| *t != "deploy");
        let mut what = d.git_ref.clone();
        if let Some(task) = task {
            what.push_str(&format!(" [{task}]"));
        }
        if let Some(description) = &d.status_description {
            what.push_str(&format!(" — {description}"));
        }
        out.push_str(&format!(
            "{:<12} {:<12} {:<12} {:<9} {:<20} {:<16} {}\n",
            d.id.to_string(),
            d.environment,
            state,
            sha,
            d.created_at,
            by,
            what
        ));
    }
    out
}
