//! The previews on the dashboard (a table in the live part: pull request, environment,
//! URL, state, updated) and `GET /api/previews`, both showing only the repositories the
//! viewer may read.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::views::time;
use crate::store::previews::{self, PreviewRow};
use crate::web::AppState;
use crate::web::admin::unavailable;
use crate::web::client::ClientAddress;
use crate::web::people::api_sight;

/// Previews the dashboard and the API show: the open ones, then the newest closed.
pub(super) const SHOWN: i64 = 50;

/// One preview, ready to show.
#[derive(Debug, Clone)]
pub(super) struct PreviewView {
    pub(super) repository: String,
    pub(super) pull_request: u64,
    pub(super) pull_url: String,
    pub(super) environment: String,
    /// Empty until a deploy of it was queued.
    pub(super) url: String,
    pub(super) state: String,
    pub(super) short_sha: String,
    pub(super) updated: String,
    pub(super) note: String,
}

pub(super) fn preview_view(row: PreviewRow, state: &AppState) -> PreviewView {
    PreviewView {
        pull_url: format!(
            "{}/{}/pull/{}",
            state.github_web, row.repository, row.pull_request
        ),
        repository: row.repository,
        pull_request: row.pull_request,
        environment: row.environment,
        url: row.environment_url.unwrap_or_default(),
        state: row.state,
        short_sha: row.head_sha.chars().take(7).collect(),
        updated: time(row.updated_at),
        note: row.note.unwrap_or_default(),
    }
}

/// `GET /api/previews`: `{"previews": [...]}`, of the repositories the caller can read.
pub(super) async fn api(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    match state.store.read(|c| previews::list(c, SHOWN)).await {
        Ok(rows) => Json(json!({
            "previews": rows
                .into_iter()
                .filter(|p| sight.can_read(&p.repository))
                .collect::<Vec<_>>()
        }))
        .into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}
