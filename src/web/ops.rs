//! Operations: `GET /healthz`, `GET /readyz`, `GET /metrics` (wrong metrics tokens limited
//! per client address, as the admin token's are: `guesses`), and a deploy's log at
//! `GET /deployments/{id}/log?token=…` (plain text, or a page for a browser: `log_page`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use crate::deploy::log::{self, Found};
use crate::model::DeploymentId;
use crate::store::{SCHEMA_VERSION, now_ms, views};
use crate::web::AppState;
use crate::web::auth::same_secret;
use crate::web::client::ClientAddress;
use crate::web::guesses::Verdict;
use crate::web::log_page;

#[derive(Debug, serde::Deserialize)]
pub(super) struct LogQuery {
    token: Option<String>,
    /// `text`: plain text, even to a browser.
    format: Option<String>,
}

/// `GET /deployments/{id}/log?token=…`: the deploy's output as plain text, streamed while
/// it runs; to a browser (which asks for HTML), the same stream as a page that leads back
/// to the dashboard. A missing or wrong token gets the same 404 as an unknown deployment,
/// so the answer tells a guesser nothing.
pub(super) async fn deployment_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        let message = "no such log: check the link (it carries its token) and the deployment id\n";
        (StatusCode::NOT_FOUND, message).into_response()
    };
    let Ok(id) = id.parse::<DeploymentId>() else {
        return not_found();
    };
    let token = query.token.unwrap_or_default();
    if !state.links.key.verify(id, &token) {
        return not_found();
    }
    let shared = &*state;
    match log::open(
        shared.store.clone(),
        &shared.logs,
        id,
        shared.stopping.clone(),
    )
    .await
    {
        Ok(Found::NoLog) => not_found(),
        Ok(Found::Log(stream))
            if query.format.as_deref() != Some("text") && log_page::wants_html(&headers) =>
        {
            let plain = format!("{}&format=text", shared.links.path(id));
            log_page::page(id, &plain, stream)
        }
        Ok(Found::Log(stream)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(err) => {
            tracing::error!("could not read the log of deployment {id}: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the log could not be read; try again\n",
            )
                .into_response()
        }
    }
}

pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers with this release's schema, and both workers run.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let shared = &*state;
    let schema = shared.store.read(views::schema_version).await;
    let (mut database, schema_ok, schema) = match schema {
        Ok(version) => (
            "ok".to_owned(),
            usize::try_from(version) == Ok(SCHEMA_VERSION),
            format!("{version} of {SCHEMA_VERSION}"),
        ),
        Err(err) => (err.to_string(), false, "unknown".to_owned()),
    };
    // Reads still work then, but no write will be acknowledged again.
    if let Some(failed) = shared.store.sync_failed() {
        database = failed.to_string();
    } else if let Some(trouble) = shared.store.write_trouble() {
        // Reads work, but every delivery is answered 503 until writes go through again.
        database = format!("writes are failing: {trouble}");
    }
    // A standby replica runs no workers: another one leads them (PostgreSQL).
    let leading = shared.lead.leading();
    let running = |alive: bool| match (alive, leading) {
        (true, _) => "running",
        (false, false) => "standby",
        (false, true) => "stopped",
    };
    let (deployer, outbox) = (shared.deployer.is_alive(), shared.outbox.is_alive());
    let gate = shared.gate.is_alive();
    let workers_ok = !leading || (deployer && outbox && gate);
    let mut checks = serde_json::json!({
        "database": database,
        "engine": shared.store.engine(),
        "schema": schema,
        "deploy_worker": running(deployer),
        "outbox_worker": running(outbox),
        "gate_worker": running(gate),
    });
    let mut heartbeat_ok = true;
    if shared.store.postgres().is_some() {
        let at = shared.lead.heartbeat_at();
        let age = now_ms().saturating_sub(at);
        heartbeat_ok = at > 0 && u128::try_from(age).unwrap_or(0) < shared.lease.as_millis();
        checks["replica"] = serde_json::json!({
            "id": shared.replica.id,
            "role": if leading { "leader" } else { "standby" },
            "heartbeat": if at == 0 {
                "none yet".to_owned()
            } else {
                format!("{} ms ago", age)
            },
        });
    }
    let ready = database == "ok" && schema_ok && workers_ok && heartbeat_ok;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text, behind `DEPLOYHOOK_METRICS_TOKEN` when set.
pub(super) async fn metrics(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    let shared = &*state;
    if let Some(token) = &shared.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let verdict = shared
            .metrics_guesses
            .check(client.0, || same_secret(given, token.expose_secret()));
        match verdict {
            Verdict::Right => {}
            Verdict::Wrong => {
                let message = "/metrics needs Authorization: Bearer <DEPLOYHOOK_METRICS_TOKEN>\n";
                return (StatusCode::UNAUTHORIZED, message).into_response();
            }
            Verdict::Limited(wait) => {
                let wait = wait.as_secs().max(1);
                let message =
                    format!("too many wrong metrics tokens from your address: wait {wait} s\n");
                let retry_after = [(header::RETRY_AFTER, wait.to_string())];
                return (StatusCode::TOO_MANY_REQUESTS, retry_after, message).into_response();
            }
        }
    }
    let now = now_ms();
    let alive = match shared.store.postgres() {
        None => 1,
        Some(pg) => {
            let since = now - i64::try_from(shared.lease.as_millis()).unwrap_or(i64::MAX / 2);
            pg.replicas(since)
                .await
                .map_or(0, |replicas| replicas.len())
        }
    };
    shared.metrics.replicas(alive, shared.lead.leading());
    match shared.store.read(move |c| views::backlog(c, now)).await {
        Ok(backlog) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            shared.metrics.render(&backlog),
        )
            .into_response(),
        Err(err) => {
            tracing::error!("could not read the backlog for /metrics: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database could not be read\n",
            )
                .into_response()
        }
    }
}
