//! A thin client for the GitHub REST endpoints deployhook calls: create a deployment, find
//! one, and create a deployment status. One `reqwest::Client`, built once with GitHub's
//! headers and timeouts; one method per endpoint; one attempt per call. Retrying is the
//! outbox's job ([`crate::outbox_worker`]): its errors say whether a retry can help and,
//! for rate limits, when.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::app_auth::{AppCredentials, Clock, InstallationTokens, SystemClock};
use crate::config::{GitHubAuth, GitHubConfig};
use crate::ids::{CommitSha, DeploymentId, Environment, RepoName};
use crate::metrics::Metrics;

/// The REST API version deployhook is written against.
const API_VERSION: &str = "2022-11-28";
/// Bound on establishing a connection to GitHub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole request, connection to last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// GitHub answered with an error status.
    #[error("GitHub answered {status}: {message}")]
    Status {
        status: StatusCode,
        message: String,
        /// For rate limits: how long GitHub asks us to wait.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, timeout, TLS failure…
    #[error("could not reach GitHub: {0}")]
    Transport(#[source] reqwest::Error),
    /// A 2xx whose body is not what the API documents.
    #[error("GitHub's answer could not be read: {0}")]
    Decode(#[source] reqwest::Error),
    /// App mode, and the delivery that led to this call named no installation.
    #[error(
        "the delivery named no GitHub App installation, so deployhook has no token for this \
         call: in App mode, connect repositories through the App's own webhook (Settings → \
         Developer settings → your App → Webhook), not a repository webhook"
    )]
    NoInstallation,
}

impl GitHubError {
    /// Whether the same call may succeed later: server errors, rate limits, no answer.
    /// Other client errors (401, 404, 409, 422…) will fail again the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status {
                status,
                retry_after,
                ..
            } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || (*status == StatusCode::FORBIDDEN && retry_after.is_some())
                    || self.is_secondary_rate_limit()
            }
            Self::Transport(_) => true,
            Self::Decode(_) | Self::NoInstallation => false,
        }
    }

    /// A secondary rate limit GitHub gave no wait for (no `retry-after`): the caller backs
    /// off, from a minute, as GitHub's documentation asks.
    pub fn is_secondary_rate_limit(&self) -> bool {
        match self {
            Self::Status {
                status,
                message,
                retry_after: None,
            } => {
                *status == StatusCode::TOO_MANY_REQUESTS
                    || (*status == StatusCode::FORBIDDEN
                        && message.to_ascii_lowercase().contains("rate limit"))
            }
            _ => false,
        }
    }

    /// For an error retrying cannot fix, what the operator should do about it.
    pub fn hint(&self, app: bool) -> Option<&'static str> {
        let Self::Status { status, .. } = self else {
            return None;
        };
        if self.is_retryable() {
            return None;
        }
        Some(match (*status, app) {
            (StatusCode::UNAUTHORIZED, false) => {
                "GITHUB_TOKEN is wrong, expired or revoked: create a new one with Deployments: \
                 read and write"
            }
            (StatusCode::UNAUTHORIZED, true) => {
                "GitHub refused the App's credentials: check GITHUB_APP_ID and that the private \
                 key is the App's current one"
            }
            (StatusCode::FORBIDDEN, false) => {
                "the token lacks a permission: it needs Deployments: read and write on this \
                 repository (classic tokens: repo_deployment)"
            }
            (StatusCode::FORBIDDEN, true) => {
                "the App lacks a permission: give it Deployments: read and write (Pull requests: \
                 read, Metadata: read), then accept the new permissions on the installation"
            }
            (StatusCode::NOT_FOUND, false) => {
                "the token cannot see this repository: grant it access to the repository"
            }
            (StatusCode::NOT_FOUND, true) => {
                "the App cannot see this repository: install the App on it (or give the \
                 installation access to it)"
            }
            _ => return None,
        })
    }

    /// How long GitHub asked us to wait, for a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
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
    /// At most 140 characters; see [`crate::text::description`].
    pub description: String,
    /// Where the deploy's output can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Where the deployed environment can be seen; sent with `success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
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
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// The client. Cheap to clone: clones share one connection pool and one token cache.
#[derive(Debug, Clone)]
pub struct GitHubClient {
    http: reqwest::Client,
    api_url: String,
    auth: Auth,
    /// The App installation the calls are made for, in App mode.
    installation: Option<u64>,
    /// App mode: authenticate as the App itself (its JWT), for the App's own endpoints.
    as_app: bool,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug, Clone)]
enum Auth {
    Token(SecretString),
    App(Arc<InstallationTokens>),
}

impl GitHubClient {
    pub fn new(config: &GitHubConfig) -> anyhow::Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A client whose App tokens expire by `clock` (tests move it).
    pub fn with_clock(config: &GitHubConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let http = http_client()?;
        let auth = match &config.auth {
            GitHubAuth::Token(token) => Auth::Token(token.clone()),
            GitHubAuth::App {
                app_id,
                private_key,
            } => {
                let credentials =
                    AppCredentials::from_pem(app_id, private_key.expose_secret().as_bytes())?;
                Auth::App(Arc::new(InstallationTokens::new(
                    http.clone(),
                    config.api_url.clone(),
                    credentials,
                    clock,
                )))
            }
        };
        Ok(Self {
            http,
            api_url: config.api_url.clone(),
            auth,
            installation: None,
            as_app: false,
            metrics: None,
        })
    }

    /// This client, authenticating as the App itself (App mode; ignored with a token).
    pub fn as_app(&self) -> Self {
        Self {
            as_app: true,
            installation: None,
            ..self.clone()
        }
    }

    /// This client, counting its calls in `metrics`.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics: Some(metrics),
            ..self
        }
    }

    /// This client, making its calls for `installation` (App mode; ignored with a token).
    pub fn for_installation(&self, installation: Option<u64>) -> Self {
        Self {
            installation,
            ..self.clone()
        }
    }

    /// Whether calls carry GitHub App installation tokens.
    pub fn is_app(&self) -> bool {
        matches!(self.auth, Auth::App(_))
    }

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

    /// The deployment of `sha` to `environment` that deployhook created for pull request
    /// `pull_request`, if GitHub has one: after an attempt whose answer was lost, this tells
    /// whether it created the deployment anyway.
    pub async fn find_deployment(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        environment: &Environment,
        pull_request: u64,
    ) -> Result<Option<DeploymentId>, GitHubError> {
        let query = serde_urlencoded::to_string([
            ("sha", sha.as_ref()),
            ("environment", environment.as_ref()),
            ("per_page", "100"),
        ])
        .unwrap_or_default();
        let path = format!("/repos/{repo}/deployments?{query}");
        let response = self
            .send("list_deployments", Method::GET, &path, None::<&()>)
            .await?;
        let listed: Vec<ListedDeployment> = response.json().await.map_err(GitHubError::Decode)?;
        Ok(listed
            .into_iter()
            .find(|d| d.payload.get("pull_request").and_then(|n| n.as_u64()) == Some(pull_request))
            .map(|d| d.id))
    }

    /// Sends one request; a non-2xx answer becomes a [`GitHubError`]. In App mode a 401
    /// means the cached installation token went bad (revoked, or the App's permissions
    /// changed): it is dropped and the request is sent once more with a fresh one.
    pub(crate) async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, GitHubError> {
        let response = self.send_once(endpoint, method.clone(), path, body).await?;
        match (&self.auth, self.installation) {
            (Auth::App(tokens), Some(installation))
                if response.status() == StatusCode::UNAUTHORIZED =>
            {
                tracing::warn!(
                    installation,
                    "GitHub refused the installation token (401); fetching a new one and trying once more"
                );
                tokens.invalidate(installation);
                let retried = self.send_once(endpoint, method, path, body).await?;
                checked(retried).await
            }
            _ => checked(response).await,
        }
    }

    async fn send_once(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, GitHubError> {
        let token = match (&self.auth, self.installation) {
            (Auth::App(tokens), _) if self.as_app => {
                return self
                    .send_with(endpoint, method, path, body, tokens.bearer()?)
                    .await;
            }
            (Auth::Token(token), _) => token.clone(),
            (Auth::App(tokens), Some(installation)) => tokens.token(installation).await?,
            (Auth::App(_), None) => return Err(GitHubError::NoInstallation),
        };
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
                GitHubError::Status {
                    status: StatusCode::UNAUTHORIZED,
                    message: "the token contains characters not allowed in a header".into(),
                    retry_after: None,
                }
            })?;
        auth.set_sensitive(true);
        self.send_with(endpoint, method, path, body, auth).await
    }

    async fn send_with(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        auth: HeaderValue,
    ) -> Result<reqwest::Response, GitHubError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .header(AUTHORIZATION, auth);
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = request.send().await;
        if let Some(metrics) = &self.metrics {
            let status = sent.as_ref().ok().map(|r| r.status().as_u16());
            metrics.github_call(endpoint, status);
        }
        sent.map_err(|err| GitHubError::Transport(err.without_url()))
    }
}

/// The HTTP client every call to GitHub goes through: GitHub's headers, and bounds on
/// connecting and on each whole request.
pub(crate) fn http_client() -> reqwest::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    headers.insert(
        "X-GitHub-Api-Version",
        HeaderValue::from_static(API_VERSION),
    );
    reqwest::Client::builder()
        .user_agent(concat!("deployhook/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
}

/// A 2xx answer, or the [`GitHubError`] an error answer means.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, GitHubError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(error_from(response).await)
    }
}

/// How long a rate-limited answer asks us to wait: `retry-after` (seconds), or the time
/// until `x-ratelimit-reset` when `x-ratelimit-remaining` is 0.
fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset")?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    None
}

/// Turns an error response into a [`GitHubError`] carrying GitHub's own explanation.
pub(crate) async fn error_from(response: reqwest::Response) -> GitHubError {
    let status = response.status();
    let retry_after = rate_limit_wait(response.headers());
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
    GitHubError::Status {
        status,
        message,
        retry_after,
    }
}
