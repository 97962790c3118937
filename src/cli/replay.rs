//! `deployhook replay`: posts a saved payload to a server the way GitHub would — the exact
//! bytes, signed, with a fresh `X-GitHub-Delivery` — and prints the answer. The way to try
//! deployhook without GitHub.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::ReplayArgs;
use crate::cli::terminal::outln;
use crate::webhook::signature;

/// Bound on the whole request; a healthy server answers in milliseconds.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server answered.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub body: String,
}

impl ReplayArgs {
    /// `--url`, else the webhook URL of the server this machine's settings describe:
    /// `DEPLOYHOOK_LISTEN` (as `serve` reads it, `.env` included), else the default port.
    pub fn target(&self, env: super::serve::EnvLookup<'_>) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let server = crate::cli::args::server_for_listen(env("DEPLOYHOOK_LISTEN"));
        format!("{server}/event_handler")
    }
}

/// Sends the delivery. `secret` signs it; `None` sends it unsigned.
pub async fn replay(args: &ReplayArgs, secret: Option<&str>) -> anyhow::Result<Reply> {
    let payload = tokio::fs::read(&args.file)
        .await
        .with_context(|| format!("could not read {}", args.file.display()))?;
    let (content_type, body) = if args.form {
        let text = String::from_utf8(payload).context("a form-encoded payload must be UTF-8")?;
        let form = serde_urlencoded::to_string([("payload", text)])?;
        ("application/x-www-form-urlencoded", form.into_bytes())
    } else {
        ("application/json", payload)
    };
    let url = args.target(&super::process_env);
    let client = reqwest::Client::builder()
        .user_agent(concat!(
            "GitHub-Hookshot/deployhook-replay-",
            env!("CARGO_PKG_VERSION")
        ))
        .timeout(REPLAY_TIMEOUT)
        .build()?;
    let mut request = client
        .post(&url)
        .header("Content-Type", content_type)
        .header("X-GitHub-Event", &args.event)
        .header("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string());
    if let Some(hook_id) = args.hook_id {
        request = request.header("X-GitHub-Hook-ID", hook_id.to_string());
    }
    if let Some(secret) = secret {
        request = request.header(
            "X-Hub-Signature-256",
            signature::sign(secret.as_bytes(), &body),
        );
    }
    let response = request.body(body).send().await.map_err(|err| {
        anyhow::anyhow!(
            "could not reach {url}: {} (is deployhook running there? --url names another \
             address)",
            crate::github::error::cause(&err)
        )
    })?;
    Ok(Reply {
        status: response.status(),
        body: response.text().await.unwrap_or_default(),
    })
}

/// The command: signs with `--secret`, or else the first of `GITHUB_WEBHOOK_SECRET`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let env_secret = std::env::var("GITHUB_WEBHOOK_SECRET").ok();
    // Of several secrets (a rotation), GitHub signs with the one set on the hook: the first.
    let secret = args.secret.clone().or_else(|| {
        env_secret
            .as_deref()
            .and_then(|list| list.split(',').map(str::trim).find(|s| !s.is_empty()))
            .map(str::to_owned)
    });
    let reply = replay(&args, secret.as_deref())
        .await
        .context("replay failed")?;
    outln!("{}", reply.status);
    outln!("{}", reply.body);
    Ok(if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn replay_args(extra: &[&str]) -> ReplayArgs {
        let argv = ["deployhook", "replay", "payload.json", "--event", "ping"];
        let Command::Replay(args) = Cli::try_parse_from(argv.iter().chain(extra))
            .unwrap()
            .command
        else {
            panic!("not replay");
        };
        args
    }

    #[test]
    fn replay_posts_where_the_settings_say_the_server_listens() {
        let none = |_: &str| None;
        let listen =
            |name: &str| (name == "DEPLOYHOOK_LISTEN").then(|| "127.0.0.1:4621".to_owned());
        let everywhere =
            |name: &str| (name == "DEPLOYHOOK_LISTEN").then(|| "0.0.0.0:8080".to_owned());
        let args = replay_args(&[]);
        assert_eq!(args.target(&none), "http://127.0.0.1:4567/event_handler");
        assert_eq!(args.target(&listen), "http://127.0.0.1:4621/event_handler");
        assert_eq!(
            args.target(&everywhere),
            "http://127.0.0.1:8080/event_handler"
        );
        let explicit = replay_args(&["--url", "http://example.test/event_handler"]);
        assert_eq!(
            explicit.target(&listen),
            "http://example.test/event_handler"
        );
    }
}
