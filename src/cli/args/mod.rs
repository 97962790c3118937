//! The command line's definition: every command, flag and environment variable, as clap
//! parses them. Every setting of `serve` can come from a flag or from the environment
//! variable named in `--help` (and in the README's table); `serve` reads the two secrets
//! from the environment only, so they never show in `ps` or shell history. (`replay
//! --secret` exists for trying things out.)
//!
//! This file has the top-level [`Cli`] with its global flag and the [`Command`]s. Each
//! command's arguments, by what the command needs:
//! - `serve.rs`: [`ServeArgs`], every setting of the server;
//! - `admin.rs`: the commands that talk to the running server (`lock`, `unlock`, `locks`,
//!   `rollback`, `calls`, `deliveries`, `log`, `audit`) and [`ServerArgs`], how they reach
//!   it;
//! - `github.rs`: the commands that call GitHub (`deploy`, `deployments`, `redeliver`) and
//!   [`GitHubArgs`];
//! - `tools.rs`: `replay`, `check-config`, `completions`, `stand-in`, `try`.

use clap::{Parser, Subcommand, ValueEnum};

/// `deployhook --version`: the version and the commit it was built from (see `build.rs`),
/// so "which build is running?" has an answer after every upgrade.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DEPLOYHOOK_COMMIT"),
    ")"
);

mod admin;
mod github;
mod serve;
mod tools;

pub use admin::{
    ApproveArgs, AuditArgs, CallAction, CallsArgs, DeliveriesArgs, LockArgs, LogArgs, RejectArgs,
    RollbackArgs, ServerArgs, UnlockArgs, local_server, server_for_listen,
};
pub use github::{DeployArgs, DeploymentsArgs, GitHubArgs, RedeliverArgs};
pub use serve::ServeArgs;
pub use tools::{CheckConfigArgs, CompletionsArgs, ReplayArgs, StandInArgs, TryArgs};

/// A self-hosted deploy-on-merge server for GitHub.
///
/// Receives `pull_request`, `deployment` and `deployment_status` webhooks at
/// `POST /event_handler`: a merged pull request creates a GitHub deployment, and the
/// deployment event runs your deploy command and reports its statuses back to GitHub.
/// Settings are read from flags, the environment, and a `.env` file in the working directory
/// (or the file `--env-file` names).
#[derive(Debug, Parser)]
#[command(version = VERSION, propagate_version = true)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG.
    #[arg(
        long,
        global = true,
        env = "DEPLOYHOOK_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Read settings from FILE (KEY=value lines, as .env.example) instead of `.env` in the
    /// working directory; variables already set in the environment win. The Debian
    /// package's service reads /etc/deployhook/env this way; so can commands run on that
    /// host: `sudo deployhook --env-file /etc/deployhook/env locks`.
    #[arg(long, global = true, value_name = "FILE")]
    pub env_file: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start and moved once: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve(ServeArgs),
    /// Sign a saved payload and post it to a running server, the way GitHub would.
    Replay(ReplayArgs),
    /// Try deployhook on this machine in one command, without GitHub: a server with a
    /// throwaway state directory, a stand-in for GitHub, a harmless deploy command, and a
    /// merged pull request sent to it; then stays up (dashboard, replay) until Ctrl-C.
    Try(TryArgs),
    /// A stand-in for GitHub's REST API on loopback, for trying deployhook and for tests
    /// (not for production): creates deployments and statuses and delivers their webhooks.
    StandIn(StandInArgs),
    /// Validate a config file and print the environments it describes; errors name the
    /// line and column.
    CheckConfig(CheckConfigArgs),
    /// After downtime: ask GitHub to send again the deliveries that failed and that
    /// deployhook never recorded. A dry run unless --apply.
    Redeliver(RedeliverArgs),
    /// Create a deployment through GitHub's API (a manual deploy or a rollback); deployhook
    /// runs it when GitHub sends the deployment event, like any other.
    Deploy(DeployArgs),
    /// List a repository's recent deployments and their latest state.
    Deployments(DeploymentsArgs),
    /// Lock an environment: no automatic deploy runs there (merges and promotions wait)
    /// until it is unlocked or the lock expires. Talks to the running server.
    Lock(LockArgs),
    /// Unlock an environment: what waited runs, in its policy's order.
    Unlock(UnlockArgs),
    /// List the environments locked now.
    Locks(ServerArgs),
    /// Deploy the last good version again — the last success before the current one, or
    /// --to — and lock the environment so the next merge does not roll forward.
    Rollback(RollbackArgs),
    /// List the GitHub calls (and notifications) given up; `retry ID` or `dismiss ID` one
    /// (`all`: every one). Talks to the running server.
    Calls(CallsArgs),
    /// List recent deliveries (--refused: those refused, with why and from where), or show
    /// one with its headers and the deployments it led to. Talks to the running server.
    Deliveries(DeliveriesArgs),
    /// List the audit log, newest first: who signed in, locked, unlocked, rolled back,
    /// retried or dismissed what, from which address, done or refused. Talks to the
    /// running server.
    Audit(AuditArgs),
    /// List the deployments waiting for approval, with who approved so far and until when
    /// they wait. Talks to the running server.
    Approvals(ServerArgs),
    /// Approve a deployment waiting for approval, as yourself (a personal token:
    /// DEPLOYHOOK_TOKEN). Talks to the running server.
    Approve(ApproveArgs),
    /// Reject a deployment waiting for approval: it ends `failure`, saying who and why.
    /// Talks to the running server.
    Reject(RejectArgs),
    /// Print a deployment's log from the running server; --follow streams it to its end
    /// and exits with its outcome (0 success, 1 failure, 2 error, 3 inactive; 4 when it
    /// could not follow: server unreachable, no deployment event).
    Log(LogArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests;
