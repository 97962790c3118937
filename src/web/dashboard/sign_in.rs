//! The sign-in page (with GitHub when configured: `web::people::oauth`; with the admin
//! token when one is set), signing in with the admin token (wrong tokens answered slowly,
//! and an address that sent too many refused for a while: `web::guesses`), and signing out,
//! which revokes the session. Both are in the audit log; wrong tokens are not (they name
//! no one).

use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::access::{cross_site_refusal, refusal};
use super::render::{page, render};
use crate::model::{Actor, AuditAction, AuditEntry};
use crate::store::{audit, now_ms, sessions};
use crate::web::AppState;
use crate::web::auth::{AdminAuth, COOKIE, cross_site, unix_now};
use crate::web::client::ClientAddress;
use crate::web::guesses::Verdict;

/// How long a wrong token waits for its answer, to slow guessing.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(500);

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
    /// Whether "Sign in with GitHub" is offered.
    github: bool,
    /// Whether the admin token's form is offered.
    token: bool,
}

pub(super) async fn login_form(State(state): State<AppState>) -> Response {
    if state.admin.is_none() {
        return refusal(&state, &HeaderMap::new()).unwrap_or_default();
    }
    login_page(&state, None, StatusCode::OK)
}

/// The sign-in page, saying `error` when there is one, answered with `status`.
pub(crate) fn login_page(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let mut response = render(&LoginPage {
        error,
        github: state.oauth.is_some(),
        token: state.admin.as_ref().is_some_and(AdminAuth::has_token),
    });
    *response.status_mut() = status;
    response
}

#[derive(serde::Deserialize)]
pub(super) struct Login {
    token: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    let Some(admin) = &state.admin else {
        return refusal(&state, &HeaderMap::new()).unwrap_or_default();
    };
    if cross_site(&headers) {
        return cross_site_refusal();
    }
    let (error, status) = match admin.check_token(client.0, &form.token) {
        Verdict::Right => (None, StatusCode::SEE_OTHER),
        Verdict::Wrong => {
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            (
                Some("That is not the admin token."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Verdict::Limited(_) => (
            Some("Too many wrong tokens from your address: wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
    };
    if let Some(error) = error {
        return login_page(&state, Some(error), status);
    }
    // No session without its line in the audit log.
    let actor = Actor::admin_token("admin");
    let signed_in = audited(&actor, AuditAction::SignIn, client);
    if let Err(err) = state
        .store
        .write(move |c| audit::record(c, &signed_in))
        .await
    {
        tracing::error!("could not record a sign-in: {err}");
        let why = "the database could not be written; try again".to_owned();
        return page(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&admin.cookie(unix_now(), &actor)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A sign-in or sign-out of `actor` at `client`, for the audit log.
pub(crate) fn audited(actor: &Actor, action: AuditAction, client: ClientAddress) -> AuditEntry {
    AuditEntry::new(now_ms(), actor, action, &client.0.to_string())
}

/// Signs out: the session is revoked for good, not only its cookie dropped.
pub(super) async fn logout(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    if cross_site(&headers) {
        return cross_site_refusal();
    }
    let now = unix_now();
    if let Some(session) = state.admin.as_ref().and_then(|a| a.session(&headers, now)) {
        let (id, expires) = (session.id.clone(), session.expires);
        let signed_out = audited(&session.actor, AuditAction::SignOut, client);
        let recorded = state
            .store
            .write(move |c| {
                sessions::revoke(c, &id, expires, now)?;
                audit::record(c, &signed_out).map(drop)
            })
            .await;
        if let Err(err) = recorded {
            // Still refused until a restart: the revocation is in memory.
            tracing::error!("could not record a sign-out: {err}");
        }
        if let Some(admin) = &state.admin {
            admin.revoke(&session, now);
        }
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(cookie) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
