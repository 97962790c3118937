//! The command line: its definition ([`args`]), and one module per command, each turning
//! its arguments and the environment into the call of the library that does the work; the
//! commands that use the running server's admin API reach it through [`api`].
//! [`run`] is the one `match` that dispatches them; `main.rs` only reads `.env`, parses,
//! and calls it. Everything the commands print goes through [`terminal`], which shows
//! control characters instead of letting them drive the operator's terminal.
//!
//! May use: every other folder. Nothing imports `cli` but the binary.

pub mod admin;
pub mod api;
pub mod approvals;
pub mod args;
pub mod audit;
pub mod calls;
pub mod check_config;
pub mod deliveries;
pub mod deploy;
pub mod env_file;
pub mod follow;
pub mod redeliver;
pub mod replay;
pub mod serve;
pub mod stand_in;
pub mod telemetry;
pub mod terminal;
pub mod trial;
pub mod user;

use std::process::ExitCode;

pub use args::{
    ApproveArgs, AuditArgs, CallAction, CallsArgs, CheckConfigArgs, Cli, Command, CompletionsArgs,
    DeliveriesArgs, DeployArgs, DeploymentsArgs, GitHubArgs, LockArgs, LogArgs, LogFormat,
    RedeliverArgs, RejectArgs, ReplayArgs, RollbackArgs, ServeArgs, ServerArgs, StandInArgs,
    TryArgs, UnlockArgs, VERSION,
};

use crate::config::GitHubConfig;
use crate::github::GitHubClient;
use crate::model::RepoName;

/// Runs `command` to its end; its exit code.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Redeliver(args) => redeliver::run(args).await,
        Command::Deploy(args) => deploy::run(args).await,
        Command::Deployments(args) => deploy::list(args).await,
        Command::Lock(args) => admin::lock(args).await,
        Command::Unlock(args) => admin::unlock(args).await,
        Command::Locks(args) => admin::locks(args).await,
        Command::Rollback(args) => admin::rollback(args).await,
        Command::Log(args) => follow::log(args).await,
        Command::Completions(args) => Ok(completions(&args)),
        Command::Calls(args) => calls::run(args).await,
        Command::Deliveries(args) => deliveries::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Approvals(args) => approvals::list(args).await,
        Command::Approve(args) => approvals::approve(args).await,
        Command::Reject(args) => approvals::reject(args).await,
        Command::StandIn(args) => stand_in::run(args).await,
        Command::Try(args) => trial::run(args).await,
    }
}

/// `deployhook completions SHELL`: the script, on stdout.
fn completions(args: &CompletionsArgs) -> ExitCode {
    use clap::CommandFactory;
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "deployhook",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}

/// Reads a setting from the process environment (and so from `.env`).
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The GitHub client of the commands, with the credentials `serve` would use.
fn github(args: &GitHubArgs) -> anyhow::Result<GitHubClient> {
    let auth = serve::github_auth(&process_env)?;
    let config = GitHubConfig {
        api_url: args.github_api_url.trim_end_matches('/').to_owned(),
        auth,
    };
    GitHubClient::new(&config)
}

/// A failed GitHub call, with what to fix when retrying cannot help (the server's log says
/// the same for its own calls).
fn explained(app: bool) -> impl Fn(crate::github::GitHubError) -> anyhow::Error {
    move |err| match err.hint(app) {
        Some(hint) => anyhow::anyhow!("{err}: {hint}"),
        None => anyhow::Error::new(err),
    }
}

fn repository(name: &str) -> anyhow::Result<RepoName> {
    RepoName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}
