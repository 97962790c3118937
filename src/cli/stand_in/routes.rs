//! The stand-in's answers: the endpoints of GitHub's REST API that deployhook's flow calls
//! with a token, answered the way GitHub answers them (status codes, bodies, and its JSON
//! error shape for what it refuses), and the webhooks those calls lead to handed to
//! [`Deliverer`]. Every request prints one line: method, path, answer, and what it did.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::deliver::{Deliverer, Delivery};
use super::guard;
use super::records::{MAX_DEPLOYMENTS, NewDeployment, NewStatus, Records, StatusRefused, text};
use crate::cli::terminal::outln;
use crate::model::RepoName;

/// The states GitHub accepts in a deployment status.
const STATES: &[&str] = &[
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];
const DOCS: &str = "https://docs.github.com/rest/deployments";

#[derive(Debug, Clone)]
pub struct StandInState {
    pub records: Arc<Records>,
    pub deliverer: Deliverer,
}

/// What a handler did, for the request's printed line.
#[derive(Debug, Clone)]
struct Note(String);

/// An answer with a note for the printed line.
fn noted(status: StatusCode, body: Value, note: String) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.extensions_mut().insert(Note(note));
    response
}

/// GitHub's error shape: `{"message", "documentation_url", "status"}`.
pub(super) fn refusal(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": DOCS,
        "status": status.as_u16().to_string(),
    });
    noted(status, body, message.to_owned())
}

fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "Not Found")
}

pub fn router(state: StandInState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/repos/{owner}/{repo}", get(repository))
        .route(
            "/repos/{owner}/{repo}/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/repos/{owner}/{repo}/deployments/{id}",
            get(one_deployment),
        )
        .route(
            "/repos/{owner}/{repo}/deployments/{id}/statuses",
            get(list_statuses).post(create_status),
        )
        .route(
            "/repos/{owner}/{repo}/deployments/{id}/statuses/{status}",
            get(one_status),
        )
        .route("/repos/{owner}/{repo}/commits/{sha}/{what}", get(checks))
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        // GitHub's requests are small; a request of megabytes would only fill memory.
        .layer(DefaultBodyLimit::max(guard::MAX_BODY))
        .layer(middleware::from_fn(guard::loopback_host))
        .layer(middleware::from_fn(print_request))
        .with_state(state)
}

/// One line per request: what was asked, the answer, and what it did.
async fn print_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let note = response
        .extensions()
        .get::<Note>()
        .map(|n| format!(": {}", guard::shown(&n.0)))
        .unwrap_or_default();
    outln!("stand-in: {method} {uri} → {}{note}", response.status());
    response
}

async fn unknown() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        "Not Found (the stand-in answers only what deployhook's flow calls)",
    )
}

async fn root() -> Response {
    let body = json!({
        "stand_in": "deployhook stand-in for GitHub's REST API; not for production",
        "deployments_url": "/repos/{owner}/{repo}/deployments",
    });
    noted(StatusCode::OK, body, "the stand-in is up".into())
}

/// `owner/repo` when it is a repository name GitHub allows.
fn repo_name(owner: &str, repo: &str) -> Option<String> {
    RepoName::parse(&format!("{owner}/{repo}"))
        .ok()
        .map(|r| r.to_string())
}

/// A token is required to write, as on GitHub; any value is accepted.
fn authenticated(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .is_some_and(|v| !v.as_bytes().is_empty())
}

async fn repository(
    State(state): State<StandInState>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    match repo_name(&owner, &repo) {
        Some(repo) => noted(StatusCode::OK, state.records.repository(&repo), repo),
        None => not_found(),
    }
}

async fn create_deployment(
    State(state): State<StandInState>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(repo) = repo_name(&owner, &repo) else {
        return not_found();
    };
    if !authenticated(&headers) {
        return refusal(StatusCode::UNAUTHORIZED, "Requires authentication");
    }
    let Some(request) = parse_object(&body) else {
        return refusal(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let new = match new_deployment(&request) {
        Ok(new) => new,
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let Some(deployment) = state.records.create_deployment(&repo, new) else {
        let message = format!("the stand-in keeps at most {MAX_DEPLOYMENTS} deployments");
        return refusal(StatusCode::FORBIDDEN, &message);
    };
    let note = format!(
        "deployment {} of {repo}@{} to {}",
        deployment["id"],
        short(text(&deployment["sha"])),
        text(&deployment["environment"])
    );
    state.deliverer.send(Delivery {
        event: "deployment",
        about: format!("deployment {}", deployment["id"]),
        body: json!({
            "action": "created",
            "deployment": deployment,
            "repository": state.records.repository(&repo),
            "sender": state.records.user(),
        }),
    });
    noted(StatusCode::CREATED, deployment, note)
}

/// The body as a JSON object; anything else GitHub refuses with a 400.
fn parse_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// A create-deployment request as GitHub checks it: `ref` required, the rest defaulted.
/// `auto_merge` and `required_contexts` are accepted and not acted on: the stand-in has no
/// branches to merge and no commit statuses to wait for.
fn new_deployment(request: &serde_json::Map<String, Value>) -> Result<NewDeployment, String> {
    let git_ref = match request.get("ref") {
        Some(Value::String(r)) if !r.trim().is_empty() => r.clone(),
        Some(_) => {
            return Err("Invalid request.\n\nFor 'properties/ref', it is not a string.".into());
        }
        None => return Err("Invalid request.\n\n\"ref\" wasn't supplied.".into()),
    };
    let string = |key: &str, default: &str| -> Result<String, String> {
        match request.get(key) {
            None | Some(Value::Null) => Ok(default.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!(
                "Invalid request.\n\nFor 'properties/{key}', it is not a string."
            )),
        }
    };
    let flag = |key: &str| -> Result<Option<bool>, String> {
        match request.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!(
                "Invalid request.\n\nFor 'properties/{key}', it is not a boolean."
            )),
        }
    };
    let payload = match request.get("payload") {
        None | Some(Value::Null) => json!({}),
        // A JSON-encoded string is GitHub's older form; it is kept as it was sent.
        Some(payload @ (Value::Object(_) | Value::String(_))) => payload.clone(),
        Some(_) => {
            return Err(
                "Invalid request.\n\nFor 'properties/payload', it is not an object or a string."
                    .into(),
            );
        }
    };
    flag("auto_merge")?;
    Ok(NewDeployment {
        git_ref,
        task: string("task", "deploy")?,
        environment: string("environment", "production")?,
        payload,
        description: string("description", "")?,
        production_environment: flag("production_environment")?,
        transient_environment: flag("transient_environment")?.unwrap_or(false),
    })
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    sha: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    task: Option<String>,
    environment: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

/// GitHub's paging: `per_page` (30 by default, at most 100) from `page` (1 first).
fn page(items: Vec<Value>, per_page: Option<usize>, page: Option<usize>) -> Vec<Value> {
    let per_page = per_page.unwrap_or(30).clamp(1, 100);
    let skip = page
        .unwrap_or(1)
        .max(1)
        .saturating_sub(1)
        .saturating_mul(per_page);
    items.into_iter().skip(skip).take(per_page).collect()
}

async fn list_deployments(
    State(state): State<StandInState>,
    Path((owner, repo)): Path<(String, String)>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Some(repo) = repo_name(&owner, &repo) else {
        return not_found();
    };
    let Ok(Query(query)) = query else {
        return refusal(StatusCode::BAD_REQUEST, "Invalid query parameters");
    };
    let filters: Vec<(&str, &str)> = [
        ("sha", &query.sha),
        ("ref", &query.git_ref),
        ("task", &query.task),
        ("environment", &query.environment),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    let listed = page(
        state.records.deployments(&repo, &filters),
        query.per_page,
        query.page,
    );
    let note = format!("{} deployments", listed.len());
    noted(StatusCode::OK, Value::Array(listed), note)
}

/// A deployment id from the path; GitHub answers 404 for one that is not a number.
fn deployment_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

async fn one_deployment(
    State(state): State<StandInState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> Response {
    let found = repo_name(&owner, &repo)
        .zip(deployment_id(&id))
        .and_then(|(repo, id)| state.records.deployment(&repo, id));
    match found {
        Some(deployment) => noted(StatusCode::OK, deployment, format!("deployment {id}")),
        None => not_found(),
    }
}

async fn list_statuses(
    State(state): State<StandInState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let found = repo_name(&owner, &repo)
        .zip(deployment_id(&id))
        .and_then(|(repo, id)| state.records.statuses(&repo, id));
    let (Some(statuses), Ok(Query(query))) = (found, query) else {
        return not_found();
    };
    let states: Vec<&str> = statuses.iter().map(|s| text(&s["state"])).collect();
    let note = format!("deployment {id}: [{}]", states.join(", "));
    let listed = page(statuses.clone(), query.per_page, query.page);
    noted(StatusCode::OK, Value::Array(listed), note)
}

async fn one_status(
    State(state): State<StandInState>,
    Path((owner, repo, id, status)): Path<(String, String, String, String)>,
) -> Response {
    let found = repo_name(&owner, &repo)
        .zip(deployment_id(&id))
        .and_then(|(repo, id)| state.records.statuses(&repo, id))
        .zip(status.parse::<u64>().ok())
        .and_then(|(all, wanted)| all.into_iter().find(|s| s["id"].as_u64() == Some(wanted)));
    match found {
        Some(found) => noted(StatusCode::OK, found, format!("status {status}")),
        None => not_found(),
    }
}

async fn create_status(
    State(state): State<StandInState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(repo), Some(id)) = (repo_name(&owner, &repo), deployment_id(&id)) else {
        return not_found();
    };
    if !authenticated(&headers) {
        return refusal(StatusCode::UNAUTHORIZED, "Requires authentication");
    }
    let Some(request) = parse_object(&body) else {
        return refusal(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let new = match new_status(&request) {
        Ok(new) => new,
        Err(message) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let (status, deployment) = match state.records.create_status(&repo, id, new) {
        Ok(created) => created,
        Err(StatusRefused::NoDeployment) => return not_found(),
        Err(StatusRefused::TooMany) => {
            return refusal(
                StatusCode::FORBIDDEN,
                "too many statuses for one deployment",
            );
        }
    };
    let state_name = text(&status["state"]).to_owned();
    let description = text(&status["description"]);
    let note = format!("deployment {id} is {state_name}: {description}");
    state.deliverer.send(Delivery {
        event: "deployment_status",
        about: format!("deployment {id} {state_name}"),
        body: json!({
            "action": "created",
            "deployment_status": status,
            "deployment": deployment,
            "check_run": null,
            "workflow_run": null,
            "repository": state.records.repository(&repo),
            "sender": state.records.user(),
        }),
    });
    noted(StatusCode::CREATED, status, note)
}

/// A create-status request as GitHub checks it: `state` required and one of [`STATES`].
fn new_status(request: &serde_json::Map<String, Value>) -> Result<NewStatus, String> {
    let state = match request.get("state").and_then(Value::as_str) {
        Some(state) if STATES.contains(&state) => state.to_owned(),
        Some(_) => {
            return Err(format!(
                "Invalid request.\n\nFor 'properties/state', it is not one of {}.",
                STATES.join(", ")
            ));
        }
        None => return Err("Invalid request.\n\n\"state\" wasn't supplied.".into()),
    };
    let string = |key: &str| -> Result<Option<String>, String> {
        match request.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!(
                "Invalid request.\n\nFor 'properties/{key}', it is not a string."
            )),
        }
    };
    let log_url = match string("log_url")? {
        Some(url) => Some(url),
        None => string("target_url")?,
    };
    Ok(NewStatus {
        state,
        description: string("description")?.unwrap_or_default(),
        environment: string("environment")?,
        log_url: log_url.unwrap_or_default(),
        environment_url: string("environment_url")?.unwrap_or_default(),
    })
}

/// The CI gate's reads of a commit: no check suites, no check runs, no commit statuses.
/// With none, GitHub's combined status is `pending`; deployhook's gate reads the lists.
async fn checks(
    Path((owner, repo, sha, what)): Path<(String, String, String, String)>,
) -> Response {
    if repo_name(&owner, &repo).is_none() {
        return not_found();
    }
    let body = match what.as_str() {
        "check-runs" => json!({"total_count": 0, "check_runs": []}),
        "check-suites" => json!({"total_count": 0, "check_suites": []}),
        "status" => json!({"state": "pending", "sha": sha, "total_count": 0, "statuses": []}),
        _ => return not_found(),
    };
    noted(
        StatusCode::OK,
        body,
        format!("no {what} on {}", short(&sha)),
    )
}

/// A commit's first 7 characters, as GitHub shows it.
fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}
