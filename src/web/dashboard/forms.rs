//! The operator's forms on the dashboard: lock and unlock an environment, roll back to an
//! earlier success. Each is checked by `access` first and done through the admin API's
//! functions, as the CLI's commands are; the answer is the dashboard again, or why not.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::access::form_sender;
use super::render::{MessagePage, render};
use crate::web::AppState;
use crate::web::client::ClientAddress;

/// After a form: back to the dashboard, or the refusal's sentence.
pub(crate) fn after_form(result: Result<(), crate::web::admin::Refused>) -> Response {
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(crate::web::admin::Refused(status, why)) => {
            let mut response = render(&MessagePage {
                title: "Not done",
                message: &why,
            });
            *response.status_mut() = status;
            response
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct LockForm {
    environment: String,
    reason: String,
    /// `2h`; empty: until unlocked.
    #[serde(default, rename = "for")]
    duration: String,
    #[serde(default)]
    form_token: String,
}

pub(super) async fn lock_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<LockForm>,
) -> Response {
    let actor = match form_sender(&state, &headers, client, &form.form_token) {
        Ok(actor) => actor,
        Err(answer) => return *answer,
    };
    let duration = match form.duration.trim() {
        "" => None,
        text => match crate::config::parse_duration(text) {
            Ok(d) if d > crate::web::admin::MAX_LOCK => {
                return after_form(Err(crate::web::admin::Refused(
                    StatusCode::BAD_REQUEST,
                    "for: at most a year".into(),
                )));
            }
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                return after_form(Err(crate::web::admin::Refused(
                    StatusCode::BAD_REQUEST,
                    "for: must be longer than 0s".into(),
                )));
            }
            Err(err) => {
                return after_form(Err(crate::web::admin::Refused(
                    StatusCode::BAD_REQUEST,
                    format!("for: {err}"),
                )));
            }
        },
    };
    let done = crate::web::admin::lock(
        &state,
        &form.environment,
        &form.reason,
        duration,
        &actor,
        &client.0.to_string(),
    )
    .await;
    after_form(done.map(drop))
}

#[derive(serde::Deserialize)]
pub(super) struct UnlockForm {
    environment: String,
    #[serde(default)]
    form_token: String,
}

pub(super) async fn unlock_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<UnlockForm>,
) -> Response {
    let actor = match form_sender(&state, &headers, client, &form.form_token) {
        Ok(actor) => actor,
        Err(answer) => return *answer,
    };
    after_form(
        crate::web::admin::unlock(&state, &form.environment, &actor, &client.0.to_string())
            .await
            .map(drop),
    )
}

#[derive(serde::Deserialize)]
pub(super) struct RollbackForm {
    repository: String,
    environment: String,
    /// The commit to put back.
    to: String,
    #[serde(default)]
    form_token: String,
}

pub(super) async fn rollback_form(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<RollbackForm>,
) -> Response {
    let actor = match form_sender(&state, &headers, client, &form.form_token) {
        Ok(actor) => actor,
        Err(answer) => return *answer,
    };
    let done = crate::web::admin::roll_back(
        &state,
        &form.repository,
        &form.environment,
        Some(&form.to),
        &actor,
        &client.0.to_string(),
    )
    .await;
    after_form(done.map(drop))
}
