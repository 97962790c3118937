//! The HTTP server: the [`router`] of every route, the server's lifecycle ([`app`]), the
//! state handlers share ([`state`]), the webhook endpoint ([`event_handler`]), operations
//! (health, metrics, deploy logs: [`ops`], shown to people as a page by `log_page`), refusals logged boundedly
//! ([`refusal_summary`]), the operators' [`dashboard`] with its sign-in ([`auth`]; wrong
//! tokens limited per [`client`] address by [`guesses`]) and its [`insights`] (the DORA
//! measures, charted), the [`admin`] API (locks, rollbacks) the CLI calls, given-up
//! [`calls`] (retry, dismiss), [`deliveries`] (a page each, refused ones too), the
//! [`audit`] log (who did what: a page and its API), [`people`] (GitHub sign-in, personal
//! tokens, and the one place that authorises actions), and the pages' static [`assets`]
//! (the favicon).
//!
//! May use: `guide`, `webhook`, `deploy`, `github`, `notify`, `store`, `config`, `metrics`,
//! `health`, `model`.

pub mod admin;
pub mod app;
pub mod approvals;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod calls;
pub mod client;
pub mod commands;
mod connections;
pub mod dashboard;
pub mod deliveries;
pub mod event_handler;
pub mod guesses;
pub mod insights;
pub mod lead;
pub mod listener;
mod log_page;
pub mod ops;
pub mod people;
pub mod refusal_summary;
pub mod refused;
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
        .route("/favicon.svg", get(assets::favicon))
        .route("/favicon.ico", get(assets::favicon))
        .merge(insights::routes().layer(middleware::from_fn(small_body)))
        .merge(dashboard::routes().layer(middleware::from_fn(small_body)))
        .merge(admin::routes().layer(middleware::from_fn(small_body)))
        .merge(calls::routes().layer(middleware::from_fn(small_body)))
        .merge(approvals::routes().layer(middleware::from_fn(small_body)))
        .merge(deliveries::routes().layer(middleware::from_fn(small_body)))
        .merge(audit::routes().layer(middleware::from_fn(small_body)))
        .method_not_allowed_fallback(wrong_method)
        .fallback(not_found)
        .layer(middleware::from_fn(event_handler::delivery_span))
        .with_state(state)
}

/// Plain text stays plain text: the 404 repeats the path the client asked for.
const NOSNIFF: [(axum::http::HeaderName, &str); 1] =
    [(axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")];

/// A known path asked with a method it does not take: the 405 says which, and where
/// webhooks go, since the usual cause is a payload URL pointing at the wrong place (or a
/// browser opening the webhook URL).
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    use axum::http::StatusCode;
    let path = uri.path();
    let message = if path == "/event_handler" {
        format!(
            "{method} /event_handler: this is where GitHub sends webhook deliveries, with POST; \
             there is nothing to see here in a browser (the dashboard is at /)\n"
        )
    } else {
        format!(
            "{path} does not take {method}; GitHub's webhook deliveries go to POST \
             /event_handler\n"
        )
    };
    (StatusCode::METHOD_NOT_ALLOWED, NOSNIFF, message).into_response()
}

/// No such path: says where things are.
async fn not_found(uri: axum::http::Uri) -> Response {
    use axum::http::StatusCode;
    let message = format!(
        "no such page: {}; webhooks go to POST /event_handler, the dashboard is at /\n",
        uri.path()
    );
    (StatusCode::NOT_FOUND, NOSNIFF, message).into_response()
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
