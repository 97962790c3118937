//! The HTTP server: routes, shared state, and a lifecycle a test can drive — build on a
//! port (0 in tests) with the database opened and recovered, run the workers until a
//! shutdown future resolves, then wait (bounded) for the deploys still running and send
//! the GitHub calls they queued.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{FromRef, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, EnvironmentConfig};
use crate::dashboard::{self, AdminAuth};
use crate::deploy_log::{self, Found, LogHub, LogKey, LogLinks};
use crate::deploy_worker::DeployWorker;
use crate::dispatch::{Ack, Effect, Outcome, dispatch};
use crate::github::GitHubClient;
use crate::ids::DeploymentId;
use crate::intake::{Delivery, IntakeConfig, Rejected};
use crate::metrics::Metrics;
use crate::outbox_worker::OutboxWorker;
use crate::store::deliveries::{self, DeliveryRecord, Recorded};
use crate::store::{SCHEMA_VERSION, Store, now_ms, outbox, views};

/// At shutdown, how long requests in flight may take to finish.
const HTTP_DRAIN: Duration = Duration::from_secs(10);
/// After the deploys finished at shutdown, how long to keep sending the statuses they
/// queued. What is not sent by then is sent at the next start.
const OUTBOX_FLUSH: Duration = Duration::from_secs(10);

/// State shared by the handlers; one `Arc`, because axum clones it for every request.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub(crate) struct Shared {
    intake: Arc<IntakeConfig>,
    pub(crate) environments: Arc<[EnvironmentConfig]>,
    pub(crate) store: Store,
    outbox: OutboxWorker,
    deployer: DeployWorker,
    pub(crate) links: LogLinks,
    logs: LogHub,
    /// deployhook's GitHub App id, in App mode.
    own_app: Option<String>,
    /// Cancelled when shutdown begins: ends live log streams, which would hold it up.
    stopping: CancellationToken,
    metrics: Arc<Metrics>,
    metrics_token: Option<SecretString>,
    /// `None` when the dashboard is off.
    pub(crate) admin: Option<AdminAuth>,
    /// GitHub's web address, for links from the dashboard.
    pub(crate) github_web: String,
}

impl AppState {
    pub(crate) fn shared(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Arc<IntakeConfig> {
    fn from_ref(state: &AppState) -> Self {
        state.0.intake.clone()
    }
}

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
            .with_context(|| format!("could not listen on {}", config.listen))?;
        let store = Store::open(&config.database, config.database_sync)?;
        let metrics = Arc::new(Metrics::new());
        let github = GitHubClient::new(&config.github)
            .context("could not build the GitHub client")?
            .with_metrics(metrics.clone());
        let outbox = OutboxWorker::new(store.clone(), github, config.outbox);
        let environments: Arc<[EnvironmentConfig]> = config.environments.clone().into();
        let logs = LogHub::default();
        let deployer = DeployWorker::new(
            store.clone(),
            environments.clone(),
            config.max_concurrent_deploys,
            outbox.clone(),
            logs.clone(),
            metrics.clone(),
        );
        let links = LogLinks {
            key: LogKey::load_or_create(&store)
                .await
                .context("could not read the log link key")?,
            public_url: config.public_url.clone(),
        };
        deployer
            .recover()
            .await
            .context("could not recover the deploy queue")?;
        store
            .write(outbox::release_in_flight)
            .await
            .context("could not recover the outbox")?;
        let admin = config
            .admin_token
            .as_ref()
            .map(|token| AdminAuth::new(&links.key, token, config.public_url.as_deref()));
        let state = AppState(Arc::new(Shared {
            intake: Arc::new(IntakeConfig::new(config.webhook_secrets.clone())),
            environments,
            store,
            outbox,
            deployer,
            links,
            logs,
            own_app: config.github.app_id().map(str::to_owned),
            stopping: CancellationToken::new(),
            metrics,
            metrics_token: config.metrics_token.clone(),
            admin,
            github_web: config.github.web_url(),
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
                "DEPLOYHOOK_PUBLIC_URL is not set: deployment statuses carry no log_url"
            );
        }
        let (deployer, outbox) = (self.state.0.deployer.clone(), self.state.0.outbox.clone());
        let stop_deploys = CancellationToken::new();
        let stop_outbox = CancellationToken::new();
        let deploy_loop = tokio::spawn(deployer.clone().run(stop_deploys.clone()));
        let mut outbox_loop = tokio::spawn(outbox.run(stop_outbox.clone()));

        // The queue stops starting deploys the moment shutdown begins, not after the last
        // HTTP request drained.
        let stop_on_signal = stop_deploys.clone();
        let stop_log_streams = self.state.0.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stop_on_signal.cancel();
            stop_log_streams.cancel();
        };
        let mut serving = tokio::spawn(
            axum::serve(self.listener, router(self.state))
                .with_graceful_shutdown(shutdown)
                .into_future(),
        );
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
                Ok(Ok(()))
            }
        };
        let served = served
            .context("the server task failed")?
            .context("the server failed");

        stop_deploys.cancel();
        let _ = deploy_loop.await;
        deployer.finish_running(self.config.shutdown_timeout).await;
        stop_outbox.cancel();
        if tokio::time::timeout(OUTBOX_FLUSH, &mut outbox_loop)
            .await
            .is_err()
        {
            outbox_loop.abort();
            tracing::warn!("GitHub calls still pending at shutdown will be sent at the next start");
        }
        served?;
        tracing::info!("deployhook stopped");
        Ok(())
    }
}

/// The routes. Public so tests can call them without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/event_handler", post(event_handler))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/deployments/{id}/log", get(deployment_log))
        .merge(dashboard::routes())
        .layer(middleware::from_fn(delivery_span))
        .with_state(state)
}

/// `POST /event_handler`: the guide's single webhook endpoint. The delivery and the work it
/// sets in motion are committed before the answer goes back.
async fn event_handler(State(state): State<AppState>, delivery: Delivery) -> Response {
    let (ack, mut effect) = dispatch(&delivery, &state.0.environments, state.0.own_app.as_deref());
    if let Effect::Deploy(job) = &mut effect {
        job.log_url = state.0.links.url(job.id);
    }
    let event_label = Metrics::event_label(&delivery.event_name);
    let record = DeliveryRecord {
        hook_id: delivery.hook_id.map_or(0, |h| h.get()),
        delivery_id: delivery.delivery_id.map_or_else(
            || format!("local-{}", uuid::Uuid::new_v4()),
            |d| d.to_string(),
        ),
        event: delivery.event_name,
        action: delivery.event.action().map(str::to_owned),
        repository: delivery.event.repository().map(str::to_owned),
        received_at: now_ms(),
        outcome: ack.outcome,
        message: ack.message.clone(),
    };
    let wake = match &effect {
        Effect::None => (false, false),
        Effect::CreateDeployment(_) | Effect::Refuse(..) => (true, false),
        Effect::Deploy(_) => (true, true),
    };
    let delivery_id = record.delivery_id.clone();
    let recorded = state
        .0
        .store
        .write(move |c| deliveries::record(c, &record, &effect))
        .await;
    let ack = match recorded {
        Ok(Recorded::New) => {
            if wake.0 {
                state.0.outbox.wake();
            }
            if wake.1 {
                state.0.deployer.wake();
            }
            ack
        }
        Ok(Recorded::DuplicateDelivery) => Ack::new(
            Outcome::Duplicate,
            format!("duplicate delivery {delivery_id}: already received, nothing done"),
        ),
        Ok(Recorded::AlreadyDone(message)) => Ack::new(Outcome::Ignored, message),
        Err(err) => {
            // Not acknowledged, so GitHub shows the delivery as failed and it can be
            // redelivered once the database is back.
            tracing::error!("could not record the delivery: {err}");
            let body = serde_json::json!({
                "error": "deployhook could not record this delivery; redeliver it later"
            });
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    };
    state.0.metrics.delivery(event_label, ack.outcome.as_str());
    // Deliveries that set work in motion are worth a line; the rest (every pull request
    // opened or pushed to, on an organisation hook) would drown it, and are in the database.
    if ack.outcome == Outcome::Accepted {
        tracing::info!(outcome = ack.outcome.as_str(), "{}", ack.message);
    } else {
        tracing::debug!(outcome = ack.outcome.as_str(), "{}", ack.message);
    }
    (ack.status, Json(ack)).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    token: Option<String>,
}

/// `GET /deployments/{id}/log?token=…`: the deploy's output as plain text, streamed while
/// it runs. A missing or wrong token gets the same 404 as an unknown deployment, so the
/// answer tells a guesser nothing.
async fn deployment_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Response {
    let not_found = || {
        let message = "no such log: check the link (it carries its token) and the deployment id\n";
        (StatusCode::NOT_FOUND, message).into_response()
    };
    let Ok(id) = id.parse::<DeploymentId>() else {
        return not_found();
    };
    let token = query.token.unwrap_or_default();
    if !state.0.links.key.verify(id, &token) {
        return not_found();
    }
    let shared = &state.0;
    match deploy_log::open(
        shared.store.clone(),
        &shared.logs,
        id,
        shared.stopping.clone(),
    )
    .await
    {
        Ok(Found::NoLog) => not_found(),
        Ok(Found::Log(stream)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(err) => {
            tracing::error!("could not read the log of deployment {id}: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the log could not be read; try again\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers with this release's schema, and both workers run.
async fn readyz(State(state): State<AppState>) -> Response {
    let shared = &state.0;
    let schema = shared.store.read(views::schema_version).await;
    let (mut database, schema_ok, schema) = match schema {
        Ok(version) => (
            "ok".to_owned(),
            usize::try_from(version) == Ok(SCHEMA_VERSION),
            format!("{version} of {SCHEMA_VERSION}"),
        ),
        Err(err) => (err.to_string(), false, "unknown".to_owned()),
    };
    // Reads still work then, but no write will be acknowledged again.
    if let Some(failed) = shared.store.sync_failed() {
        database = failed.to_string();
    }
    let running = |alive: bool| if alive { "running" } else { "stopped" };
    let (deployer, outbox) = (shared.deployer.is_alive(), shared.outbox.is_alive());
    let ready = database == "ok" && schema_ok && deployer && outbox;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "database": database,
            "schema": schema,
            "deploy_worker": running(deployer),
            "outbox_worker": running(outbox),
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text, behind `DEPLOYHOOK_METRICS_TOKEN` when set.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let shared = &state.0;
    if let Some(token) = &shared.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !dashboard::same_secret(given, token.expose_secret()) {
            let message = "/metrics needs Authorization: Bearer <DEPLOYHOOK_METRICS_TOKEN>\n";
            return (StatusCode::UNAUTHORIZED, message).into_response();
        }
    }
    let now = now_ms();
    match shared.store.read(move |c| views::backlog(c, now)).await {
        Ok(backlog) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            shared.metrics.render(&backlog),
        )
            .into_response(),
        Err(err) => {
            tracing::error!("could not read the backlog for /metrics: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database could not be read\n",
            )
                .into_response()
        }
    }
}

/// Counts deliveries refused by intake, by the reason it put on the response.
async fn count_rejections(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(Rejected(reason)) = response.extensions().get::<Rejected>() {
        state.0.metrics.rejected(reason);
    }
    response
}

/// Attaches the delivery's ids and event to every log line written while handling it,
/// background work included (it runs in this span too).
async fn delivery_span(request: Request, next: Next) -> Response {
    let span = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                // Bounded and printable only: these reach logs before they are validated.
                .map(|v| {
                    v.chars()
                        .take(64)
                        .filter(|c| !c.is_control())
                        .collect::<String>()
                })
                .unwrap_or_default()
        };
        tracing::info_span!(
            "delivery",
            delivery = %header("x-github-delivery"),
            hook = %header("x-github-hook-id"),
            event = %header("x-github-event"),
        )
    };
    next.run(request).instrument(span).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd, Docker, Kubernetes).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
