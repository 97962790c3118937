//! Given-up calls, for operators to resolve: the admin API (`GET /api/calls/failed`,
//! `POST /api/calls/{id}/retry`, `POST /api/calls/{id}/dismiss`, and the same for every
//! unresolved call at once under `/api/calls/failed/…`) that `deployhook calls` uses, and
//! the dashboard's Retry and Dismiss forms. What a retry or a dismissal does, and why, is in
//! [`crate::store::outbox::given_up`]. Each call retried or dismissed, or refused, has its
//! entry in the audit log, written in the same transaction.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};

use crate::model::{Actor, AuditAction, AuditEntry, RepoName, Role, people};
use crate::store::outbox::given_up::{self, GivenUp, NotDone};
use crate::store::{audit, now_ms};
use crate::web::AppState;
use crate::web::admin::{Refused, bounded, unavailable};
use crate::web::client::ClientAddress;
use crate::web::dashboard::access::form_sender;
use crate::web::dashboard::after_form;
use crate::web::people::authorize::role;
use crate::web::people::{Scope, api_sight, authorize, caller};

/// The routes: the API's and the dashboard forms'.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/calls/failed", get(list))
        .route("/api/calls/failed/retry", post(retry_all))
        .route("/api/calls/failed/dismiss", post(dismiss_all))
        .route("/api/calls/{id}/retry", post(retry_one))
        .route("/api/calls/{id}/dismiss", post(dismiss_one))
        .route("/dashboard/calls/retry", post(retry_form))
        .route("/dashboard/calls/dismiss", post(dismiss_form))
}

/// What to do with a given-up call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Dismiss,
}

impl Action {
    fn audited(self) -> AuditAction {
        match self {
            Self::Retry => AuditAction::Retry,
            Self::Dismiss => AuditAction::Dismiss,
        }
    }
}

/// `entry` (who, when, from where) completed for call `id`: what was done, or why not.
fn audited(entry: AuditEntry, id: i64, done: &Result<GivenUp, NotDone>) -> AuditEntry {
    let entry = entry.with_target(&id.to_string());
    match done {
        Ok(call) => entry
            .with_repository(&call.repository)
            .with_detail(&what(call)),
        Err(not) => entry.refused(&refused(id, not).1),
    }
}

/// A given-up call as the API shows it.
fn call_json(call: &GivenUp) -> Value {
    let time = |ms: i64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
        humantime::format_rfc3339_seconds(at).to_string()
    };
    json!({
        "id": call.id,
        "kind": call.kind,
        "what": what(call),
        "repository": call.repository,
        "deployment_id": call.deployment_id,
        "queued_at": time(call.created_at),
        "attempts": call.attempts,
        "last_error": call.last_error,
        "state": call.state,
        "dismissed_by": call.dismissed_by,
        "dismissed_at": call.dismissed_at.map(time),
    })
}

/// The call in words: `deployment status of deployment 7`.
fn what(call: &GivenUp) -> String {
    let kind = call.kind.replace('_', " ");
    match call.deployment_id {
        Some(id) => format!("{kind} of deployment {id}"),
        None => kind,
    }
}

/// Whether `actor` may act on `call` (admin on its repository, unless configured
/// otherwise).
async fn may(
    state: &AppState,
    actor: &Actor,
    call: &GivenUp,
    action: Action,
) -> Result<(), Refused> {
    let what = match action {
        Action::Retry => people::Action::RetryCall,
        Action::Dismiss => people::Action::DismissCall,
    };
    let repo = RepoName::parse(&call.repository)
        .map_err(|e| Refused(StatusCode::CONFLICT, format!("call {}: {e}", call.id)))?;
    // Another person's repository: no such call, as far as this caller can tell.
    if role(state, actor, &repo, None).await? < Role::Read {
        return Err(refused(call.id, &NotDone::Unknown));
    }
    authorize(state, actor, what, Scope::Repository(&repo)).await
}

/// `GET /api/calls/failed`: the calls given up and not resolved, then those dismissed.
async fn list(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    let read = state
        .store
        .read(|c| {
            Ok((
                given_up::list(c, "failed", given_up::LISTED)?,
                given_up::list(c, "dismissed", given_up::LISTED)?,
            ))
        })
        .await;
    match read {
        Ok((failed, dismissed)) => Json(json!({
            "failed": failed.iter().filter(|c| sight.can_read(&c.repository)).map(call_json).collect::<Vec<_>>(),
            "dismissed": dismissed.iter().filter(|c| sight.can_read(&c.repository)).map(call_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}

async fn retry_one(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(&state, client, &headers, &id, Action::Retry).await
}

async fn dismiss_one(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(&state, client, &headers, &id, Action::Dismiss).await
}

async fn one(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    id: &str,
    action: Action,
) -> Response {
    let actor = match caller(state, client, headers, None).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    let Ok(id) = id.parse::<i64>() else {
        return Refused(StatusCode::NOT_FOUND, "no call has this id".into()).into_response();
    };
    match act(state, id, action, &actor, &client.0.to_string()).await {
        Ok(call) => {
            let key = match action {
                Action::Retry => "retried",
                Action::Dismiss => "dismissed",
            };
            Json(json!({ key: call_json(&call) })).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

/// Retries or dismisses call `id` (the API's and the dashboard's way), if `actor` may, at
/// `address`.
async fn act(
    state: &AppState,
    id: i64,
    action: Action,
    actor: &Actor,
    address: &str,
) -> Result<GivenUp, Refused> {
    let now = now_ms();
    let entry = AuditEntry::new(now, actor, action.audited(), address);
    // A call gone already is refused by the store below, which records that too.
    let call = state
        .store
        .read(move |c| given_up::find(c, id))
        .await
        .map_err(|err| unavailable(&err))?;
    let decided = match &call {
        Some(call) => may(state, actor, call, action).await,
        None => Ok(()),
    };
    if let Err(refused) = decided {
        // What was decided about a person is recorded; an unknown call is not.
        if refused.0 == StatusCode::FORBIDDEN {
            let entry = entry.with_target(&id.to_string()).refused(&refused.1);
            state
                .store
                .write(move |c| audit::record(c, &entry).map(drop))
                .await
                .map_err(|err| unavailable(&err))?;
        }
        return Err(refused);
    }
    let by = bounded(&actor.shown());
    let done = state
        .store
        .write(move |c| {
            let done = match action {
                Action::Retry => given_up::retry(c, id, now)?,
                Action::Dismiss => given_up::dismiss(c, id, &by, now)?,
            };
            audit::record(c, &audited(entry, id, &done))?;
            Ok(done)
        })
        .await
        .map_err(|err| unavailable(&err))?
        .map_err(|not| refused(id, &not))?;
    if action == Action::Retry {
        state.outbox.wake();
    }
    tracing::info!(call = id, "{}: {}", what(&done), done.state);
    Ok(done)
}

fn refused(id: i64, not: &NotDone) -> Refused {
    match not {
        NotDone::Unknown => Refused(
            StatusCode::NOT_FOUND,
            format!("no call {id}: it was sent, pruned, or never existed"),
        ),
        NotDone::NotFailed(state) => Refused(
            StatusCode::CONFLICT,
            format!("call {id} is not given up (it is {state})"),
        ),
        NotDone::Superseded(why) => Refused(StatusCode::CONFLICT, format!("call {id}: {why}")),
    }
}

async fn retry_all(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    all(&state, client, &headers, Action::Retry).await
}

async fn dismiss_all(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    all(&state, client, &headers, Action::Dismiss).await
}

/// Every unresolved call (up to [`given_up::LISTED`]), oldest first so that calls of one
/// ordering key go back in their order; those that cannot be retried are listed with why.
async fn all(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    action: Action,
) -> Response {
    let actor = match caller(state, client, headers, None).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    let by = bounded(&actor.shown());
    let listed = state
        .store
        .read(|c| given_up::list(c, "failed", given_up::LISTED))
        .await;
    let (mut allowed, mut not_done) = (Vec::new(), Vec::new());
    for call in match listed {
        Ok(calls) => calls,
        Err(err) => return unavailable(&err).into_response(),
    } {
        match may(state, &actor, &call, action).await {
            Ok(()) => allowed.push(call.id),
            // Calls of repositories the person cannot read are not theirs to hear of.
            Err(Refused(StatusCode::NOT_FOUND, _)) => {}
            Err(Refused(_, why)) => not_done.push(json!({ "id": call.id, "error": why })),
        }
    }
    let now = now_ms();
    let address = client.0.to_string();
    let entry = AuditEntry::new(now, &actor, action.audited(), &address);
    let done = state
        .store
        .write(move |c| {
            let mut calls = given_up::list(c, "failed", given_up::LISTED)?;
            calls.retain(|call| allowed.contains(&call.id));
            calls.reverse();
            let mut results = Vec::new();
            for call in calls {
                let result = match action {
                    Action::Retry => given_up::retry(c, call.id, now)?,
                    Action::Dismiss => given_up::dismiss(c, call.id, &by, now)?,
                };
                audit::record(c, &audited(entry.clone(), call.id, &result))?;
                results.push((call.id, result));
            }
            Ok(results)
        })
        .await;
    let results = match done {
        Ok(results) => results,
        Err(err) => return unavailable(&err).into_response(),
    };
    if action == Action::Retry {
        state.outbox.wake();
    }
    let mut done = Vec::new();
    for (id, result) in results {
        match result {
            Ok(call) => done.push(call_json(&call)),
            Err(not) => not_done.push(json!({ "id": id, "error": refused(id, &not).1 })),
        }
    }
    let key = match action {
        Action::Retry => "retried",
        Action::Dismiss => "dismissed",
    };
    Json(json!({ key: done, "not_done": not_done })).into_response()
}

#[derive(serde::Deserialize)]
struct CallForm {
    id: i64,
    #[serde(default)]
    form_token: String,
}

async fn retry_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<CallForm>,
) -> Response {
    on_form(&state, client, &headers, &form, Action::Retry).await
}

async fn dismiss_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<CallForm>,
) -> Response {
    on_form(&state, client, &headers, &form, Action::Dismiss).await
}

/// A dashboard button: the session and form token checked, then the action.
async fn on_form(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    form: &CallForm,
    action: Action,
) -> Response {
    let actor = match form_sender(state, headers, client, &form.form_token) {
        Ok(actor) => actor,
        Err(answer) => return *answer,
    };
    let address = client.0.to_string();
    after_form(
        act(state, form.id, action, &actor, &address)
            .await
            .map(drop),
    )
}
