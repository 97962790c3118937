//! What a failed call to GitHub means: [`GitHubError`] says whether a retry can help,
//! how long a rate limit asks to wait, and what an operator should fix when it cannot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

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
    /// No answer: connection refused, timeout, TLS failure… Said with the URL and the root
    /// cause (reqwest's own text is "error sending request", which says neither).
    #[error("could not reach GitHub{}: {}", at(.0), cause(.0))]
    Transport(reqwest::Error),
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

/// ` at https://host/path` of a failed request (no query: nothing there is secret today,
/// but a URL in a log should not carry one).
fn at(err: &reqwest::Error) -> String {
    err.url().map_or_else(String::new, |url| {
        format!(
            " at {}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + url.path()
    })
}

/// What actually went wrong, from the innermost errors of the chain: "connection refused",
/// "dns error: …", "invalid peer certificate: …", or a timeout. For any HTTP call the
/// commands make, not only GitHub's.
pub fn cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time (timed out)".to_owned();
    }
    const SAID_NOTHING: [&str; 4] = [
        "error sending request",
        "client error (Connect)",
        "client error (SendRequest)",
        "tcp connect error",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = next {
        let text = error.to_string();
        let text = if text.starts_with("error sending request for url") {
            String::new()
        } else {
            text
        };
        if !text.is_empty() && !SAID_NOTHING.contains(&text.as_str()) && !parts.contains(&text) {
            parts.push(text);
        }
        next = error.source();
    }
    if parts.is_empty() {
        return err.to_string();
    }
    parts.join(": ")
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

    /// Whether GitHub itself is failing: no answer, or a gateway that could not reach it
    /// (502, 503, 504). Every call would fail the same way for now, not only this one. A
    /// 500 may be this call's own (an endpoint or a payload GitHub chokes on), so it does
    /// not count: one bad call must not hold up its installation's others.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => matches!(status.as_u16(), 502..=504),
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

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
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
        _ => crate::model::text::description(text.trim()),
    };
    GitHubError::Status {
        status,
        message,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_answer_is_said_with_the_url_and_the_root_cause_once() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/repos/acme/widgets/deployments?per_page=1");
        let err = reqwest::get(&url).await.unwrap_err();
        let said = format!("{:#}", anyhow::Error::new(GitHubError::Transport(err)));
        assert!(
            said.starts_with(&format!(
                "could not reach GitHub at http://127.0.0.1:{port}/repos/acme/widgets/deployments: "
            )),
            "{said}"
        );
        assert!(said.to_lowercase().contains("connection refused"), "{said}");
        assert!(!said.contains("error sending request"), "{said}");
        assert!(
            !said.contains("per_page"),
            "no query in the message: {said}"
        );
    }
}
