//! The server's validated configuration: built once at start — by the command line, from
//! its arguments, the config file (`deployhook.toml`, when given) and the secrets in the
//! environment — then shared read-only. Tests build it directly. This module knows nothing
//! of the command line: `cli::serve` turns arguments into a [`Config`].
//!
//! May use: `model`, and `webhook::signature` for the secrets' type.

pub mod access;
pub mod environment;
pub mod file;
pub mod notify;
pub mod patterns;
pub mod preview;
pub mod proxies;
pub mod verify;

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::model::{DatabaseLocation, Sync};
use crate::webhook::signature::WebhookSecrets;

pub use access::{Access, Grantee};
pub use environment::{
    DEFAULT_CHECKS_TIMEOUT, EnvVars, EnvironmentConfig, RepoPattern, Triggers, find_environment,
    hold_of,
};
pub use notify::{NotifyConfig, NotifyKind};
pub use patterns::Patterns;
pub use preview::{DESTROY_TASK, PreviewConfig, preview_slots};
pub use proxies::TrustedProxies;

/// How long a deploy may run unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The shortest admin or metrics token accepted: 32 characters, 128 bits as hex
/// (`openssl rand -hex 16`), far past what the per-address limit on wrong guesses lets
/// anyone try (see `web::guesses`).
pub const MIN_TOKEN_CHARS: usize = 32;
/// How much of one run's output is kept unless configured otherwise (its head and tail).
pub const DEFAULT_LOG_LIMIT: usize = 1024 * 1024;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` only when started with `--insecure-skip-signature`.
    pub webhook_secrets: Option<WebhookSecrets>,
    pub github: GitHubConfig,
    /// The environments deployhook deploys: never empty, names unique.
    pub environments: Vec<EnvironmentConfig>,
    /// The server's address as GitHub users reach it, without a trailing slash: the base
    /// of the `log_url` of statuses. `None`: statuses carry no `log_url`.
    pub public_url: Option<String>,
    /// The SQLite database's path (`:memory:`: `store::IN_MEMORY`) or a PostgreSQL URL;
    /// shown with its password masked.
    pub database: DatabaseLocation,
    pub database_sync: Sync,
    /// The write-ahead log is kept under this many bytes.
    pub database_log_limit: u64,
    /// How long finished work is kept.
    pub retention: Retention,
    /// Deploys running at once, across repositories and environments.
    pub max_concurrent_deploys: usize,
    pub outbox: OutboxConfig,
    /// How often deployhook asks GitHub for the checks of a commit that a merge waits on,
    /// in case a check event was missed.
    pub checks_poll: Duration,
    /// Caps and deadlines on inbound connections.
    pub connections: ConnectionLimits,
    /// How long shutdown waits for running deploys.
    pub shutdown_timeout: Duration,
    /// PostgreSQL: how long a silent leader keeps the lead (see `web::lead`).
    pub lease: Duration,
    /// Opens the dashboard (`DEPLOYHOOK_ADMIN_TOKEN`); `None`: the dashboard is off.
    pub admin_token: Option<SecretString>,
    /// Required as a bearer token by `/metrics` when set (`DEPLOYHOOK_METRICS_TOKEN`).
    pub metrics_token: Option<SecretString>,
    /// The reverse proxies whose `X-Forwarded-For` names the client
    /// (`DEPLOYHOOK_TRUSTED_PROXIES`); empty: the header is ignored.
    pub trusted_proxies: TrustedProxies,
    /// Who is told of deploys, failed checks and locks: the config file's `[[notify]]`
    /// tables, their URLs read from the environment.
    pub notify: Vec<NotifyConfig>,
    /// Whether deploy output lines are copied into the server's log at info level
    /// (`DEPLOYHOOK_LOG_DEPLOY_OUTPUT`); otherwise at debug level.
    pub log_deploy_output: bool,
    /// Signing in with GitHub; `None`: the admin token is the dashboard's only sign-in.
    pub sign_in: Option<SignInConfig>,
    /// How long a person's permissions read from GitHub are trusted.
    pub permission_cache: Duration,
    /// Commands written in pull-request comments.
    pub commands: CommandsConfig,
}

/// How pull-request comments give commands (`.deploy to staging`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandsConfig {
    /// What a command starts with: `.` by default.
    pub prefix: String,
    /// Where a bare `.deploy` deploys; `None`: the only environment, else it must be named.
    pub default_environment: Option<crate::model::Environment>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            prefix: crate::model::command::DEFAULT_PREFIX.to_owned(),
            default_environment: None,
        }
    }
}

impl CommandsConfig {
    /// Checks a prefix: one to ten visible characters, no spaces.
    pub fn valid_prefix(prefix: &str) -> Result<(), String> {
        let count = prefix.chars().count();
        if count == 0 || count > 10 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "DEPLOYHOOK_COMMAND_PREFIX {prefix:?}: expected 1 to 10 characters without spaces, like \".\" or \"/\""
            ));
        }
        Ok(())
    }
}

/// How people sign in with GitHub: an OAuth App's (or a GitHub App's) client.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    /// GitHub's web address, without a trailing slash: `https://github.com`.
    pub web_url: String,
}

/// How long permissions are trusted unless configured otherwise.
pub const DEFAULT_PERMISSION_CACHE: Duration = Duration::from_secs(5 * 60);

/// How to reach GitHub's REST API.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// Without a trailing slash.
    pub api_url: String,
    pub auth: GitHubAuth,
}

/// Who deployhook is to GitHub. `SecretString`'s `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    /// A personal access token (`GITHUB_TOKEN`).
    Token(SecretString),
    /// A GitHub App: its id and private key (PEM); calls carry installation tokens.
    App {
        app_id: String,
        private_key: SecretString,
    },
}

impl GitHubConfig {
    /// Token authentication against `api_url`.
    pub fn with_token(api_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            api_url: api_url.into(),
            auth: GitHubAuth::Token(SecretString::from(token.into())),
        }
    }

    /// GitHub's web address for this API: `https://github.com`, or a GitHub Enterprise
    /// Server's host for its `https://HOST/api/v3`.
    pub fn web_url(&self) -> String {
        let api = self.api_url.trim_end_matches('/');
        if let Some(host) = api.strip_suffix("/api/v3") {
            return host.to_owned();
        }
        api.replace("://api.", "://")
    }

    /// deployhook's own app id, in App mode.
    pub fn app_id(&self) -> Option<&str> {
        match &self.auth {
            GitHubAuth::Token(_) => None,
            GitHubAuth::App { app_id, .. } => Some(app_id),
        }
    }
}

/// How patiently failed GitHub calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct OutboxConfig {
    /// Wait before the first retry; doubled for each further one.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry: Duration,
    /// A call still failing this long after it was queued is given up.
    pub max_age: Duration,
    /// The first wait after a secondary rate limit that named no wait; doubled for each
    /// further one. GitHub asks for at least a minute.
    pub secondary_rate_limit: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(24 * 60 * 60),
            secondary_rate_limit: Duration::from_secs(60),
        }
    }
}

/// How long the database keeps what is done with, so that it does not grow for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Deliveries (and the merges they recorded), by when they arrived. GitHub lets a
    /// delivery be redelivered for 3 days; past that, its record only serves the dashboard.
    pub deliveries: Duration,
    /// Finished deploys and their logs, by when they finished.
    pub deploys: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            deliveries: Duration::from_secs(30 * 24 * 60 * 60),
            deploys: Duration::from_secs(90 * 24 * 60 * 60),
        }
    }
}

/// Caps and deadlines on the connections the server accepts: it faces the internet, and no
/// client may hold what GitHub's deliveries need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, in all; past it new ones are answered 503 and closed.
    pub max_connections: usize,
    /// Connections open at once from one client address; 0: no cap (behind a proxy, every
    /// connection comes from the proxy's address).
    pub max_connections_per_client: usize,
    /// How long a client may take to send a request's headers, and how long a connection
    /// may sit idle between requests.
    pub header_timeout: Duration,
    /// Bytes the request bodies being read may hold at once, in all, and from one client
    /// address (only while `max_connections_per_client` caps one). Bodies up to 128 KiB
    /// are not counted (see `webhook::budget`). Not settings: tests make them small.
    pub body_budget: usize,
    pub body_budget_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_client: 64,
            header_timeout: Duration::from_secs(10),
            body_budget: 256 * 1024 * 1024,
            // One body of GitHub's largest (25 MiB), with room beside it.
            body_budget_per_client: 32 * 1024 * 1024,
        }
    }
}

/// Parses a size: a number of bytes, or one with a unit (`64MiB`, `64MB`, `512k`…; binary
/// multiples either way).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 64MiB, 512MB, 1GiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} (examples: 64MiB, 512MB, 1GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `90s`, `15m`, `1h 30m`…: durations as the command line and the config file take
/// them.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 15m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size(" 1GiB "), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("examples"));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
