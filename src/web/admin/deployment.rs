//! `GET /api/deployments/{id}`: one deployment as deployhook knows it, for `deployhook log
//! [--follow]` — its state, the path of its log, and while it is queued what holds it
//! (the lock on its environment, its window or freeze, or the deploy running ahead of it: see
//! [`crate::store::views::waiting`]), so that a follower can say why it waits; and what it
//! follows: the previous success and the changelog from it (`null` until read).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Refused, lock_json, unavailable};
use crate::model::Changelog;
use crate::store::views::waiting::{self, Waiting};
use crate::store::{changelogs, now_ms, views};
use crate::web::AppState;
use crate::web::client::ClientAddress;

/// `GET /api/deployments/{id}`: one deployment as deployhook knows it — its state
/// (`queued`, `running`, or how it ended) and the path of its log — for `deployhook log
/// --follow`. 404 until its deployment event has arrived.
pub(super) async fn get_deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    let sight = match crate::web::people::api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    let Ok(id) = id.parse::<crate::model::DeploymentId>() else {
        return Refused(
            StatusCode::NOT_FOUND,
            format!("{id:?} is not a deployment id"),
        )
        .into_response();
    };
    let (number, now) = (id.get(), now_ms());
    let environments = state.environments.clone();
    let read = state
        .store
        .read(move |c| {
            let Some(job) = views::job(c, number)? else {
                return Ok(None);
            };
            // Another person's repository: not there, as far as this caller can tell.
            if !sight.can_read(&job.repository) {
                return Ok(None);
            }
            let holding = match job.state.as_str() {
                "queued" => {
                    let hold = crate::config::hold_of(&environments, &job.environment, now);
                    let kind = (job.forced, job.clearance);
                    waiting::of_queued(
                        c,
                        &job.repository,
                        &job.environment,
                        kind,
                        hold.as_ref(),
                        now,
                    )?
                }
                _ => None,
            };
            let changes = (
                changelogs::previous_of(c, number)?,
                changelogs::read(c, number)?,
            );
            Ok(Some((job, holding, changes)))
        })
        .await;
    match read {
        Ok(Some((job, holding, (previous, changelog)))) => {
            let log_path = state.links.path(id);
            Json(json!({ "deployment": {
                "id": job.deployment_id,
                "repository": job.repository,
                "environment": job.environment,
                "sha": job.sha,
                "ref": job.git_ref,
                "task": job.task,
                "state": job.state,
                "description": job.description,
                "log_path": log_path,
                "rollback": job.rollback,
                "rolled_back": job.rolled_back,
                "waiting": holding.as_ref().map(waiting_json),
                "previous": previous.map(|p| json!({ "deployment": p.deployment_id, "sha": p.sha })),
                "changelog": changelog.as_ref().map(changelog_json),
            }}))
            .into_response()
        }
        Ok(None) => Refused(
            StatusCode::NOT_FOUND,
            format!(
                "deployhook has no deployment {id}: GitHub has not sent its deployment event \
                 (yet), or it is for an environment or repository this server does not run"
            ),
        )
        .into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}

/// A deployment's changelog: its state and sentence, and its commits (`null` until read).
pub(crate) fn changelog_json(log: &Changelog) -> serde_json::Value {
    json!({
        "state": log.state,
        "summary": log.summary(),
        "base": log.base,
        "backwards": log.backwards,
        "total": log.total,
        "detail": log.detail,
        "commits": log.commits,
    })
}

/// What holds a queued deployment: the sentence, and the lock, the window or freeze
/// (`{"kind": "window", "until": when it opens}`, `{"kind": "freeze", "until", "reason"}`,
/// times in RFC 3339 with the environment's offset) or the deployment ahead.
fn waiting_json(holding: &Waiting) -> serde_json::Value {
    use crate::model::Hold;
    let (mut lock, mut behind, mut hold) = (None, None, None);
    match holding {
        Waiting::Locked(l) => lock = Some(lock_json(l)),
        Waiting::Behind { deployment, .. } => behind = Some(*deployment),
        Waiting::Held(Hold::Closed { opens }) => {
            let opens = opens
                .as_ref()
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
            hold = Some(json!({"kind": "window", "until": opens}));
        }
        Waiting::Held(Hold::Frozen { until, reason }) => {
            let until = until.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
            hold = Some(json!({"kind": "freeze", "until": until, "reason": reason}));
        }
    }
    json!({ "reason": holding.sentence(), "lock": lock, "behind": behind, "hold": hold })
}
