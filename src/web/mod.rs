//! The HTTP server: the [`router`] of every route, the server's lifecycle ([`app`]), the
//! state handlers share ([`state`]), the webhook endpoint ([`event_handler`]), operations
//! (health, metrics, deploy logs: [`ops`]), the operators' [`dashboard`] with its sign-in
//! ([`auth`]), the [`admin`] API (locks, rollbacks) the CLI calls, given-up [`calls`]
//! (retry, dismiss) and [`deliveries`] (a page each, refused ones too).
//!
//! May use: `guide`, `webhook`, `deploy`, `github`, `notify`, `store`, `config`, `metrics`,
//! `health`, `model`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod calls;
pub mod dashboard;
pub mod deliveries;
pub mod event_handler;
pub mod listener;
pub mod ops;
pub mod state;

use axum::response::{IntoResponse, Response};
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
        .merge(dashboard::routes().layer(middleware::from_fn(small_body)))
        .merge(admin::routes().layer(middleware::from_fn(small_body)))
        .merge(calls::routes().layer(middleware::from_fn(small_body)))
        .merge(deliveries::routes().layer(middleware::from_fn(small_body)))
        .layer(middleware::from_fn(event_handler::delivery_span))
        .with_state(state)
}

/// The most an operator's form (sign-in, sign-out) may hold.
const MAX_FORM_BODY: usize = 4 * 1024;
/// How long such a form may take to arrive.
const FORM_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the bodies of the dashboard's requests in full before their handler runs: a few
/// KiB at most, within [`FORM_BODY_TIMEOUT`]. Without it a sign-in form could be trickled
/// for ever, holding a connection, since only `/event_handler` bounds its own body.
async fn small_body(request: axum::extract::Request, next: middleware::Next) -> Response {
    use axum::http::StatusCode;
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(FORM_BODY_TIMEOUT, axum::body::to_bytes(body, MAX_FORM_BODY));
    match read.await {
        Ok(Ok(bytes)) => {
            let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(request).await
        }
        Ok(Err(_)) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the form is larger than 4 KiB\n",
        )
            .into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the form did not arrive within 10 seconds\n",
        )
            .into_response(),
    }
}
