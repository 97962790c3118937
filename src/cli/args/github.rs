//! The arguments of the commands that call GitHub's API — `deploy`, `deployments`,
//! `redeliver` — and how they reach it ([`GitHubArgs`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::admin::local_server;
use crate::config::parse_duration;

/// How the commands that call GitHub reach it. Credentials come from the environment
/// (GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY_FILE), as for `serve`.
#[derive(Debug, Clone, Args)]
pub struct GitHubArgs {
    /// Base URL of GitHub's REST API.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
}

#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("hook").required(true).args(["repo", "org", "app"]))]
pub struct RedeliverArgs {
    /// The repository whose webhook (--hook-id) missed deliveries.
    #[arg(long, requires = "hook_id")]
    pub repo: Option<String>,
    /// The organisation whose webhook (--hook-id) missed deliveries.
    #[arg(long, requires = "hook_id")]
    pub org: Option<String>,
    /// The GitHub App's own webhook (App mode).
    #[arg(long)]
    pub app: bool,
    /// The webhook's id (Settings → Webhooks → the hook: the number in its URL; also sent
    /// as X-GitHub-Hook-ID).
    #[arg(long)]
    pub hook_id: Option<u64>,
    /// How far back to look. GitHub keeps about three days of deliveries.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub since: Duration,
    /// Redeliver; without it, only print what would be redelivered.
    #[arg(long)]
    pub apply: bool,
    /// deployhook's database (a SQLite file or a PostgreSQL URL), to skip what it recorded.
    #[arg(
        long,
        env = "DEPLOYHOOK_DATABASE",
        default_value = "deployhook.db",
        hide_env_values = true
    )]
    pub database: String,
    #[command(flatten)]
    pub github: GitHubArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The repository, owner/name.
    pub repo: String,
    /// What to deploy: a branch, tag or commit SHA (an older one rolls back).
    pub git_ref: String,
    /// The environment to deploy to.
    #[arg(long, short)]
    pub environment: String,
    /// The task (see `tasks` in the config file).
    #[arg(long, default_value = "deploy")]
    pub task: String,
    /// Shown on GitHub.
    #[arg(long)]
    pub description: Option<String>,
    /// Run it even if the environment is locked (`"force": true` in the payload).
    #[arg(long)]
    pub force: bool,
    /// Create it even though this machine's configuration has no such environment, or it
    /// does not deploy this repository (a deployment meant for another system).
    #[arg(long)]
    pub anyway: bool,
    /// Then follow it on the running server (DEPLOYHOOK_SERVER, DEPLOYHOOK_ADMIN_TOKEN):
    /// stream its log to the end and exit with its outcome, as `deployhook log --follow`.
    #[arg(long, short)]
    pub follow: bool,
    /// The running server's base URL, for --follow [default: http://DEPLOYHOOK_LISTEN, or
    /// http://127.0.0.1:4567].
    #[arg(long, env = "DEPLOYHOOK_SERVER", default_value_t = local_server(), hide_default_value = true)]
    pub server: String,
    /// The config file whose environments the deployment must name (as `serve` reads it);
    /// without one, DEPLOYHOOK_ENVIRONMENT [default: production].
    #[arg(long, env = "DEPLOYHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub github: GitHubArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeploymentsArgs {
    /// The repository, owner/name.
    pub repo: String,
    /// Only this environment's.
    #[arg(long, short)]
    pub environment: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub limit: u8,
    #[command(flatten)]
    pub github: GitHubArgs,
}
