//! The state every handler shares: the configuration they read, the store, the workers
//! they wake, the log hub and links, the metrics, and the operators' credentials.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::EnvironmentConfig;
use crate::deploy::log::{LogHub, LogLinks};
use crate::deploy::worker::DeployWorker;
use crate::github::gate_worker::GateWorker;
use crate::github::outbox_worker::OutboxWorker;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::refused::RefusalLog;
use crate::web::auth::AdminAuth;
use crate::web::refusal_summary::RefusalSummary;
use crate::webhook::intake::IntakeConfig;

/// State shared by the handlers; one `Arc`, because axum clones it for every request.
#[derive(Debug, Clone)]
pub struct AppState(pub(super) Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub(super) intake: Arc<IntakeConfig>,
    pub(super) environments: Arc<[EnvironmentConfig]>,
    pub(super) store: Store,
    /// Where refused deliveries go, to be kept for the dashboard.
    pub(super) refusals: RefusalLog,
    /// Where refused deliveries are logged: in full after a quiet spell, else summarised.
    pub(super) refusal_lines: Arc<RefusalSummary>,
    pub(super) outbox: OutboxWorker,
    pub(super) deployer: DeployWorker,
    pub(super) gate: GateWorker,
    /// How often a merge waiting for its checks has them read again.
    pub(super) checks_poll: std::time::Duration,
    pub(super) links: LogLinks,
    pub(super) logs: LogHub,
    /// deployhook's GitHub App id, in App mode.
    pub(super) own_app: Option<String>,
    /// Cancelled when shutdown begins: ends live log streams, which would hold it up.
    pub(super) stopping: CancellationToken,
    pub(super) metrics: Arc<Metrics>,
    pub(super) metrics_token: Option<SecretString>,
    /// Wrong metrics tokens, per client address.
    pub(super) metrics_guesses: crate::web::guesses::GuessLimit,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub(super) trusted_proxies: crate::config::TrustedProxies,
    /// Sessions and the admin token; `None` when the dashboard is off (neither an admin
    /// token nor GitHub sign-in configured).
    pub(super) admin: Option<AdminAuth>,
    /// Signing in with GitHub, when configured.
    pub(super) oauth: Option<crate::github::oauth::OAuthApp>,
    /// What GitHub says people may do, cached briefly.
    pub(super) permissions: Arc<crate::github::permissions::Permissions>,
    /// GitHub's web address, for links from the dashboard.
    pub(super) github_web: String,
    /// Whether this replica leads the workers, and its heartbeat (PostgreSQL).
    pub(super) lead: Arc<super::lead::LeadStatus>,
    pub(super) replica: crate::store::postgres::replicas::Replica,
    pub(super) lease: std::time::Duration,
    /// deployhook's own GitHub client, for what comment commands read (pull requests,
    /// branches, checks).
    pub(super) github: crate::github::GitHubClient,
    /// How comments give commands.
    pub(super) commands: crate::config::CommandsConfig,
    /// Wakes the command worker when a command was recorded.
    pub(super) command_wake: Arc<tokio::sync::Notify>,
}

impl FromRef<AppState> for Arc<IntakeConfig> {
    fn from_ref(state: &AppState) -> Self {
        state.intake.clone()
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
