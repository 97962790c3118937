//! `deployhook log ID [--follow]` and `deployhook deploy … --follow`: a deployment's log
//! from the running server, through the admin API (`GET /api/deployments/{id}` for its
//! state and log path, then the log itself). Following waits for the deployment event to
//! arrive and for the deploy to start, streams the log to its end, and exits with the
//! outcome, so a script or a terminal can wait on a deploy like on any other command.
//! Before the log, a header says what the deploy follows and brings (`header`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::LogArgs;
use crate::cli::api::{self, Kind, admin_token, unreachable};
use crate::cli::terminal::{LogFilter, errln, field, outln, print_error};

/// What a deployment's answer must hold.
const DEPLOYMENT: api::Shape<'static> = &[
    ("/deployment/state", Kind::Text),
    ("/deployment/log_path", Kind::Text),
];

mod header;

/// How often the deployment's state is asked for while it is not running yet.
const POLL: Duration = Duration::from_secs(1);
/// How long to wait for GitHub's deployment event before giving up: past it, the webhook
/// is most likely not delivering (or the deployment is for another system).
const EVENT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Without --follow, how long the log of a running deploy may be silent before the command
/// stops reading (it prints what is there, not what is to come).
const SNAPSHOT_IDLE: Duration = Duration::from_millis(500);
/// After the log ends, how long the final state may take to be recorded.
const END_WAIT: Duration = Duration::from_secs(30);
/// While a deployment stays queued for the same reason, how often that is said again: a
/// terminal left open shows it still waits, and for how long.
const REMIND: Duration = Duration::from_secs(60);

/// `deployhook log ID [--follow]`.
pub async fn log(args: LogArgs) -> anyhow::Result<ExitCode> {
    if args.follow {
        return Ok(follow_or_say(&args.server.server, args.deployment).await);
    }
    let server = Server::new(&args.server.server)?;
    let Some(deployment) = server.deployment(args.deployment).await? else {
        bail!(
            "deployhook has no deployment {}: GitHub has not sent its deployment event (yet), \
             or this server does not run its environment",
            args.deployment
        );
    };
    let state = text(&deployment["state"]).to_owned();
    if state == "queued" || state == "approval" {
        outln!(
            "deployment {} is {} ({}): it has no log yet",
            args.deployment,
            if state == "queued" {
                "queued"
            } else {
                "waiting for approval"
            },
            queued_reason(&deployment)
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A verifying deploy's log still grows: each check writes a line.
    let live = state == "running" || state == "verifying";
    let idle = live.then_some(SNAPSHOT_IDLE);
    print_header(&deployment);
    server.stream(text(&deployment["log_path"]), idle).await?;
    if live {
        errln!(
            "(still running: `deployhook log {} --follow` streams it to its end)",
            args.deployment
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit code when following itself failed (the server could not be reached, the
/// deployment event never came…): apart from the deploy's own outcomes, so a script can
/// tell "the deploy failed" from "could not tell".
pub const COULD_NOT_FOLLOW: u8 = 4;

/// [`follow`] on the server at `base`, its own failures said on stderr and exited with
/// [`COULD_NOT_FOLLOW`].
pub async fn follow_or_say(base: &str, id: u64) -> ExitCode {
    let followed = match Server::new(base) {
        Ok(server) => follow(&server, id).await,
        Err(err) => Err(err),
    };
    followed.unwrap_or_else(|err| {
        print_error(format_args!("{err:#}"));
        ExitCode::from(COULD_NOT_FOLLOW)
    })
}

/// Waits for `id` to run, streams its log to the end, and exits with its outcome.
pub async fn follow(server: &Server, id: u64) -> anyhow::Result<ExitCode> {
    let started = tokio::time::Instant::now();
    let mut said = String::new();
    let mut reminded = started;
    let deployment = loop {
        match server.deployment(id).await? {
            None if started.elapsed() > EVENT_WAIT => bail!(
                "deployhook received no deployment event for {id} in {}: check the webhook's \
                 recent deliveries on GitHub (and that it sends `deployment` events)",
                humantime::format_duration(EVENT_WAIT)
            ),
            None => say(
                &mut said,
                format!("waiting for GitHub's deployment event for {id}…"),
            ),
            Some(deployment) if matches!(text(&deployment["state"]), "queued" | "approval") => {
                let waits = match text(&deployment["state"]) {
                    "queued" => "is queued",
                    _ => "waits for approval",
                };
                let message = format!("deployment {id} {waits}: {}", queued_reason(&deployment));
                if message != said {
                    reminded = tokio::time::Instant::now();
                    say(&mut said, message);
                } else if reminded.elapsed() >= REMIND {
                    reminded = tokio::time::Instant::now();
                    let waited = Duration::from_secs(started.elapsed().as_secs());
                    errln!(
                        "deployment {id} is still queued after {}: {}",
                        humantime::format_duration(waited),
                        queued_reason(&deployment)
                    );
                }
            }
            Some(deployment) => break deployment,
        }
        tokio::time::sleep(POLL).await;
    };
    print_header(&deployment);
    server.stream(text(&deployment["log_path"]), None).await?;
    // Every line is stored before the end is; the end follows within moments.
    let deadline = tokio::time::Instant::now() + END_WAIT;
    loop {
        let state = server
            .deployment(id)
            .await?
            .map(|d| text(&d["state"]).to_owned())
            .unwrap_or_default();
        if let Some(code) = exit_code(&state) {
            errln!("deployment {id}: {state}");
            return Ok(code);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the log of deployment {id} ended, but its outcome was not recorded (state {state:?})"
            );
        }
        tokio::time::sleep(POLL / 4).await;
    }
}

/// What the deploy follows and brings, before its log (see [`header`]).
fn print_header(deployment: &Value) {
    for line in header::lines(deployment) {
        errln!("{line}");
    }
}

/// The exit code for a final state; `None` while it is not final.
pub fn exit_code(state: &str) -> Option<ExitCode> {
    Some(ExitCode::from(match state {
        "success" => 0,
        "failure" => 1,
        "error" => 2,
        "inactive" | "finished" => 3,
        _ => return None,
    }))
}

/// Prints a waiting message to stderr once, not once per poll.
fn say(said: &mut String, message: String) {
    if *said != message {
        errln!("{message}");
        *said = message;
    }
}

/// What holds a queued deployment, as the server says it: the lock on its environment
/// (who, since when, why), or the deploy running ahead of it. A server too old to say
/// leaves its queued status's description.
fn queued_reason(deployment: &Value) -> String {
    let reason = deployment["waiting"]["reason"].as_str();
    let description = text(&deployment["description"]);
    match reason {
        Some(reason) if !reason.is_empty() => field(reason).into_owned(),
        _ if !description.is_empty() => field(description).into_owned(),
        _ => "no lock nor deploy ahead holds it: it starts as soon as a deploy slot is free"
            .to_owned(),
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The running server, as the admin API reaches it.
#[derive(Debug)]
pub struct Server {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Server {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Self::with_token(base, admin_token(base)?)
    }

    /// The server at `base`, reached with `token` rather than `DEPLOYHOOK_ADMIN_TOKEN`
    /// (`try`, which made the token up).
    pub fn with_token(base: &str, token: String) -> anyhow::Result<Self> {
        // No total timeout and no read timeout: a log streams for as long as its deploy
        // runs (the deploy has its own timeout), and a deploy may print nothing for many
        // minutes (a build step). A dead server or network is noticed by TCP keepalive.
        let client = api::client(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .tcp_keepalive(Duration::from_secs(30)),
        )?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    /// The deployment as the server knows it; `None` before its event arrived.
    async fn deployment(&self, id: u64) -> anyhow::Result<Option<Value>> {
        let url = format!("{}/api/deployments/{id}", self.base);
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|err| unreachable(&url, &err))?;
        let (status, answer) = api::json_answer(&url, response).await?;
        match status {
            s if s.is_success() => {
                api::check_shape(&url, &answer, DEPLOYMENT)?;
                Ok(Some(answer["deployment"].clone()))
            }
            reqwest::StatusCode::NOT_FOUND if !self.api_off(&answer) => Ok(None),
            _ => bail!(
                "deployhook answered {status}: {}",
                answer["error"].as_str().unwrap_or("no explanation")
            ),
        }
    }

    /// The 404 of a server whose admin API is off is not "not yet".
    fn api_off(&self, answer: &Value) -> bool {
        text(&answer["error"]).starts_with("the admin API is off")
    }

    /// Copies the log at `path` to stdout until it ends, or, with `idle`, until it has
    /// been silent that long, through a [`LogFilter`]: the deploy's colours pass, no
    /// other escape sequence does.
    async fn stream(&self, path: &str, idle: Option<Duration>) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|err| unreachable(&url, &err))?;
        api::check_log(&url, &response)?;
        let mut response = response;
        let mut filter = LogFilter::default();
        let mut out = std::io::stdout();
        loop {
            let next = match idle {
                Some(idle) => match tokio::time::timeout(idle, response.chunk()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => response.chunk().await,
            };
            let Some(chunk) = next.context("the log stream broke off")? else {
                break;
            };
            out.write_all(&filter.push(&chunk))?;
            out.flush()?;
        }
        out.write_all(&filter.finish())?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_final_state_has_its_own_exit_code_and_others_none() {
        let code = |state| exit_code(state).map(|c| format!("{c:?}"));
        assert_eq!(code("success"), Some(format!("{:?}", ExitCode::from(0))));
        assert_eq!(code("failure"), Some(format!("{:?}", ExitCode::from(1))));
        assert_eq!(code("error"), Some(format!("{:?}", ExitCode::from(2))));
        assert_eq!(code("inactive"), Some(format!("{:?}", ExitCode::from(3))));
        assert_eq!(code("running"), None);
        assert_eq!(code("queued"), None);
    }
}
