//! `serve`'s arguments: every setting of the server, each from a flag or the environment
//! variable `--help` names (and the README's table), and the help's note on the secrets,
//! which `serve` reads from the environment only.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{parse_duration, parse_size};
use crate::model::{OnInterrupt, Policy};

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
    /// share; its password is masked wherever it is shown.
    #[arg(
        long,
        env = "DEPLOYHOOK_DATABASE",
        default_value = "deployhook.db",
        hide_env_values = true
    )]
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

    /// How long finished deploys and their logs are kept, and the audit log's entries.
    /// Given-up GitHub calls are kept until retried or dismissed.
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

    /// Reverse proxies whose X-Forwarded-For names the client (addresses or networks,
    /// comma-separated: 10.0.0.0/8,::1), for the limits on wrong tokens. Empty: the header
    /// is ignored and the client is the connection's address.
    #[arg(long, env = "DEPLOYHOOK_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Sign in with GitHub: the client id of the OAuth App (or of deployhook's GitHub App)
    /// people sign in through; its secret is DEPLOYHOOK_GITHUB_CLIENT_SECRET. Empty: the
    /// dashboard's only sign-in is the admin token.
    #[arg(long, env = "DEPLOYHOOK_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,

    /// GitHub's web address, where people sign in (GitHub Enterprise Server: https://HOST).
    /// Default: from --github-api-url (https://api.github.com → https://github.com).
    #[arg(long, env = "GITHUB_WEB_URL")]
    pub github_web_url: Option<String>,

    /// How long a person's repository permission and team memberships, read from GitHub,
    /// are trusted before they are asked again: a person removed from a repository loses
    /// access within this time.
    #[arg(long, env = "DEPLOYHOOK_PERMISSION_CACHE", default_value = "5m", value_parser = parse_duration)]
    pub permission_cache: Duration,

    /// What comment commands in pull requests start with (`.deploy`, `.lock`…): 1 to 10
    /// characters without spaces.
    #[arg(long, env = "DEPLOYHOOK_COMMAND_PREFIX", default_value = ".")]
    pub command_prefix: String,

    /// Where a bare `.deploy` in a pull request deploys. Empty: the only environment when
    /// there is one; otherwise the command must name it (`.deploy to staging`).
    #[arg(long, env = "DEPLOYHOOK_COMMAND_ENVIRONMENT")]
    pub command_environment: Option<String>,

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
Operators' access, optional (at least 32 characters each: openssl rand -hex 32):
  DEPLOYHOOK_ADMIN_TOKEN       Turns the dashboard at / on; signing in takes this token.
  DEPLOYHOOK_METRICS_TOKEN     Makes /metrics require `Authorization: Bearer <token>`.
  DEPLOYHOOK_GITHUB_CLIENT_SECRET  With --github-client-id: the OAuth client's secret,
                               for signing in with GitHub.";
