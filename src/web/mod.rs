//! The HTTP server: the [`router`] of every route, the server's lifecycle ([`app`]), the
//! state handlers share ([`state`]), the webhook endpoint ([`event_handler`]), operations
//! (health, metrics, deploy logs: [`ops`]), and the operators' [`dashboard`] with its
//! sign-in ([`auth`]).
//!
//! May use: `guide`, `webhook`, `deploy`, `github`, `store`, `config`, `metrics`, `health`,
//! `model`.

pub mod app;
pub mod auth;
pub mod dashboard;
pub mod event_handler;
pub mod listener;
pub mod ops;
pub mod state;

use axum::routing::{get, post};
use axum::{Router, middleware};

pub use app::{Application, shutdown_signal};
pub use state::AppState;

/// The routes. Public so tests can call them without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/event_handler", post(event_handler::event_handler))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            event_handler::count_rejections,
        ))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/deployments/{id}/log", get(ops::deployment_log))
        .merge(dashboard::routes())
        .layer(middleware::from_fn(event_handler::delivery_span))
        .with_state(state)
}
