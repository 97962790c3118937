//! Approving and rejecting deployments that wait for approval: the API
//! (`GET /api/approvals`, `POST /api/deployments/{id}/approve`, `POST
//! /api/deployments/{id}/reject`) that `deployhook approvals`, `approve` and `reject` call,
//! and the dashboard's Approve and Reject buttons. Approvals are a person's: the admin
//! token, whose name is only a claim, may neither approve nor reject. A person needs the
//! `approve` role in the environment (write, unless configured otherwise) and, when the
//! environment names reviewers, to be one of them or in one of their teams. What the store
//! refuses (the author's own change, a second approval by the same person, a deployment no
//! longer waiting) is answered with its sentence. Every verdict, given or refused, goes to
//! the audit log, the given ones in the verdict's own transaction.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::find_environment;
use crate::model::{Action, Actor, AuditAction, AuditEntry, DeploymentId, Grantee, RepoName, Role};
use crate::store::approvals::{self, Awaiting};
use crate::store::{audit, now_ms, views};
use crate::web::AppState;
use crate::web::admin::{Refused, unavailable};
use crate::web::client::ClientAddress;
use crate::web::dashboard::access::form_sender;
use crate::web::dashboard::after_form;
use crate::web::people::authorize::role;
use crate::web::people::{Scope, api_sight, authorize, caller};

/// The routes: the API's and the dashboard forms'.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/approvals", get(list))
        .route("/api/deployments/{id}/approve", post(approve_api))
        .route("/api/deployments/{id}/reject", post(reject_api))
        .route("/dashboard/approve", post(approve_form))
        .route("/dashboard/reject", post(reject_form))
}

/// A deployment waiting for approval, as the API shows it.
pub fn awaiting_json(waiting: &Awaiting) -> Value {
    json!({
        "deployment_id": waiting.deployment_id,
        "repository": waiting.repository,
        "environment": waiting.environment,
        "sha": waiting.sha,
        "ref": waiting.git_ref,
        "author": waiting.author,
        "needed": waiting.needed,
        "approvers": waiting.approvers,
        "self_approval": waiting.self_approval,
        "waiting_for": waiting.waiting_for,
        "deadline": rfc3339(waiting.deadline),
    })
}

fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `GET /api/approvals`: what waits, of the repositories the caller can read.
async fn list(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    match state.store.read(approvals::waiting).await {
        Ok(waiting) => Json(json!({
            "waiting": waiting
                .iter()
                .filter(|w| sight.can_read(&w.repository))
                .map(awaiting_json)
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}

/// A verdict.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Approve,
    Reject(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectRequest {
    #[serde(default)]
    reason: String,
}

async fn approve_api(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let actor = match caller(&state, client, &headers, None).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    answer(decide(&state, &actor, &id, Verdict::Approve, &client.0.to_string()).await)
}

async fn reject_api(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RejectRequest>>,
) -> Response {
    let actor = match caller(&state, client, &headers, None).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    let verdict = Verdict::Reject(reason);
    answer(decide(&state, &actor, &id, verdict, &client.0.to_string()).await)
}

fn answer(result: Result<Value, Refused>) -> Response {
    match result {
        Ok(done) => Json(done).into_response(),
        Err(refused) => refused.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct VerdictForm {
    id: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    form_token: String,
}

async fn approve_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<VerdictForm>,
) -> Response {
    on_form(&state, client, &headers, &form, Verdict::Approve).await
}

async fn reject_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<VerdictForm>,
) -> Response {
    let verdict = Verdict::Reject(form.reason.clone());
    on_form(&state, client, &headers, &form, verdict).await
}

async fn on_form(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    form: &VerdictForm,
    verdict: Verdict,
) -> Response {
    let actor = match form_sender(state, headers, client, &form.form_token) {
        Ok(actor) => actor,
        Err(answer) => return *answer,
    };
    let address = client.0.to_string();
    after_form(
        decide(state, &actor, &form.id, verdict, &address)
            .await
            .map(drop),
    )
}

/// Gives `actor`'s verdict on deployment `id`, if they may.
pub(crate) async fn decide(
    state: &AppState,
    actor: &Actor,
    id: &str,
    verdict: Verdict,
    address: &str,
) -> Result<Value, Refused> {
    let Ok(id) = id.trim().parse::<DeploymentId>() else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!(
                "{:?} is not a deployment id",
                id.chars().take(40).collect::<String>()
            ),
        ));
    };
    let number = id.get();
    let unknown = || {
        Refused(
            StatusCode::NOT_FOUND,
            approvals::ApprovalRefusal::Unknown(id).to_string(),
        )
    };
    let (job, asked) = state
        .store
        .read(move |c| Ok((views::job(c, number)?, approvals::of_deployment(c, id)?)))
        .await
        .map_err(|err| unavailable(&err))?;
    let job = job.ok_or_else(unknown)?;
    // A repository the person cannot read: as if there were no such deployment, so that a
    // refusal never names it.
    if actor.is_person() {
        let repo = RepoName::parse(&job.repository).map_err(|_| unknown())?;
        let environment = find_environment(&state.environments, &job.environment);
        if role(state, actor, &repo, environment).await? < Role::Read {
            return Err(unknown());
        }
    }
    // Who may approve is what the environment said when the wait began.
    let reviewers: Vec<Grantee> = asked
        .map(|a| a.reviewers)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Grantee::parse(r).ok())
        .collect();
    let action = match verdict {
        Verdict::Approve => AuditAction::Approve,
        Verdict::Reject(_) => AuditAction::Reject,
    };
    let entry = AuditEntry::new(now_ms(), actor, action, address)
        .with_repository(&job.repository)
        .with_environment(&job.environment)
        .with_target(&id.to_string());
    if let Err(refused) =
        may_review(state, actor, &job.repository, &job.environment, &reviewers).await
    {
        if refused.0 == StatusCode::FORBIDDEN && actor.is_person() {
            record(state, entry.refused(&refused.1)).await?;
        }
        return Err(refused);
    }
    let login = actor.login.clone();
    let now = now_ms();
    let outcome = match verdict {
        Verdict::Approve => {
            let done = state
                .store
                .write(move |c| {
                    let done = approvals::approve(c, id, &login, now)?;
                    let entry = match &done {
                        Ok(approved) => entry.with_detail(&format!(
                            "{} of {} approvals ({})",
                            approved.approvers.len(),
                            approved.needed,
                            approved.approvers.join(", ")
                        )),
                        Err(why) => entry.refused(&why.to_string()),
                    };
                    audit::record(c, &entry)?;
                    Ok(done)
                })
                .await
                .map_err(|err| unavailable(&err))?;
            done.map(|approved| {
                json!({
                    "deployment_id": number,
                    "approvers": approved.approvers,
                    "needed": approved.needed,
                    "queued": approved.queued,
                })
            })
        }
        Verdict::Reject(reason) => {
            let reason: String = reason
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            state
                .store
                .write(move |c| {
                    let done = approvals::reject(c, id, &login, &reason, now)?;
                    let entry = match &done {
                        Ok(said) => entry.with_detail(said),
                        Err(why) => entry.refused(&why.to_string()),
                    };
                    audit::record(c, &entry)?;
                    Ok(done)
                })
                .await
                .map_err(|err| unavailable(&err))?
                .map(|said| json!({ "deployment_id": number, "rejected": said }))
        }
    };
    // An approval may have queued it, or ended it superseded; a rejection queued its status
    // and its event: whatever was committed goes out now.
    state.deployer.wake();
    state.outbox.wake();
    let done = outcome.map_err(|why| {
        let status = match why {
            approvals::ApprovalRefusal::Unknown(_) => StatusCode::NOT_FOUND,
            approvals::ApprovalRefusal::OwnChange { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::CONFLICT,
        };
        Refused(status, why.to_string())
    })?;
    tracing::info!(
        deployment = number,
        login = actor.login.as_str(),
        verdict = action.as_str(),
        "approval verdict given"
    );
    Ok(done)
}

async fn record(state: &AppState, entry: AuditEntry) -> Result<(), Refused> {
    state
        .store
        .write(move |c| audit::record(c, &entry).map(drop))
        .await
        .map_err(|err| unavailable(&err))
}

/// Whether `actor` may give a verdict on a deployment of `repository` in `environment`:
/// a person (never the admin token), with the `approve` role there, and one of its
/// reviewers when it names any.
async fn may_review(
    state: &AppState,
    actor: &Actor,
    repository: &str,
    environment: &str,
    reviewers: &[Grantee],
) -> Result<(), Refused> {
    if !actor.is_person() {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "approvals are given by people: sign in with GitHub, or use a personal token \
             (DEPLOYHOOK_TOKEN), not the admin token"
                .into(),
        ));
    }
    let repo =
        RepoName::parse(repository).map_err(|e| Refused(StatusCode::CONFLICT, e.to_string()))?;
    authorize(
        state,
        actor,
        Action::Approve,
        Scope::Deploys(&repo, environment),
    )
    .await?;
    if reviewers.is_empty() {
        return Ok(());
    }
    // People named first: a team GitHub cannot be asked about does not stop them.
    if reviewers
        .iter()
        .any(|r| matches!(r, Grantee::User(login) if login.eq_ignore_ascii_case(&actor.login)))
    {
        return Ok(());
    }
    for reviewer in reviewers {
        let named = match reviewer {
            Grantee::User(login) => login.eq_ignore_ascii_case(&actor.login),
            Grantee::Team { org, slug } => state
                .permissions
                .in_team(org, slug, &actor.login, &repo)
                .await
                .map_err(|err| {
                    Refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "could not ask GitHub whether {} is in @{org}/{slug}: {err}",
                            actor.login
                        ),
                    )
                })?,
        };
        if named {
            return Ok(());
        }
    }
    let names: Vec<String> = reviewers.iter().map(ToString::to_string).collect();
    Err(Refused(
        StatusCode::FORBIDDEN,
        format!(
            "{} is not a reviewer of {environment}: its approvals are given by {}",
            actor.login,
            names.join(", ")
        ),
    ))
}
