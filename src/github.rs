//! A thin client for the two GitHub REST endpoints deployhook calls: create a deployment and
//! create a deployment status. One `reqwest::Client`, built once with GitHub's headers and
//! timeouts; one method per endpoint; errors that keep GitHub's status and message.
//! Server errors and network failures are retried with exponential backoff.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::GitHubConfig;
use crate::ids::{CommitSha, DeploymentId, Environment, RepoName};

/// The REST API version deployhook is written against.
const API_VERSION: &str = "2022-11-28";
/// Bound on establishing a connection to GitHub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole request, connection to last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often and how patiently to retry server errors and network failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one.
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts over about seven seconds: rides out a deploy of GitHub's API or a
    /// dropped connection, without holding a status back for long.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_secs(1),
        }
    }
}

/// What GitHub did with a create-deployment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatedDeployment {
    /// 201: the deployment exists; its `deployment` webhook follows.
    Created(DeploymentId),
    /// 202: GitHub merged the default branch into the ref instead and created nothing
    /// (only happens with `auto_merge: true`). Carries GitHub's message.
    MergedInstead(String),
}

/// A call to GitHub that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub answered with an error status (after retries, for 5xx).
    #[error("GitHub answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    /// No answer (after retries): connection refused, timeout, TLS failure…
    #[error("could not reach GitHub: {0}")]
    Transport(#[source] reqwest::Error),
    /// A 2xx whose body is not what the API documents.
    #[error("GitHub's answer could not be read: {0}")]
    Decode(#[source] reqwest::Error),
}

/// The body of `POST /repos/{owner}/{repo}/deployments`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeploymentRequest {
    #[serde(rename = "ref")]
    pub git_ref: CommitSha,
    pub task: String,
    pub auto_merge: bool,
    pub required_contexts: Vec<String>,
    pub environment: Environment,
    pub payload: serde_json::Value,
    pub description: String,
}

/// The states of a deployment status that deployhook posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Queued,
    InProgress,
    Success,
    Failure,
    Error,
}

/// The body of `POST /repos/{owner}/{repo}/deployments/{id}/statuses`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusRequest {
    pub state: DeploymentState,
    /// At most 140 characters; see [`crate::text::description`].
    pub description: String,
}

#[derive(Deserialize)]
struct CreatedBody {
    id: Option<DeploymentId>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// The client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct GitHubClient {
    http: reqwest::Client,
    api_url: String,
    token: SecretString,
    retry: RetryPolicy,
}

impl GitHubClient {
    pub fn new(config: &GitHubConfig) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "X-GitHub-Api-Version",
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("deployhook/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            api_url: config.api_url.clone(),
            token: config.token.clone(),
            retry: config.retry,
        })
    }

    /// `POST /repos/{owner}/{repo}/deployments`.
    pub async fn create_deployment(
        &self,
        repo: &RepoName,
        request: &DeploymentRequest,
    ) -> Result<CreatedDeployment, GitHubError> {
        let path = format!("/repos/{repo}/deployments");
        let response = self.send(Method::POST, &path, request).await?;
        let status = response.status();
        let body: CreatedBody = response.json().await.map_err(GitHubError::Decode)?;
        match (status, body.id) {
            (StatusCode::CREATED, Some(id)) => Ok(CreatedDeployment::Created(id)),
            _ => Ok(CreatedDeployment::MergedInstead(
                body.message
                    .unwrap_or_else(|| format!("GitHub answered {status}")),
            )),
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
        self.send(Method::POST, &path, status).await.map(drop)
    }

    /// Sends a JSON request, retrying 5xx answers and network failures; returns the first
    /// 2xx response, or the error of the last attempt.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<reqwest::Response, GitHubError> {
        let url = format!("{}{path}", self.api_url);
        let mut auth = HeaderValue::try_from(format!("Bearer {}", self.token.expose_secret()))
            .map_err(|_| GitHubError::Status {
                status: StatusCode::UNAUTHORIZED,
                message: "GITHUB_TOKEN contains characters not allowed in a header".into(),
            })?;
        auth.set_sensitive(true);
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let result = self
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, auth.clone())
                .json(body)
                .send()
                .await;
            let retryable = match &result {
                Ok(response) => response.status().is_server_error(),
                Err(err) => err.is_timeout() || err.is_connect() || err.is_request(),
            };
            if !retryable || attempt >= self.retry.attempts {
                return match result {
                    Ok(response) if response.status().is_success() => Ok(response),
                    Ok(response) => Err(error_from(response).await),
                    Err(err) => Err(GitHubError::Transport(err.without_url())),
                };
            }
            let why = match &result {
                Ok(response) => response.status().to_string(),
                Err(err) => err.to_string(),
            };
            tracing::warn!(%method, path, attempt, retry_in = ?delay, "GitHub call failed ({why}); retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }
}

/// Turns an error response into a [`GitHubError`] carrying GitHub's own explanation.
async fn error_from(response: reqwest::Response) -> GitHubError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(ErrorBody {
            message: Some(message),
            errors,
        }) if errors.is_empty() => message,
        Ok(ErrorBody {
            message: Some(message),
            errors,
        }) => format!("{message} ({})", serde_json::Value::Array(errors)),
        _ => crate::text::description(text.trim()),
    };
    GitHubError::Status { status, message }
}
