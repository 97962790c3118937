//! The admin API under `/api/`: locks (`GET`/`POST /api/locks`, `DELETE
//! /api/locks/{environment}`) and rollbacks (`POST /api/rollback`). `deployhook lock`,
//! `unlock`, `locks` and `rollback` call it, from this host or another; the dashboard's forms
//! do the same things through [`lock`], [`unlock`] and [`roll_back`]. Each writes its entry
//! of the audit log (`store::audit`) in the transaction of what it does, refusals about
//! the action itself too (an unlock of an environment not locked).
//!
//! Every request carries `Authorization: Bearer <DEPLOYHOOK_ADMIN_TOKEN>`. A browser's
//! cross-site form cannot send that header, so the API needs no form token; cross-site
//! requests are refused all the same, and bodies are JSON (a form post is `415`). Wrong
//! tokens count against the same limit as the dashboard's sign-in: per client address
//! (`guesses`), so a stranger's guesses never refuse the admin's right token.

mod deployment;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::find_environment;
use crate::guide::rollback::{Deployed, rollback};
use crate::model::{Actor, AuditAction, AuditEntry, Environment, Notification, RepoName};
use crate::store::locks::{self, Lock};
use crate::store::{audit, now_ms, outbox, views};
use crate::web::AppState;
use crate::web::auth::cross_site;
use crate::web::client::ClientAddress;
use crate::web::guesses::Verdict;

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

/// A refusal, as the API answers it: a status and a sentence.
#[derive(Debug)]
pub struct Refused(pub StatusCode, pub String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// `None` when the request may go on: the admin token, from the same site.
pub(super) fn refusal(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
) -> Option<Refused> {
    let Some(admin) = &state.admin else {
        return Some(Refused(
            StatusCode::NOT_FOUND,
            "the admin API is off: set DEPLOYHOOK_ADMIN_TOKEN on the server".into(),
        ));
    };
    if cross_site(headers) {
        return Some(Refused(
            StatusCode::FORBIDDEN,
            "refused: a cross-site request".into(),
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Some(Refused(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <DEPLOYHOOK_ADMIN_TOKEN>".into(),
        ));
    };
    match admin.check_token(client.0, given) {
        Verdict::Right => None,
        Verdict::Wrong => Some(Refused(
            StatusCode::UNAUTHORIZED,
            "wrong admin token".into(),
        )),
        Verdict::Limited(wait) => Some(Refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong admin tokens from your address: wait {} s",
                wait.as_secs().max(1)
            ),
        )),
    }
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
    if let Some(refused) = refusal(&state, client, &headers) {
        return refused.into_response();
    }
    let now = now_ms();
    match state.store.read(move |c| locks::holding_all(c, now)).await {
        Ok(locks) => Json(json!({
            "locks": locks.iter().map(lock_json).collect::<Vec<_>>()
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
    if let Some(refused) = refusal(&state, client, &headers) {
        return refused.into_response();
    }
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
    let by = request
        .by
        .clone()
        .unwrap_or_else(|| client.acting("admin API"));
    let address = client.0.to_string();
    match lock(
        &state,
        &request.environment,
        &request.reason,
        duration,
        &by,
        &address,
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
    if let Some(refused) = refusal(&state, client, &headers) {
        return refused.into_response();
    }
    let by = headers
        .get("x-deployhook-by")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| client.acting("admin API"), bounded);
    match unlock(&state, &environment, &by, &client.0.to_string()).await {
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
    if let Some(refused) = refusal(&state, client, &headers) {
        return refused.into_response();
    }
    let by = request
        .by
        .clone()
        .unwrap_or_else(|| client.acting("admin API"));
    match roll_back(
        &state,
        &request.repository,
        &request.environment,
        request.to.as_deref(),
        &by,
        &client.0.to_string(),
    )
    .await
    {
        Ok(done) => (StatusCode::ACCEPTED, Json(done)).into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// Locks `environment` (the API's and the dashboard's way), for `by` at `address`.
pub async fn lock(
    state: &AppState,
    environment: &str,
    reason: &str,
    duration: Option<Duration>,
    by: &str,
    address: &str,
) -> Result<Lock, Refused> {
    let environment = known_environment(state, environment)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a lock needs a reason: say why, for whoever finds it".into(),
        ));
    }
    let now = now_ms();
    let lock = Lock {
        environment,
        reason: bounded(reason),
        locked_by: bounded(by),
        locked_at: now,
        until: duration.map(|d| {
            now.saturating_add(i64::try_from(d.min(MAX_LOCK).as_millis()).unwrap_or(i64::MAX / 2))
        }),
    };
    let record = lock.clone();
    let detail = match lock_json(&lock)["until"].as_str() {
        Some(until) => format!("{} (until {until})", lock.reason),
        None => lock.reason.clone(),
    };
    let audited = AuditEntry::new(now, &Actor::admin_token(by), AuditAction::Lock, address)
        .with_environment(&lock.environment)
        .with_detail(&detail);
    let told = Notification::locked(
        &config_name(state, &lock.environment)?,
        &lock.locked_by,
        &lock.reason,
        lock.until,
        now,
    );
    state
        .store
        .write(move |c| {
            locks::lock(c, &record)?;
            audit::record(c, &audited)?;
            outbox::enqueue_notification(c, &told, now)
        })
        .await
        .map_err(|err| unavailable(&err))?;
    state.outbox.wake();
    // The queue sleeps until the next lock expires: this one may expire first.
    state.deployer.wake();
    // Who and why are what the request said: string fields, quoted in the text log.
    tracing::info!(
        environment = lock.environment.as_str(),
        by = lock.locked_by.as_str(),
        reason = lock.reason.as_str(),
        "environment locked"
    );
    Ok(lock)
}

/// Lifts the lock on `environment`; what waited for it runs, in its policy's order.
pub async fn unlock(
    state: &AppState,
    environment: &str,
    by: &str,
    address: &str,
) -> Result<Lock, Refused> {
    let environment = known_environment(state, environment)?;
    let now = now_ms();
    let name = environment.clone();
    let told = Notification::unlocked(&config_name(state, &environment)?, by, now);
    let audited = AuditEntry::new(now, &Actor::admin_token(by), AuditAction::Unlock, address)
        .with_environment(&environment);
    let lifted = state
        .store
        .write(move |c| {
            let lifted = locks::unlock(c, &name, now)?;
            let audited = match &lifted {
                Some(lock) => {
                    outbox::enqueue_notification(c, &told, now)?;
                    audited.with_detail(&format!("locked by {}: {}", lock.locked_by, lock.reason))
                }
                None => audited.refused(&format!("{name} is not locked")),
            };
            audit::record(c, &audited)?;
            Ok(lifted)
        })
        .await
        .map_err(|err| unavailable(&err))?;
    state.outbox.wake();
    let Some(lock) = lifted else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("{environment} is not locked"),
        ));
    };
    tracing::info!(
        environment = environment.as_str(),
        by,
        "environment unlocked"
    );
    state.deployer.wake();
    Ok(lock)
}

/// Rolls `repository` in `environment` back (see [`crate::guide::rollback`]): the
/// deployment is queued in the outbox and the environment locked, in one transaction.
pub async fn roll_back(
    state: &AppState,
    repository: &str,
    environment: &str,
    to: Option<&str>,
    by: &str,
    address: &str,
) -> Result<serde_json::Value, Refused> {
    let name = known_environment(state, environment)?;
    let repo =
        RepoName::parse(repository).map_err(|e| Refused(StatusCode::BAD_REQUEST, e.to_string()))?;
    let Some(config) = find_environment(&state.environments, &name) else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("no environment {name}"),
        ));
    };
    if !config.accepts(&repo) {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            format!("environment {name} does not list {repo}"),
        ));
    }
    let (history_repo, history_env) = (repo.to_string(), name.clone());
    let history: Vec<Deployed> = state
        .store
        .read(move |c| views::deploy_history(c, &history_repo, &history_env))
        .await
        .map_err(|err| unavailable(&err))?
        .into_iter()
        .map(|row| Deployed {
            sha: row.sha,
            result: row.result,
            rolled_back: row.rolled_back,
            installation: row.installation,
        })
        .collect();
    let by = bounded(by);
    let now = now_ms();
    let actor = Actor::admin_token(&by);
    let audited = AuditEntry::new(now, &actor, AuditAction::Rollback, address)
        .with_repository(repo.as_ref())
        .with_environment(&name);
    let decided = match rollback(config, &repo, &history, to, &by) {
        Ok(decided) => decided,
        Err(why) => {
            let refused = audited.with_target(to.unwrap_or_default()).refused(&why);
            let recorded = state.store.write(move |c| audit::record(c, &refused)).await;
            recorded.map_err(|err| unavailable(&err))?;
            return Err(Refused(StatusCode::CONFLICT, why));
        }
    };
    let audited = audited
        .with_target(decided.new.request.git_ref.as_ref())
        .with_detail(&decided.lock_reason);
    let lock = Lock {
        environment: name.clone(),
        reason: decided.lock_reason.clone(),
        locked_by: by.clone(),
        locked_at: now,
        until: None,
    };
    let new = decided.new.clone();
    let told = Notification::locked(&config.name, &by, &decided.lock_reason, None, now);
    state
        .store
        .write(move |c| {
            outbox::enqueue_create_deployment(c, &new, now)?;
            locks::lock(c, &lock)?;
            audit::record(c, &audited)?;
            outbox::enqueue_notification(c, &told, now)
        })
        .await
        .map_err(|err| unavailable(&err))?;
    state.outbox.wake();
    tracing::info!(
        repo = repo.as_ref(),
        environment = name.as_str(),
        reason = decided.lock_reason.as_str(),
        "rolled back"
    );
    Ok(json!({
        "repository": repo,
        "environment": name,
        "sha": decided.new.request.git_ref,
        "rolled_back": decided.from,
        "locked": decided.lock_reason,
    }))
}

/// The configured environment named `name`.
fn known_environment(state: &AppState, name: &str) -> Result<String, Refused> {
    match find_environment(&state.environments, name) {
        Some(environment) => Ok(environment.name.to_string()),
        None => {
            let known: Vec<&str> = state.environments.iter().map(|e| e.name.as_ref()).collect();
            let shown: String = name.chars().take(60).collect();
            Err(Refused(
                StatusCode::NOT_FOUND,
                format!(
                    "no environment {shown} here; this server deploys {}",
                    known.join(", ")
                ),
            ))
        }
    }
}

/// The configured environment's name, as the model spells it.
fn config_name(state: &AppState, name: &str) -> Result<Environment, Refused> {
    find_environment(&state.environments, name)
        .map(|e| e.name.clone())
        .ok_or_else(|| Refused(StatusCode::NOT_FOUND, format!("no environment {name}")))
}

/// At most 200 characters, no control characters: these reach logs and pages.
pub(super) fn bounded(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

pub(super) fn unavailable(err: &crate::store::StoreError) -> Refused {
    tracing::error!("admin API: {err}");
    Refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database could not be written; try again".into(),
    )
}
