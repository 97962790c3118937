//! The arguments of the commands that act on a running deployhook through its admin API —
//! `lock`, `unlock`, `locks`, `rollback`, `calls`, `deliveries`, `log`, `audit` — and how
//! they reach it ([`ServerArgs`]: its URL, by default the one this machine's `serve` would
//! listen on).

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config::parse_duration;

/// The base URL of the server this machine's settings describe: `DEPLOYHOOK_LISTEN` (as
/// `serve` reads it, `.env` included, which `main` loads before parsing), else the default
/// port. A server listening on every interface is reached on loopback from here.
pub fn local_server() -> String {
    server_for_listen(std::env::var("DEPLOYHOOK_LISTEN").ok())
}

/// `http://LISTEN` for a listen address (none: the default one).
pub fn server_for_listen(listen: Option<String>) -> String {
    let listen = listen
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "127.0.0.1:4567".to_owned());
    let listen = match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "", port)) => format!("127.0.0.1:{port}"),
        _ => listen,
    };
    format!("http://{listen}")
}

/// How the commands that act on a running deployhook reach it. The token comes from the
/// environment: a personal token (DEPLOYHOOK_TOKEN), else the admin token
/// (DEPLOYHOOK_ADMIN_TOKEN), as for `serve`. Who acts (`--by`) belongs to
/// the commands that change something, not here: a listing would offer it and ignore it.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The running server's base URL [default: http://DEPLOYHOOK_LISTEN, or
    /// http://127.0.0.1:4567].
    #[arg(long, env = "DEPLOYHOOK_SERVER", default_value_t = local_server(), hide_default_value = true)]
    pub server: String,
}

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The environment to lock.
    pub environment: String,
    /// Why: whoever finds the lock reads it.
    #[arg(long, short)]
    pub reason: String,
    /// How long (30m, 2h) [default: until unlocked].
    #[arg(long = "for", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Who acts, as the server records it, with the admin token [default: $SUDO_USER under
    /// sudo, else $USER, else the system's name for the current user]. Ignored with a
    /// personal token (DEPLOYHOOK_TOKEN): the server knows who you are.
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    /// The environment to unlock.
    pub environment: String,
    /// Who acts, as the server records it, with the admin token [default: $SUDO_USER under
    /// sudo, else $USER, else the system's name for the current user]. Ignored with a
    /// personal token (DEPLOYHOOK_TOKEN): the server knows who you are.
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The repository, owner/name.
    pub repo: String,
    /// The environment to roll back.
    #[arg(long, short)]
    pub environment: String,
    /// The commit to put back: a SHA, or its first 7+ digits among those deployed there
    /// [default: the last success before the current one].
    #[arg(long)]
    pub to: Option<String>,
    /// Who acts, as the server records it, with the admin token [default: $SUDO_USER under
    /// sudo, else $USER, else the system's name for the current user]. Ignored with a
    /// personal token (DEPLOYHOOK_TOKEN): the server knows who you are.
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What `deployhook calls` does to a given-up call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallAction {
    /// Send it again now, in its turn.
    Retry,
    /// Keep it, marked dismissed, out of deployhook_outbox_failed.
    Dismiss,
}

#[derive(Debug, Clone, Args)]
pub struct CallsArgs {
    /// What to do; without it, list the calls given up.
    #[arg(requires = "id")]
    pub action: Option<CallAction>,
    /// The call's id, as listed, or `all`.
    pub id: Option<String>,
    /// Who acts, as the server records it, with the admin token [default: $SUDO_USER under
    /// sudo, else $USER, else the system's name for the current user]. Ignored with a
    /// personal token (DEPLOYHOOK_TOKEN): the server knows who you are.
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeliveriesArgs {
    /// Show this delivery (its X-GitHub-Delivery id; with --refused, the number listed).
    pub id: Option<String>,
    /// Refused deliveries instead of recorded ones.
    #[arg(long)]
    pub refused: bool,
    /// How many to list, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// With an id that came through several hooks: the hook's (X-GitHub-Hook-ID).
    #[arg(long)]
    pub hook: Option<i64>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// The deployment's id (GitHub's; `deployhook deployments` lists them).
    pub deployment: u64,
    /// Wait for the deployment to run, stream its log to the end, and exit with its outcome.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApproveArgs {
    /// The deployment's id (`deployhook approvals` lists them).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RejectArgs {
    /// The deployment's id (`deployhook approvals` lists them).
    pub id: String,
    /// Why, for the deployment's status and whoever asked for it.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// How many entries to list, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: u16,
    /// Only this actor's: a GitHub login, or the name the admin token's user gave (--by).
    #[arg(long, value_name = "LOGIN")]
    pub actor: Option<String>,
    /// Only this action.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        crate::model::AuditAction::ALL.map(crate::model::AuditAction::as_str)
    ))]
    pub action: Option<String>,
    /// Only this environment's.
    #[arg(long, short, value_name = "ENV")]
    pub environment: Option<String>,
    /// Only this repository's (owner/name).
    #[arg(long, value_name = "OWNER/REPO")]
    pub repository: Option<String>,
    /// Only entries older than this one (the id a listing's last line gives).
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub before: Option<u64>,
    /// Print the server's answer as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}
