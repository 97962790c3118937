//! The admin API under `/api/`: locks (`GET`/`POST /api/locks`, `DELETE
//! /api/locks/{environment}`) and rollbacks (`POST /api/rollback`). `deployhook lock`,
//! `unlock`, `locks` and `rollback` call it, from this host or another; the dashboard's forms
//! do the same things through [`lock`], [`unlock`] and [`roll_back`].
//!
//! Every request carries `Authorization: Bearer <token>`: a person's personal token (the
//! action is theirs, allowed by their role: `web::people::authorize`) or the shared admin
//! token (automation, naming itself with `by`). A browser's cross-site form cannot send
//! that header, so the API needs no form token; cross-site requests are refused all the
//! same, and bodies are JSON (a form post is `415`). Wrong admin tokens count against the
//! same limit as the dashboard's sign-in: per client address (`guesses`), so a stranger's
//! guesses never refuse the admin's right token.

mod actions;

pub use actions::VerificationRollback;
mod deployment;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::store::locks::{self, Lock};
use crate::store::now_ms;
use crate::web::AppState;
use crate::web::client::ClientAddress;
use crate::web::people::caller;
pub use crate::web::refused::{Refused, unavailable};
pub use actions::{lock, roll_back, unlock};

/// The longest a lock may be asked for: past it, lock until unlocked.
pub const MAX_LOCK: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/locks", get(list_locks).post(post_lock))
        .route("/api/locks/{environment}", delete(delete_lock))
        .route("/api/rollback", post(post_rollback))
        .route("/api/deployments/{id}", get(deployment::get_deployment))
}

/// A lock as the API and the dashboard show it.
pub(super) fn lock_json(lock: &Lock) -> serde_json::Value {
    let time = |ms: i64| {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
        humantime::format_rfc3339_seconds(at).to_string()
    };
    json!({
        "environment": lock.environment,
        "reason": lock.reason,
        "locked_by": lock.locked_by,
        "locked_at": time(lock.locked_at),
        "until": lock.until.map(time),
    })
}

async fn list_locks(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    let sight = match crate::web::people::api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    let visible = match crate::web::people::authorize::visible_environments(&state, &sight).await {
        Ok(visible) => visible,
        Err(refused) => return refused.into_response(),
    };
    let now = now_ms();
    match state.store.read(move |c| locks::holding_all(c, now)).await {
        Ok(locks) => Json(json!({
            "locks": locks
                .iter()
                .filter(|l| visible.contains(&l.environment))
                .map(lock_json)
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockRequest {
    environment: String,
    reason: String,
    /// How long: `2h`, `30m`. Absent: until unlocked.
    #[serde(rename = "for")]
    duration: Option<String>,
    /// Who locks; the CLI sends the user's name.
    by: Option<String>,
}

async fn post_lock(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Json(request): Json<LockRequest>,
) -> Response {
    let actor = match caller(&state, client, &headers, request.by.as_deref()).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    let duration = match request
        .duration
        .as_deref()
        .map(crate::config::parse_duration)
    {
        None => None,
        Some(Ok(d)) if d > MAX_LOCK => {
            return Refused(StatusCode::BAD_REQUEST, "for: at most a year".into()).into_response();
        }
        Some(Ok(d)) if !d.is_zero() => Some(d),
        Some(Ok(_)) => {
            return Refused(
                StatusCode::BAD_REQUEST,
                "for: must be longer than 0s".into(),
            )
            .into_response();
        }
        Some(Err(err)) => {
            return Refused(StatusCode::BAD_REQUEST, format!("for: {err}")).into_response();
        }
    };
    match lock(
        &state,
        &request.environment,
        &request.reason,
        duration,
        &actor,
        &client.0.to_string(),
    )
    .await
    {
        Ok(lock) => (
            StatusCode::CREATED,
            Json(json!({ "lock": lock_json(&lock) })),
        )
            .into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn delete_lock(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(environment): Path<String>,
) -> Response {
    let actor = match caller(&state, client, &headers, None).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    match unlock(&state, &environment, &actor, &client.0.to_string()).await {
        Ok(lock) => Json(json!({ "unlocked": lock_json(&lock) })).into_response(),
        Err(refused) => refused.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    repository: String,
    environment: String,
    /// A SHA, or the first 7+ digits of one deployed here. Absent: the last success before
    /// the current one.
    to: Option<String>,
    by: Option<String>,
}

async fn post_rollback(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Json(request): Json<RollbackRequest>,
) -> Response {
    let actor = match caller(&state, client, &headers, request.by.as_deref()).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    match roll_back(
        &state,
        &request.repository,
        &request.environment,
        request.to.as_deref(),
        &actor,
        &client.0.to_string(),
    )
    .await
    {
        Ok(done) => (StatusCode::ACCEPTED, Json(done)).into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// At most 200 characters, no control characters: these reach logs and pages.
pub(super) fn bounded(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}
