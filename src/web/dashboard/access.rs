//! Who may see the dashboard and send its forms: the sign-in check every page makes, the
//! session's form token, and the refusals of forms sent from another site or with a
//! missing or stale token.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::render::{MessagePage, page, render};
use crate::web::AppState;
use crate::web::auth::{Session, cross_site, unix_now};

/// `None` for a signed-in admin; otherwise the answer to give instead of the page.
pub(crate) fn refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(admin) = &state.admin else {
        let off = MessagePage {
            title: "The dashboard is off",
            message: "Set DEPLOYHOOK_ADMIN_TOKEN (a long random value), or sign-in with \
                      GitHub (DEPLOYHOOK_GITHUB_CLIENT_ID and _SECRET), and restart deployhook \
                      to turn it on.",
        };
        let mut response = render(&off);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Some(response);
    };
    if admin.session_valid(headers, unix_now()) {
        None
    } else {
        Some(Redirect::to("/login").into_response())
    }
}

/// The request's session: who is signed in.
pub(crate) fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    state.admin.as_ref()?.session(headers, unix_now())
}

pub(super) fn cross_site_refusal() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "refused: this form may only be sent from deployhook's own pages".to_owned(),
    )
}

/// The form token of the request's session (empty without one: its forms are refused).
pub(crate) fn form_token(state: &AppState, headers: &HeaderMap) -> String {
    match (
        &state.admin,
        state
            .admin
            .as_ref()
            .and_then(|a| a.session(headers, unix_now())),
    ) {
        (Some(admin), Some(session)) => admin.form_token(&session),
        _ => String::new(),
    }
}

/// Who sends a dashboard form that may change something — the person signed in, or for
/// the admin token's session the dashboard at the client's address — once
/// [`form_refusal`] let it through; else the answer to give instead.
pub(crate) fn form_sender(
    state: &AppState,
    headers: &HeaderMap,
    client: crate::web::client::ClientAddress,
    token: &str,
) -> Result<crate::model::Actor, Box<Response>> {
    if let Some(refused) = form_refusal(state, headers, token) {
        return Err(Box::new(refused));
    }
    Ok(match signed_in(state, headers) {
        Some(session) if session.actor.is_person() => session.actor,
        _ => crate::model::Actor::admin_token(&client.acting("dashboard")),
    })
}

/// `None` when a dashboard form may change something: a signed-in admin, from this site,
/// with the session's form token.
pub(crate) fn form_refusal(state: &AppState, headers: &HeaderMap, token: &str) -> Option<Response> {
    if let Some(answer) = refusal(state, headers) {
        return Some(answer);
    }
    if cross_site(headers) {
        return Some(cross_site_refusal());
    }
    let admin = state.admin.as_ref()?;
    let valid = admin
        .session(headers, unix_now())
        .is_some_and(|session| admin.form_token_valid(&session, token));
    (!valid).then(|| {
        page(
            StatusCode::FORBIDDEN,
            "refused: the form's token is missing or stale; reload the dashboard".to_owned(),
        )
    })
}
