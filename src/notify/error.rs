//! What a failed notification means: [`NotifyError`] says whether a retry can help (no
//! answer, a 5xx, a rate limit) or not (any other 4xx: the receiver refuses this message,
//! and would refuse it again), and never shows the receiver's URL, which is a secret.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;

/// The most of a receiver's error answer kept: enough for Slack's `invalid_payload` or a
/// short JSON error.
const MAX_MESSAGE_CHARS: usize = 200;

/// A message that did not reach its receiver.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The receiver answered with an error status.
    #[error("answered {status}{}", message_suffix(.message))]
    Status {
        status: StatusCode,
        message: String,
        /// For rate limits (429): how long the receiver asks to wait.
        retry_after: Option<Duration>,
    },
    /// The receiver answered with a redirect, which is not followed.
    #[error("answered {0}, a redirect: configure the address it redirects to")]
    Redirect(StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No answer: connection refused, DNS, TLS… (the text has no URL).
    #[error("could not reach it: {0}")]
    Transport(String),
    /// The row names a receiver no `[[notify]]` table has any more (the configuration
    /// changed since it was queued).
    #[error("no [[notify]] table sends to it any more")]
    Unconfigured,
}

impl NotifyError {
    /// Whether the same message may go through later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::Redirect(_) | Self::Unconfigured => false,
        }
    }

    /// How long the receiver asked to wait before the next attempt, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<reqwest::Error> for NotifyError {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout(crate::notify::SEND_TIMEOUT);
        }
        // reqwest's errors name the URL, and a webhook's URL is its credential.
        let err = err.without_url();
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Self::Transport(text)
    }
}

/// `Ok` for a 2xx answer; otherwise the error it means.
pub(super) async fn checked(response: reqwest::Response) -> Result<(), NotifyError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        return Err(NotifyError::Redirect(status));
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let message: String = one_line.chars().take(MAX_MESSAGE_CHARS).collect();
    Err(NotifyError::Status {
        status,
        message,
        retry_after,
    })
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_rate_limits_and_silence_are_retried_other_refusals_are_not() {
        let status = |code: u16| NotifyError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            message: "invalid_payload".into(),
            retry_after: None,
        };
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(NotifyError::Timeout(Duration::from_secs(5)).is_retryable());
        assert!(!NotifyError::Redirect(StatusCode::FOUND).is_retryable());
        assert_eq!(
            status(400).to_string(),
            "answered 400 Bad Request: invalid_payload"
        );
    }
}
