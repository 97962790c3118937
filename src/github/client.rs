//! The client every call to GitHub's REST API goes through: one `reqwest::Client`, built
//! once with GitHub's headers and timeouts; the credentials (a token, or a GitHub App's
//! installation tokens); one attempt per call. The endpoints are methods of [`GitHubClient`]
//! in the modules beside this one. Retrying is the outbox's job
//! ([`crate::github::outbox_worker`]): errors say whether a retry can help and, for rate
//! limits, when.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::config::{GitHubAuth, GitHubConfig};
use crate::github::app_auth::{AppCredentials, Clock, InstallationTokens, SystemClock};
use crate::github::error::{GitHubError, error_from};
use crate::metrics::Metrics;

/// The REST API version deployhook is written against.
const API_VERSION: &str = "2022-11-28";
/// Bound on establishing a connection to GitHub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole request, connection to last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
        sent.map_err(GitHubError::Transport)
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
