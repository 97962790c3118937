//! The server's lifecycle, in a shape a test can drive: [`Application::build`] binds a port
//! (0 in tests), opens and recovers the database; [`Application::run_until`] runs the
//! workers and serves until a shutdown future resolves, then waits (bounded) for the
//! deploys still running and sends the GitHub calls they queued.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EnvironmentConfig, MIN_TOKEN_CHARS};
use crate::deploy::log::{LogHub, LogKey, LogLinks};
use crate::deploy::worker::{DeployWorker, LocalLinks};
use crate::github::GitHubClient;
use crate::github::gate_worker::GateWorker;
use crate::github::oauth::OAuthApp;
use crate::github::outbox_worker::OutboxWorker;
use crate::github::permissions::Permissions;
use crate::metrics::Metrics;
use crate::store::refused::RefusalLog;
use crate::store::{Store, locks, now_ms, outbox, retention, sessions};
use crate::web::auth::{AdminAuth, unix_now};
use crate::web::guesses::GuessLimit;
use crate::web::refusal_summary::{self, RefusalSummary};
use crate::web::state::{AppState, Shared};
use crate::web::{listener, router};
use crate::webhook::budget::BodyLimits;
use crate::webhook::intake::IntakeConfig;

/// At shutdown, how long requests in flight may take to finish.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// A server bound to its port, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    config: Config,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port), opens and migrates the database,
    /// and settles what a previous process left running.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Bound first: a server that cannot listen must not touch the queue of the database.
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|err| bind_error(config.listen, &err))?;
        let store = Store::connect(
            config.database.expose_secret(),
            config.database_sync,
            config.database_log_limit,
        )
        .await?;
        let metrics = Arc::new(Metrics::new());
        let github = GitHubClient::new(&config.github)
            .context("could not build the GitHub client")?
            .with_metrics(metrics.clone());
        let permissions = Arc::new(Permissions::new(github.clone(), config.permission_cache));
        let oauth = config
            .sign_in
            .as_ref()
            .map(|s| OAuthApp::new(s, &config.github.api_url))
            .transpose()
            .context("could not build the GitHub sign-in client")?;
        let environments: Arc<[EnvironmentConfig]> = config.environments.clone().into();
        let outbox = OutboxWorker::new(store.clone(), github.clone(), config.outbox)
            .with_metrics(metrics.clone())
            .with_environments(environments.clone());
        let outbox = outbox.with_notifier(crate::notify::Notifier::from_config(&config)?);
        let gate = GateWorker::new(
            store.clone(),
            outbox.clone(),
            metrics.clone(),
            config.checks_poll,
        )
        .with_freezes(environments.clone());
        let gate = gate.with_previews(crate::github::preview_worker::PreviewWorker::new(
            store.clone(),
            github.clone(),
            environments.clone(),
            outbox.clone(),
            config.checks_poll,
        ));
        let logs = LogHub::default();
        let links = LogLinks {
            key: LogKey::load_or_create(&store)
                .await
                .context("could not read the log link key")?,
            public_url: config.public_url.clone(),
        };
        // Without a public URL, the console still gets a link that works on this machine.
        let local_links = match config.public_url {
            Some(_) => None,
            None => Some(LocalLinks {
                links: links.clone(),
                base: local_base(listener.local_addr()?),
            }),
        };
        let replica = super::lead::this_replica();
        let deployer = DeployWorker::new(
            store.clone(),
            environments.clone(),
            config.max_concurrent_deploys,
            outbox.clone(),
            logs.clone(),
            metrics.clone(),
        )
        .with_owner(&replica.id)
        .with_output_in_server_log(config.log_deploy_output)
        .with_local_links(local_links)
        .with_rollback(Arc::new(super::admin::VerificationRollback {
            environments: environments.clone(),
        }));
        // On PostgreSQL another replica may be running these: the one that leads settles
        // them, when it takes the lead (see `lead`).
        if store.postgres().is_none() {
            deployer
                .recover()
                .await
                .context("could not recover the deploy queue")?;
            store
                .write(outbox::release_in_flight)
                .await
                .context("could not recover the outbox")?;
        }
        let revoked = store
            .read(|c| sessions::revoked(c, unix_now()))
            .await
            .context("could not read the signed-out sessions")?;
        let dashboard_on = config.admin_token.is_some() || config.sign_in.is_some();
        let admin = dashboard_on.then(|| {
            AdminAuth::new(
                &links.key,
                config.admin_token.as_ref(),
                config.public_url.as_deref(),
                metrics.clone(),
            )
            .with_revoked(revoked)
        });
        let state = AppState(Arc::new(Shared {
            intake: Arc::new(IntakeConfig::new(
                config.webhook_secrets.clone(),
                body_limits(&config.connections),
            )),
            environments,
            refusals: RefusalLog::start(store.clone()),
            refusal_lines: RefusalSummary::start(refusal_summary::DELIVERIES),
            store,
            outbox,
            deployer,
            gate,
            checks_poll: config.checks_poll,
            links,
            logs,
            own_app: config.github.app_id().map(str::to_owned),
            stopping: CancellationToken::new(),
            metrics_guesses: GuessLimit::new("metrics", metrics.clone()),
            metrics,
            metrics_token: config.metrics_token.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            admin,
            oauth,
            permissions,
            github_web: config
                .sign_in
                .as_ref()
                .map_or_else(|| config.github.web_url(), |s| s.web_url.clone()),
            lead: Arc::default(),
            replica,
            lease: config.lease,
            github,
            commands: config.commands.clone(),
            command_wake: Arc::default(),
        }));
        Ok(Self {
            listener,
            state,
            config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the requests in
    /// flight, waits up to the configured timeout for running deploys (queued ones stay
    /// queued for the next start), and sends the statuses they queued.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        if self.config.webhook_secrets.is_none() {
            tracing::warn!(
                "signature checks are OFF (--insecure-skip-signature): anyone who can reach \
                 {addr} can trigger deploys"
            );
        }
        let names: Vec<&str> = self
            .config
            .environments
            .iter()
            .map(|e| e.name.as_ref())
            .collect();
        tracing::info!(
            %addr,
            environments = %names.join(", "),
            database = %self.config.database,
            "deployhook listening; webhook URL: http://{addr}/event_handler"
        );
        if self.config.public_url.is_none() {
            tracing::info!(
                "DEPLOYHOOK_PUBLIC_URL is not set: deployment statuses carry no log_url; deploy \
                 log links are printed here, on {}",
                local_base(addr)
            );
        }
        match self.state.admin {
            Some(_) => tracing::info!("dashboard: {}/", local_base(addr)),
            None => tracing::info!(
                "the dashboard at / is off: set DEPLOYHOOK_ADMIN_TOKEN ({MIN_TOKEN_CHARS}+ \
                 characters: openssl rand -hex 32) to turn it on"
            ),
        }
        let store = self.state.store.clone();
        log_locks(&store).await;
        let stop_deploys = CancellationToken::new();
        let workers = super::lead::Workers {
            store: store.clone(),
            deployer: self.state.deployer.clone(),
            outbox: self.state.outbox.clone(),
            gate: self.state.gate.clone(),
            ages: retention::Ages {
                deliveries: self.config.retention.deliveries,
                deploys: self.config.retention.deploys,
            },
            shutdown_timeout: self.config.shutdown_timeout,
            lease: self.config.lease,
            replica: self.state.replica.clone(),
            status: self.state.lead.clone(),
            commands: super::commands::CommandWorker::new(self.state.clone()),
        };
        let workers = tokio::spawn(workers.run(stop_deploys.clone()));

        // The queue stops starting deploys the moment shutdown begins, not after the last
        // HTTP request drained.
        let stop_on_signal = stop_deploys.clone();
        let stop_log_streams = self.state.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stop_on_signal.cancel();
            stop_log_streams.cancel();
        };
        let metrics = self.state.metrics.clone();
        let mut serving = tokio::spawn(listener::serve(
            self.listener,
            router(self.state),
            self.config.connections,
            metrics,
            shutdown,
        ));
        // A client that stops reading a response (a log stream, say) must not hold the
        // shutdown up: the running deploys' wait and the outbox flush come after this.
        let served = tokio::select! {
            served = &mut serving => served,
            () = async {
                stop_deploys.cancelled().await;
                tokio::time::sleep(HTTP_DRAIN).await;
            } => {
                tracing::warn!(
                    "HTTP requests still open {HTTP_DRAIN:?} after shutdown began; closing them"
                );
                serving.abort();
                Ok(())
            }
        };
        let served = served.context("the server task failed");

        stop_deploys.cancel();
        let _ = workers.await;
        if let Err(err) = store.close().await {
            tracing::warn!("could not truncate the database log: {err:#}");
        }
        served?;
        tracing::info!("deployhook stopped");
        Ok(())
    }
}

/// What the bodies being read may hold: a share per client only where clients are told
/// apart (behind a reverse proxy, with no per-client connection cap, all come from it).
fn body_limits(limits: &crate::config::ConnectionLimits) -> BodyLimits {
    BodyLimits {
        total: limits.body_budget,
        per_client: (limits.max_connections_per_client != 0)
            .then_some(limits.body_budget_per_client),
    }
}

/// `http://ADDR` for links printed on the console: an unspecified address (0.0.0.0, ::)
/// becomes loopback, which reaches the server from its own machine.
fn local_base(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Why the server could not listen on `addr`, and what to do about it.
fn bind_error(addr: SocketAddr, err: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let port = addr.port();
    let hint = match err.kind() {
        ErrorKind::AddrInUse => format!(
            ": another program (another deployhook?) listens there — `ss -ltnp 'sport = \
             :{port}'` shows which; stop it, or set DEPLOYHOOK_LISTEN to a free port"
        ),
        ErrorKind::AddrNotAvailable => format!(
            ": this machine has no address {}; use 127.0.0.1 (this machine only) or 0.0.0.0 \
             (every interface)",
            addr.ip()
        ),
        ErrorKind::PermissionDenied if port < 1024 => {
            ": ports below 1024 need privileges; listen on a higher one (4567) behind a \
             reverse proxy"
                .to_owned()
        }
        _ => String::new(),
    };
    anyhow::anyhow!("could not listen on {addr}: {err}{hint}")
}

/// SIGINT (Ctrl-C) and SIGTERM (systemd, Docker, Kubernetes), as many times as they come.
#[derive(Debug)]
pub struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Listens from now on; a failure to listen for SIGTERM is logged, and Ctrl-C still works.
    pub fn new() -> Self {
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|err| tracing::error!("cannot listen for SIGTERM: {err}"))
            .ok();
        Self { terminate }
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        let ctrl_c = async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!("cannot listen for Ctrl-C: {err}");
                std::future::pending::<()>().await;
            }
        };
        let terminate = async {
            match &mut self.terminate {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => "SIGINT",
            () = terminate => "SIGTERM",
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let name = Signals::new().next().await;
    tracing::info!("{name} received; shutting down");
}

impl Application {
    /// Serves until SIGINT or SIGTERM, then shuts down as [`Application::run_until`] does;
    /// a second signal stops the running deploys at once instead of waiting for them (an
    /// operator pressing Ctrl-C again does not mean to wait a minute).
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let deployer = self.state.deployer.clone();
        let timeout = self.config.shutdown_timeout;
        let mut signals = Signals::new();
        let (first, first_seen) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let name = signals.next().await;
            match deployer.running_count() {
                0 => tracing::info!("{name} received; shutting down"),
                running => tracing::info!(
                    running,
                    "{name} received; shutting down: waiting up to {} for the running deploys \
                     to finish (DEPLOYHOOK_SHUTDOWN_TIMEOUT); Ctrl-C again (or another SIGTERM) \
                     stops them now",
                    humantime::format_duration(timeout)
                ),
            }
            let _ = first.send(());
            let name = signals.next().await;
            tracing::warn!(
                "{name} received again: stopping the running deploys now (once more exits at \
                 once)"
            );
            deployer.stop_running();
            // A third: the operator will not wait for the kill grace, the output drain or
            // the outbox flush either. What is left is settled at the next start: deploys
            // still running are killed and reported, pending calls are sent.
            let name = signals.next().await;
            tracing::warn!("{name} received a third time: exiting now");
            std::process::exit(130);
        });
        self.run_until(async {
            let _ = first_seen.await;
        })
        .await
    }
}

/// One line for every lock in force at start: a lock survives restarts, and an operator
/// reading the log of a server that deploys nothing should learn why without asking.
async fn log_locks(store: &Store) {
    let now = now_ms();
    match store.read(move |c| locks::holding_all(c, now)).await {
        Ok(held) => {
            for lock in held {
                let until = lock.until.map_or_else(
                    || "until unlocked".to_owned(),
                    |until| format!("until {}", super::dashboard::time(until)),
                );
                // Who and why are what the lock's request said: strings, quoted in the log.
                tracing::warn!(
                    environment = lock.environment.as_str(),
                    by = lock.locked_by.as_str(),
                    since = super::dashboard::time(lock.locked_at).as_str(),
                    reason = lock.reason.as_str(),
                    "environment locked ({until}): automatic deploys there wait for the unlock"
                );
            }
        }
        Err(err) => tracing::warn!("could not read the locks in force: {err}"),
    }
}
