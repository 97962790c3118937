//! Deliveries: all of them, a page at a time (`/deliveries?before=`), linked from the
//! dashboard, which folds the routine ones; one at a time: the page of a delivery (`/deliveries/{delivery_id}`, or
//! `/deliveries/refused/{n}` for a refused one) behind the dashboard's session, and the
//! admin API `deployhook deliveries` reads (`GET /api/deliveries?refused&limit=`,
//! `GET /api/deliveries/{delivery_id}`, `GET /api/deliveries/refused/{n}`). A page shows
//! the headers GitHub sent (its own, never a signature: only those were kept), the outcome
//! and its message, and the deployments the delivery led to.

use crate::web::people::{Sight, api_sight, page_sight};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::DeploymentId;
use crate::store::refused::{self, RefusedRow};
use crate::store::views::delivery::{self, DeliveryDetail, MergeRow};
use crate::store::views::{DeliveryRow, JobRow};
use crate::web::AppState;
use crate::web::admin::{Refused, unavailable};
use crate::web::client::ClientAddress;
use crate::web::dashboard::{self, render, time};

/// Deliveries the API lists unless asked otherwise, and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = refused::KEEP;
/// Deliveries a page of `/deliveries` lists.
const PER_PAGE: i64 = 50;

/// The routes: the pages and the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deliveries", get(list_page))
        .route("/deliveries/{delivery_id}", get(delivery_page))
        .route("/deliveries/refused/{id}", get(refused_page))
        .route("/api/deliveries", get(list))
        .route("/api/deliveries/{delivery_id}", get(delivery_api))
        .route("/api/deliveries/refused/{id}", get(refused_api))
}

/// Which hook's delivery, when a delivery id came through several.
#[derive(Debug, Deserialize)]
struct HookQuery {
    hook: Option<i64>,
}

/// Which page of `/deliveries`: those before this row id.
#[derive(Debug, Deserialize)]
struct PageQuery {
    before: Option<i64>,
}

/// A page of `/deliveries`.
#[derive(Template)]
#[template(path = "deliveries.html")]
struct ListPage {
    deliveries: Vec<(i64, dashboard::DeliveryView)>,
    /// The page's start: none for the newest.
    before: Option<i64>,
    /// The next page's start, when there are older deliveries.
    older: Option<i64>,
    per_page: i64,
}

/// `GET /deliveries`: every delivery kept, routine ones too, [`PER_PAGE`] a page.
async fn list_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let sight = match page_sight(&state, &headers).await {
        Ok(sight) => sight,
        Err(answer) => return answer,
    };
    let before = query.before;
    // One more than a page: whether there is an older page.
    let read = state
        .store
        .read(move |c| delivery::page(c, before, PER_PAGE + 1))
        .await;
    let mut rows = match read {
        Ok(rows) => rows,
        Err(err) => return dashboard::unavailable(&err),
    };
    let more = rows.len() > usize::try_from(PER_PAGE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PER_PAGE).unwrap_or(usize::MAX));
    let older = rows.last().filter(|_| more).map(|(id, _)| *id);
    // A person's page leaves out what they may not read; the paging stays the table's.
    rows.retain(|(_, row)| readable(&sight, row.repository.as_deref()));
    render(&ListPage {
        older,
        deliveries: rows
            .into_iter()
            .map(|(id, row)| (id, dashboard::delivery_view(row)))
            .collect(),
        before,
        per_page: PER_PAGE,
    })
}

/// A delivery, accepted or refused, ready to show.
#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    /// The delivery id, or `refused delivery 12`.
    title: String,
    refused: bool,
    received: String,
    event: String,
    action: String,
    repository: String,
    /// `accepted`, `ignored`…, or the status refused with.
    outcome: String,
    message: String,
    delivery_id: String,
    hook_id: String,
    client: String,
    headers: Vec<(String, String)>,
    merges: Vec<MergeRow>,
    deployments: Vec<DeploymentView>,
}

/// A deployment the delivery led to.
#[derive(Debug, Clone)]
struct DeploymentView {
    id: u64,
    state: String,
    repository: String,
    environment: String,
    short_sha: String,
    task: String,
    queued: String,
    log_path: String,
}

fn headers_of(json: Option<&str>) -> Vec<(String, String)> {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

fn deployment_view(state: &AppState, job: &JobRow) -> DeploymentView {
    DeploymentView {
        id: job.deployment_id,
        state: job.state.clone(),
        repository: job.repository.clone(),
        environment: job.environment.clone(),
        short_sha: job.sha.chars().take(7).collect(),
        task: job.task_shown(),
        queued: time(job.queued_at),
        log_path: state.links.path(DeploymentId::from(job.deployment_id)),
    }
}

/// What a delivery's page and API answer need, read in one go.
type Found = (DeliveryDetail, Vec<MergeRow>, Vec<JobRow>);

/// Delivery `id` with what it led to, if `sight` may read its repository (to anyone
/// else it does not exist).
async fn find(
    state: &AppState,
    sight: &Sight,
    id: String,
    hook: Option<i64>,
) -> Result<Option<Found>, Refused> {
    let found = state
        .store
        .read(move |c| {
            let Some(detail) = delivery::find(c, &id, hook)? else {
                return Ok(None);
            };
            let merges = delivery::merges(c, &id)?;
            let jobs = delivery::deployments(c, &id)?;
            Ok(Some((detail, merges, jobs)))
        })
        .await
        .map_err(|err| unavailable(&err))?;
    Ok(found.filter(|(detail, _, _)| readable(sight, detail.delivery.repository.as_deref())))
}

/// Whether `sight` may read a delivery of `repository` (one that names none, a ping, only
/// the admin token's).
fn readable(sight: &Sight, repository: Option<&str>) -> bool {
    repository.map_or_else(|| sight.everything(), |r| sight.can_read(r))
}

/// Refused delivery `id`: the admin token's to read only, since nothing in it can be
/// trusted to name a repository.
async fn find_refused(
    state: &AppState,
    sight: &Sight,
    id: &str,
) -> Result<Option<RefusedRow>, Refused> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    if !sight.everything() {
        return Ok(None);
    }
    state
        .store
        .read(move |c| refused::find(c, id))
        .await
        .map_err(|err| unavailable(&err))
}

fn not_found_page(what: &str) -> Response {
    dashboard::after_form(Err(Refused(
        StatusCode::NOT_FOUND,
        format!("No {what} here: it may be older than what deployhook keeps."),
    )))
}

async fn delivery_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HookQuery>,
) -> Response {
    let sight = match page_sight(&state, &headers).await {
        Ok(sight) => sight,
        Err(answer) => return answer,
    };
    let (detail, merges, jobs) = match find(&state, &sight, id, query.hook).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found_page("such delivery"),
        Err(refused) => return dashboard::after_form(Err(refused)),
    };
    let d = detail.delivery;
    render(&DeliveryPage {
        title: format!("delivery {}", d.delivery_id),
        refused: false,
        received: time(d.received_at),
        event: d.event,
        action: d.action.unwrap_or_default(),
        repository: d.repository.unwrap_or_default(),
        outcome: d.outcome,
        message: d.message,
        delivery_id: d.delivery_id,
        // GitHub names the hook on every delivery; 0 is its absence (a hand-made one).
        hook_id: if d.hook_id == 0 {
            String::new()
        } else {
            d.hook_id.to_string()
        },
        client: String::new(),
        headers: headers_of(detail.headers.as_deref()),
        merges,
        deployments: jobs.iter().map(|j| deployment_view(&state, j)).collect(),
    })
}

async fn refused_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let sight = match page_sight(&state, &headers).await {
        Ok(sight) => sight,
        Err(answer) => return answer,
    };
    let row = match find_refused(&state, &sight, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page("such refused delivery"),
        Err(refused) => return dashboard::after_form(Err(refused)),
    };
    let r = row.refusal;
    render(&DeliveryPage {
        title: format!("refused delivery {}", row.id),
        refused: true,
        received: time(r.received_at),
        event: r.event.unwrap_or_default(),
        action: String::new(),
        repository: String::new(),
        outcome: format!("refused: {} ({})", r.status, r.reason),
        message: r.message,
        delivery_id: r.delivery_id.unwrap_or_default(),
        hook_id: r.hook_id.filter(|hook| hook != "0").unwrap_or_default(),
        client: r.client,
        headers: headers_of(Some(&r.headers)),
        merges: vec![],
        deployments: vec![],
    })
}

/// `GET /api/deliveries`: `refused` (present, not `false`) lists refused ones instead.
#[derive(Debug, Deserialize)]
struct ListQuery {
    refused: Option<String>,
    limit: Option<i64>,
}

fn delivery_json(d: &DeliveryRow) -> Value {
    json!({
        "hook_id": d.hook_id,
        "delivery_id": d.delivery_id,
        "event": d.event,
        "action": d.action,
        "repository": d.repository,
        "received_at": rfc3339(d.received_at),
        "outcome": d.outcome,
        "message": d.message,
    })
}

fn refused_json(row: &RefusedRow, with_headers: bool) -> Value {
    let r = &row.refusal;
    let mut value = json!({
        "id": row.id,
        "received_at": rfc3339(r.received_at),
        "status": r.status,
        "reason": r.reason,
        "message": r.message,
        "client": r.client,
        "event": r.event,
        "delivery_id": r.delivery_id,
        "hook_id": r.hook_id,
    });
    if with_headers {
        value["headers"] = json!(headers_of(Some(&r.headers)));
    }
    value
}

fn job_json(job: &JobRow) -> Value {
    json!({
        "deployment_id": job.deployment_id,
        "repository": job.repository,
        "environment": job.environment,
        "sha": job.sha,
        "task": job.task,
        "rollback": job.rollback,
        "rolled_back": job.rolled_back,
        "state": job.state,
        "description": job.description,
    })
}

fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_millis(at).to_string()
}

async fn list(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let refused = query
        .refused
        .as_deref()
        .is_some_and(|v| !matches!(v, "false" | "0" | "no"));
    if refused && !sight.everything() {
        return Refused(
            StatusCode::FORBIDDEN,
            "refused deliveries are shown with the admin token only: nothing in them can be \
             trusted to name a repository"
                .into(),
        )
        .into_response();
    }
    let answer = if refused {
        state
            .store
            .read(move |c| refused::recent(c, limit))
            .await
            .map(|rows| {
                json!({ "refused": rows.iter().map(|r| refused_json(r, false)).collect::<Vec<_>>() })
            })
    } else {
        state
            .store
            .read(move |c| delivery::newest(c, limit))
            .await
            .map(|rows| {
                let rows = rows
                    .iter()
                    .filter(|row| readable(&sight, row.repository.as_deref()));
                json!({ "deliveries": rows.map(delivery_json).collect::<Vec<_>>() })
            })
    };
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}

async fn delivery_api(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HookQuery>,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    match find(&state, &sight, id.clone(), query.hook).await {
        Ok(Some((detail, merges, jobs))) => {
            let mut delivery = delivery_json(&detail.delivery);
            delivery["headers"] = json!(headers_of(detail.headers.as_deref()));
            Json(json!({
                "delivery": delivery,
                "merges": merges.iter().map(|m| json!({
                    "repository": m.repository,
                    "pull_request": m.pull_request,
                    "environment": m.environment,
                    "sha": m.sha,
                })).collect::<Vec<_>>(),
                "deployments": jobs.iter().map(job_json).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Ok(None) => {
            let shown: String = id.chars().take(60).collect();
            Refused(
                StatusCode::NOT_FOUND,
                format!("no delivery {shown} recorded (refused ones: --refused)"),
            )
            .into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

async fn refused_api(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    match find_refused(&state, &sight, &id).await {
        Ok(Some(row)) => Json(json!({ "refused": refused_json(&row, true) })).into_response(),
        Ok(None) => Refused(
            StatusCode::NOT_FOUND,
            "no such refused delivery kept (only the newest 1000 are)".into(),
        )
        .into_response(),
        Err(refused) => refused.into_response(),
    }
}
