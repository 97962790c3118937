//! One check of a verification: `GET` a URL (a deadline, a bounded body, redirects only on
//! the same host) or run the verify command like the deploy command. Each says what it saw
//! in one line, for the deploy's log and, when it is the last failure, the status.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::EnvironmentConfig;
use crate::config::verify::{MAX_VERIFY_BODY, VerifyCheck};
use crate::deploy::log::LogSender;
use crate::deploy::runner::{RunOutcome, RunSpec};
use crate::model::DeployJob;

/// The longest one HTTP check waits for its answer (less when `interval` is shorter, at
/// least [`MIN_REQUEST_TIMEOUT`]).
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest deadline of one HTTP check.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Redirects an HTTP check follows at most (on the same host only).
const MAX_REDIRECTS: usize = 3;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Passed(String),
    Failed(String),
    /// Stopped by shutdown or a lost lead: neither passed nor failed.
    Stopped,
}

/// The client HTTP checks use: its own deadlines, and a redirect to another host is not
/// followed (judged as the redirect it is) — a health check that lands elsewhere does not
/// say the deployed service works, and the URL comes from the configuration, not from
/// whoever answers.
pub fn client() -> reqwest::Client {
    let same_host = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt
            .previous()
            .first()
            .and_then(|u| u.host_str().map(str::to_owned));
        if attempt.previous().len() > MAX_REDIRECTS || first.as_deref() != attempt.url().host_str()
        {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(same_host)
        .user_agent(concat!(
            "deployhook/",
            env!("CARGO_PKG_VERSION"),
            " (verify)"
        ))
        .connect_timeout(MAX_REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// Runs `check` once, within `budget` (what is left of the verification's timeout).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    check: &VerifyCheck,
    client: &reqwest::Client,
    environment: &EnvironmentConfig,
    job: &DeployJob,
    interval: Duration,
    budget: Duration,
    stop: &CancellationToken,
    hurry: &CancellationToken,
    log: &LogSender,
) -> Checked {
    match check {
        VerifyCheck::Http {
            url,
            expect_status,
            body_contains,
        } => {
            let deadline = interval
                .clamp(MIN_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT)
                .min(budget.max(Duration::from_millis(100)));
            tokio::select! {
                () = stop.cancelled() => Checked::Stopped,
                checked = http(client, url, *expect_status, body_contains.as_deref(), deadline) => checked,
            }
        }
        VerifyCheck::Command(argv) => {
            let Some(mut spec) = RunSpec::new(environment, crate::model::DEPLOY_TASK) else {
                return Checked::Failed("the environment is no longer configured".into());
            };
            spec.argv = argv;
            spec.timeout = budget.max(Duration::from_secs(1));
            // A verify command's process is not recorded: its budget ends it, and a restart
            // runs the check again rather than waiting for a leftover.
            let (spawned, _) = oneshot::channel();
            match spec.run(job, stop, hurry, spawned, log.clone()).await {
                RunOutcome::Succeeded { .. } => Checked::Passed(format!("{} exited 0", argv[0])),
                RunOutcome::Interrupted => Checked::Stopped,
                outcome => Checked::Failed(format!("{}: {}", argv[0], outcome.summary())),
            }
        }
    }
}

async fn http(
    client: &reqwest::Client,
    url: &reqwest::Url,
    expect: u16,
    contains: Option<&str>,
    deadline: Duration,
) -> Checked {
    let shown = crate::config::verify::shown_url(url);
    let asked = async {
        let mut answer = client.get(url.clone()).send().await?;
        let status = answer.status().as_u16();
        let mut body = Vec::new();
        if contains.is_some() {
            while body.len() < MAX_VERIFY_BODY {
                let Some(chunk) = answer.chunk().await? else {
                    break;
                };
                body.extend_from_slice(&chunk);
            }
            body.truncate(MAX_VERIFY_BODY);
        }
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = match tokio::time::timeout(deadline, asked).await {
        Err(_) => {
            return Checked::Failed(format!(
                "GET {shown} did not answer within {}",
                humantime::format_duration(deadline)
            ));
        }
        Ok(Err(err)) => return Checked::Failed(format!("GET {shown} failed: {}", reason(&err))),
        Ok(Ok(answer)) => answer,
    };
    if status != expect {
        return Checked::Failed(format!("GET {shown} answered {status} (expected {expect})"));
    }
    match contains {
        Some(text) if !String::from_utf8_lossy(&body).contains(text) => Checked::Failed(format!(
            "GET {shown} answered {status} without {text:?} in its body"
        )),
        _ => Checked::Passed(format!("GET {shown} answered {status}")),
    }
}

/// Why a request failed, in a few words: no connection, a timeout, a bad answer.
fn reason(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_redirect() {
        "too many redirects"
    } else if err.is_body() || err.is_decode() {
        "the body could not be read"
    } else {
        "the request failed"
    }
}
