//! The command line's definition: every command, flag and environment variable, as clap
//! parses them. Every setting of `serve` can come from a flag or from the environment
//! variable named in `--help` (and in the README's table); `serve` reads the two secrets
//! from the environment only, so they never show in `ps` or shell history. (`replay
//! --secret` exists for trying things out.)

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{parse_duration, parse_size};
use crate::model::{OnInterrupt, Policy};

/// A self-hosted deploy-on-merge server for GitHub.
///
/// Receives `pull_request`, `deployment` and `deployment_status` webhooks at
/// `POST /event_handler`: a merged pull request creates a GitHub deployment, and the
/// deployment event runs your deploy command and reports its statuses back to GitHub.
/// Settings are read from flags, the environment, and a `.env` file in the working directory.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG.
    #[arg(
        long,
        global = true,
        env = "DEPLOYHOOK_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

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
    /// Print a deployment's log from the running server; --follow streams it to its end
    /// and exits with its outcome (0 success, 1 failure, 2 error, 3 inactive; 4 when it
    /// could not follow: server unreachable, no deployment event).
    Log(LogArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
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
#[command(after_help = "Install, for example:\n  \
    bash: deployhook completions bash > /etc/bash_completion.d/deployhook\n  \
    zsh:  deployhook completions zsh > \"${fpath[1]}/_deployhook\"\n  \
    fish: deployhook completions fish > ~/.config/fish/completions/deployhook.fish")]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

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

/// How the commands that act on a running deployhook reach it. The admin token comes from
/// the environment (DEPLOYHOOK_ADMIN_TOKEN), as for `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The running server's base URL [default: http://DEPLOYHOOK_LISTEN, or
    /// http://127.0.0.1:4567].
    #[arg(long, env = "DEPLOYHOOK_SERVER", default_value_t = local_server(), hide_default_value = true)]
    pub server: String,
    /// Who acts, as the lock or the rollback records it [default: $USER].
    #[arg(long)]
    pub by: Option<String>,
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
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    /// The environment to unlock.
    pub environment: String,
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
    #[arg(long, env = "DEPLOYHOOK_DATABASE", default_value = "deployhook.db")]
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

#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(env = "DEPLOYHOOK_CONFIG", default_value = "deployhook.toml")]
    pub config: PathBuf,
    /// Fail (exit 1) when a working directory or a command the file names is missing, not
    /// executable, or a script without a `#!` line on this machine; without it, those
    /// are warnings.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of `serve`. The secrets are not here: `serve` reads them from the environment only.
#[derive(Debug, Clone, Args)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// Address (or host name) and port to listen on: 127.0.0.1:4567 is this machine only,
    /// 0.0.0.0:4567 every interface.
    #[arg(long, env = "DEPLOYHOOK_LISTEN", default_value = "127.0.0.1:4567")]
    pub listen: String,

    /// Accept unsigned deliveries. Anyone who can reach the server can then trigger deploys:
    /// for local experiments only.
    #[arg(long)]
    pub insecure_skip_signature: bool,

    /// Base URL of GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,

    /// A config file describing the environments to deploy (see deployhook.example.toml).
    /// Without one, the settings below up to --on-interrupt describe a single environment;
    /// with one, they must not be set.
    #[arg(long, env = "DEPLOYHOOK_CONFIG")]
    pub config: Option<PathBuf>,

    /// The server's public base URL (https://deploy.example.com): statuses then carry a
    /// `log_url` pointing at the deploy's log here. Unset: no `log_url`.
    #[arg(long, env = "DEPLOYHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Environment that deployhook creates deployments for and deploys [default: production].
    #[arg(long, env = "DEPLOYHOOK_ENVIRONMENT")]
    pub environment: Option<String>,

    /// Branch whose merged pull requests deploy [default: the repository's default branch].
    #[arg(long, env = "DEPLOYHOOK_BRANCH")]
    pub branch: Option<String>,

    /// Commit status contexts GitHub must see passing before it creates a deployment
    /// (comma-separated). Empty: deploy the merge commit without checking statuses.
    #[arg(long, env = "DEPLOYHOOK_REQUIRED_CONTEXTS", value_delimiter = ',')]
    pub required_contexts: Option<Vec<String>>,

    /// The CI gate: a merge deploys only once these checks of its merge commit are green.
    /// `none`: deploy at once; `all`: every check run and status reported on the commit;
    /// or check names, comma-separated (`test,lint`) [default: none].
    #[arg(long, env = "DEPLOYHOOK_CHECKS")]
    pub checks: Option<String>,

    /// How long a merge waits for its checks before it is given up (`timed_out`).
    /// Examples: 30m, 2h [default: 1h].
    #[arg(long, env = "DEPLOYHOOK_CHECKS_TIMEOUT", value_parser = parse_duration)]
    pub checks_timeout: Option<Duration>,

    /// The deploy command, split into words like a shell would and run without a shell.
    /// It learns what to deploy from DEPLOYHOOK_* environment variables.
    #[arg(long, env = "DEPLOY_COMMAND")]
    pub deploy_command: Option<String>,

    /// How long a deploy may run before it is stopped (SIGTERM, then SIGKILL) and reported
    /// as `error`. Examples: 90s, 15m, 1h [default: 30m].
    #[arg(long, env = "DEPLOYHOOK_DEPLOY_TIMEOUT", value_parser = parse_duration)]
    pub deploy_timeout: Option<Duration>,

    /// Names of server environment variables to copy into the deploy command's environment
    /// (comma-separated). Nothing else of the server's environment reaches it but PATH,
    /// HOME and LANG.
    #[arg(long, env = "DEPLOYHOOK_PASS_ENV", value_delimiter = ',')]
    pub pass_env: Option<Vec<String>>,

    /// The database holding deliveries, the deploy queue and pending GitHub calls: a SQLite
    /// file (created if missing; `:memory:` keeps nothing across restarts), or a PostgreSQL
    /// URL (`postgres://user:password@host/db?sslmode=verify-full`) that several replicas
    /// share.
    #[arg(long, env = "DEPLOYHOOK_DATABASE", default_value = "deployhook.db")]
    pub database: String,

    /// `full`: an acknowledged delivery survives a power cut (the database log is synced to
    /// disk before the answer). `normal`: it survives any crash of deployhook, but a crash of
    /// the machine may lose the last moments' deliveries; faster under heavy load.
    #[arg(long, env = "DEPLOYHOOK_DATABASE_SYNC", default_value = "full")]
    pub database_sync: crate::model::Sync,

    /// The database's write-ahead log is kept under this size, under sustained deliveries
    /// and large deploy output alike, and truncated at shutdown.
    #[arg(long, env = "DEPLOYHOOK_DATABASE_LOG_LIMIT", default_value = "64MiB", value_parser = parse_size)]
    pub database_log_limit: u64,

    /// How long deliveries (and the merges they recorded) and dismissed GitHub calls are
    /// kept, for the dashboard and to recognise redeliveries. GitHub redelivers for 3 days
    /// at most. Refused deliveries: the newest 1,000.
    #[arg(long, env = "DEPLOYHOOK_RETAIN_DELIVERIES", default_value = "30d", value_parser = parse_duration)]
    pub retain_deliveries: Duration,

    /// How long finished deploys and their logs are kept. Given-up GitHub calls are kept
    /// until retried or dismissed.
    #[arg(long, env = "DEPLOYHOOK_RETAIN_DEPLOYS", default_value = "90d", value_parser = parse_duration)]
    pub retain_deploys: Duration,

    /// How often deployhook asks GitHub for the checks of a commit a merge waits on, in
    /// case a check event was missed.
    #[arg(long, env = "DEPLOYHOOK_CHECKS_POLL", default_value = "5m", value_parser = parse_duration)]
    pub checks_poll: Duration,

    /// Deploys that may run at once, across repositories and environments (one at a time
    /// per repository + environment whatever this says).
    #[arg(long, env = "DEPLOYHOOK_MAX_CONCURRENT_DEPLOYS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_deploys: u16,

    /// When several deployments of one repository + environment wait: run only the newest
    /// (`latest`; the others become `inactive`), or run each in order (`queue`)
    /// [default: latest].
    #[arg(long, env = "DEPLOYHOOK_POLICY")]
    pub policy: Option<Policy>,

    /// A deploy that was running when deployhook stopped: report it as `error` at the next
    /// start, or run it again (`retry`; only for deploy commands safe to run twice)
    /// [default: error].
    #[arg(long, env = "DEPLOYHOOK_ON_INTERRUPT")]
    pub on_interrupt: Option<OnInterrupt>,

    /// How long a GitHub call (create a deployment, post a status) is retried while GitHub
    /// is down or rate-limiting before it is given up.
    #[arg(long, env = "DEPLOYHOOK_OUTBOX_MAX_AGE", default_value = "24h", value_parser = parse_duration)]
    pub outbox_max_age: Duration,

    /// Connections the server holds open at once; at the cap a new one takes the place of
    /// an idle one, and only when none is idle is it answered 503 and closed. Keep it below
    /// the process's file-descriptor limit (LimitNOFILE).
    #[arg(long, env = "DEPLOYHOOK_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections one client address may hold open at once (and, while capped, 32 MiB of
    /// request bodies); 0: no cap. Behind a reverse proxy every connection comes from the
    /// proxy: set 0 there and cap clients at the proxy.
    #[arg(
        long,
        env = "DEPLOYHOOK_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    pub max_connections_per_client: u32,

    /// How long a client may take to send a request's headers, and how long a connection
    /// may sit idle between requests, before it is closed.
    #[arg(long, env = "DEPLOYHOOK_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to wait for running deploys before exiting. A second
    /// SIGINT/SIGTERM stops them at once.
    #[arg(long, env = "DEPLOYHOOK_SHUTDOWN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// PostgreSQL only: how long the database waits for a leader replica that went silent
    /// (powered off, cut off) before another replica may take over its deploys. A replica
    /// that dies outright is replaced within a second, whatever this says.
    #[arg(long, env = "DEPLOYHOOK_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,

    /// Copy each line a deploy command writes into the server's log, at info level (it is
    /// always kept in the deploy's own log). `false`: only at debug level.
    #[arg(long, env = "DEPLOYHOOK_LOG_DEPLOY_OUTPUT", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_deploy_output: bool,
}

/// Shown under `serve --help`: the settings that are read from the environment only.
const SERVE_AFTER_HELP: &str = "\
Secrets, read from the environment (or .env) only:
  GITHUB_WEBHOOK_SECRET  The webhook's secret; several comma-separated ones are all accepted
                         (for rotation). Required unless --insecure-skip-signature.
  GITHUB_TOKEN           Token for GitHub's REST API with Deployments: write.
Or, to act as a GitHub App instead of GITHUB_TOKEN (see the README):
  GITHUB_APP_ID                The App's id, or its client id (Iv…).
  GITHUB_APP_PRIVATE_KEY_FILE  The App's private key (.pem) file.
  GITHUB_APP_PRIVATE_KEY       Or the key itself (PEM; line breaks may be written \\n).
Operators' access, optional (at least 16 characters each):
  DEPLOYHOOK_ADMIN_TOKEN       Turns the dashboard at / on; signing in takes this token.
  DEPLOYHOOK_METRICS_TOKEN     Makes /metrics require `Authorization: Bearer <token>`.";

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// File holding the payload; its bytes are sent exactly as they are.
    pub file: PathBuf,

    /// The event name to send as X-GitHub-Event (pull_request, deployment, ping, …).
    #[arg(long)]
    pub event: String,

    /// The server's webhook URL [default: http://DEPLOYHOOK_LISTEN/event_handler, or
    /// http://127.0.0.1:4567/event_handler when DEPLOYHOOK_LISTEN is unset].
    #[arg(long)]
    pub url: Option<String>,

    /// Secret to sign with [default: the first of GITHUB_WEBHOOK_SECRET]. Without either,
    /// the request goes unsigned.
    #[arg(long)]
    pub secret: Option<String>,

    /// Send `application/x-www-form-urlencoded` with the JSON in the `payload` field instead
    /// of `application/json`.
    #[arg(long)]
    pub form: bool,

    /// Value for X-GitHub-Hook-ID.
    #[arg(long)]
    pub hook_id: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("fifteen").unwrap_err().contains("examples"));
    }

    #[test]
    fn serve_defaults_match_the_readme() {
        let cli = Cli::try_parse_from(["deployhook", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:4567");
        assert_eq!(args.database, "deployhook.db");
        assert_eq!(args.max_concurrent_deploys, 4);
        assert_eq!(Policy::default(), Policy::Latest);
        assert_eq!(OnInterrupt::default(), OnInterrupt::Error);
    }
}
