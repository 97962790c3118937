//! `verify`: how an environment checks, after its deploy command succeeded, that what it
//! deployed really works — an HTTP check or a command, repeated every `interval` until it
//! held for `hold_for`, within `timeout` — and what a failure does (`on_verify_failure`:
//! report it, or roll back to the last verified success). Validated in
//! `config::file::verify`; run by `deploy::verify`.

use std::time::Duration;

/// How often a check runs unless configured otherwise.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(5);
/// How long checks must keep passing unless configured otherwise.
pub const DEFAULT_HOLD_FOR: Duration = Duration::from_secs(30);
/// The whole verification's budget unless configured otherwise.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// One environment's verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyConfig {
    pub check: VerifyCheck,
    /// Between the starts of two checks.
    pub interval: Duration,
    /// How long checks must pass without a failure between them; zero: one passing check.
    pub hold_for: Duration,
    /// From the end of the deploy command: past it, the verification fails.
    pub timeout: Duration,
    pub on_failure: OnVerifyFailure,
}

/// What one check does.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyCheck {
    /// `GET url`: passes when the answer has `expect_status` and, if set, its body (the
    /// first [`crate::config::verify::MAX_VERIFY_BODY`] bytes) contains `body_contains`.
    Http {
        url: reqwest::Url,
        expect_status: u16,
        body_contains: Option<String>,
    },
    /// An argv run like the deploy command (same directory, same variables): exit status 0
    /// passes.
    Command(Vec<String>),
}

/// The bytes of an answer's body a check reads at most.
pub const MAX_VERIFY_BODY: usize = 64 * 1024;

/// `on_verify_failure`: what a failed verification does besides reporting `failure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnVerifyFailure {
    /// Report `failure`; what was deployed stays.
    #[default]
    Fail,
    /// Report `failure` and roll back at once to the last verified success, as
    /// `deployhook rollback` would.
    Rollback,
}

impl VerifyCheck {
    /// What is checked, for statuses and logs: `GET https://…/healthz` or `./check.sh`.
    pub fn what(&self) -> String {
        match self {
            Self::Http { url, .. } => format!("GET {}", shown_url(url)),
            Self::Command(argv) => argv.join(" "),
        }
    }
}

/// `url` as statuses, notifications, logs and `check-config` show it: without a user or
/// password, and with its query masked (`?***`), since either may carry a secret and a
/// status is read by everyone who can read the repository.
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Only a URL that cannot have them refuses these; an http(s) URL always can.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("***"));
    }
    shown.to_string()
}

impl VerifyConfig {
    /// A job's `in_progress` description while it is verified: `verifying: GET …`.
    pub fn verifying(&self) -> String {
        crate::model::text::description(&format!("verifying: {}", self.check.what()))
    }

    /// How `check-config` describes it.
    pub fn summary(&self) -> String {
        let expect = match &self.check {
            VerifyCheck::Http {
                expect_status,
                body_contains,
                ..
            } => {
                let body = body_contains
                    .as_ref()
                    .map_or_else(String::new, |b| format!(" containing {b:?}"));
                format!(" answering {expect_status}{body}")
            }
            VerifyCheck::Command(_) => " exiting 0".to_owned(),
        };
        format!(
            "verified by {}{expect} every {} until it holds {} (within {}){}",
            self.check.what(),
            humantime::format_duration(self.interval),
            humantime::format_duration(self.hold_for),
            humantime::format_duration(self.timeout),
            match self.on_failure {
                OnVerifyFailure::Fail => ", else failure",
                OnVerifyFailure::Rollback => ", else failure and a rollback",
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_shown_url_keeps_no_password_token_or_user() {
        let url = "https://deploy:hunter2@example.com:8443/healthz?token=s3cret&x=1"
            .parse()
            .unwrap();
        let shown = shown_url(&url);
        assert_eq!(shown, "https://example.com:8443/healthz?***");
        for secret in ["hunter2", "s3cret", "deploy"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let plain = "http://127.0.0.1:8080/health".parse().unwrap();
        assert_eq!(shown_url(&plain), "http://127.0.0.1:8080/health");
    }
}
