//! The HTTP server: routes, shared state, and a lifecycle a test can drive — build on a
//! port (0 in tests), run until a shutdown future resolves, then wait (bounded) for the
//! deploys that are still running.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::{Config, DeployConfig};
use crate::dispatch::dispatch;
use crate::github::GitHubClient;
use crate::intake::{Delivery, IntakeConfig};
use crate::runner::Runner;
use crate::worker::Worker;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    intake: IntakeConfig,
    deploy: Arc<DeployConfig>,
    worker: Worker,
}

impl FromRef<AppState> for IntakeConfig {
    fn from_ref(state: &AppState) -> Self {
        state.intake.clone()
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
    /// Binds `config.listen` and prepares the state. Port 0 picks a free port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("could not listen on {}", config.listen))?;
        let github =
            GitHubClient::new(&config.github).context("could not build the GitHub client")?;
        let worker = Worker::new(github, Runner::new(&config.deploy));
        let state = AppState {
            intake: IntakeConfig {
                secrets: config.webhook_secrets.clone(),
            },
            deploy: Arc::new(config.deploy.clone()),
            worker,
        };
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

    /// The background worker, for callers that drive it directly.
    pub fn worker(&self) -> Worker {
        self.state.worker.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the requests in
    /// flight, and waits up to the configured timeout for background work.
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
        tracing::info!(
            %addr,
            environment = %self.config.deploy.environment,
            command = ?self.config.deploy.command,
            "deployhook listening; webhook URL: http://{addr}/event_handler"
        );
        let worker = self.state.worker.clone();
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("the server failed")?;
        if !worker.shutdown(self.config.shutdown_timeout).await {
            tracing::warn!(
                timeout = ?self.config.shutdown_timeout,
                "deploys still running at the shutdown timeout were abandoned"
            );
        }
        tracing::info!("deployhook stopped");
        Ok(())
    }
}

/// The routes. Public so tests can call them without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/event_handler", post(event_handler))
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn(delivery_span))
        .with_state(state)
}

/// `POST /event_handler`: the guide's single webhook endpoint.
async fn event_handler(State(state): State<AppState>, delivery: Delivery) -> Response {
    let ack = dispatch(delivery.event, &state.deploy, &state.worker);
    tracing::info!(outcome = ?ack.outcome, "{}", ack.message);
    (ack.status, Json(ack)).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
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
