//! Signing in with GitHub: `GET /login/github` sends the browser to GitHub with a fresh
//! `state`, kept in a short-lived cookie; `GET /login/github/callback` checks that GitHub
//! sent the same `state` back (else a stranger's link could sign the browser in as the
//! stranger), trades the code for the person's login (`github::oauth`), refuses people who
//! can read none of deployhook's repositories, and starts a session as today's sign-in does.
//!
//! The state cookie is `SameSite=Lax`: GitHub's redirect back is a cross-site navigation,
//! which a `Strict` cookie would not come with. For the same reason the callback answers a
//! page that moves on to the dashboard by itself, rather than a redirect: a `Strict`
//! session cookie is not sent on a redirect chain that began on another site.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::model::{Actor, AuditAction, AuditEntry, Via};
use crate::store::{audit, now_ms};
use crate::web::AppState;
use crate::web::auth::{cookie_values, same_secret, unix_now};
use crate::web::client::ClientAddress;
use crate::web::dashboard::render::page;

/// The cookie carrying the sign-in's `state` between the two requests.
const STATE_COOKIE: &str = "deployhook_oauth_state";
/// How long a sign-in on GitHub may take.
const STATE_AGE_SECS: u64 = 600;

/// `GET /login/github`: off to GitHub.
pub async fn start(State(state): State<AppState>) -> Response {
    let Some(oauth) = &state.oauth else {
        return page(
            StatusCode::NOT_FOUND,
            "Signing in with GitHub is off: set DEPLOYHOOK_GITHUB_CLIENT_ID and \
             DEPLOYHOOK_GITHUB_CLIENT_SECRET on the server."
                .into(),
        );
    };
    let nonce = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let target = oauth.authorize_url(&nonce, callback_url(&state).as_deref());
    let mut response = Redirect::to(&target).into_response();
    let cookie = format!(
        "{STATE_COOKIE}={nonce}; Path=/login/github; HttpOnly; SameSite=Lax; Max-Age={STATE_AGE_SECS}{}",
        secure(&state)
    );
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /login/github/callback`: who came back, and whether they may in.
pub(crate) async fn callback(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let (Some(oauth), Some(sessions)) = (&state.oauth, &state.admin) else {
        return start(State(state)).await;
    };
    if let Some(error) = &answer.error {
        let said = if error == "access_denied" {
            "You did not allow the sign-in on GitHub.".to_owned()
        } else {
            format!("GitHub did not sign you in ({}).", shown(error))
        };
        return refused(&state, StatusCode::FORBIDDEN, &said);
    }
    let expected = cookie_values(&headers, STATE_COOKIE).next();
    let matches = matches!(
        (expected, answer.state.as_deref()),
        (Some(expected), Some(given)) if !expected.is_empty() && same_secret(given, expected)
    );
    if !matches {
        return refused(
            &state,
            StatusCode::BAD_REQUEST,
            "This sign-in's state does not match the one deployhook sent to GitHub (an old \
             tab, or a link someone else started): sign in again.",
        );
    }
    let Some(code) = answer
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 200)
    else {
        return refused(
            &state,
            StatusCode::BAD_REQUEST,
            "GitHub sent no sign-in code back.",
        );
    };
    let login = match oauth.login(code, callback_url(&state).as_deref()).await {
        Ok(login) => login,
        Err(err) => {
            tracing::warn!(
                client = client.0.to_string().as_str(),
                "a GitHub sign-in failed: {err}"
            );
            // A code GitHub refused (stale, used, another app's) is the browser's to redo;
            // GitHub not answering, or answering nonsense, is a bad gateway.
            let status = match err {
                crate::github::oauth::SignInError::Refused(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            return refused(&state, status, &err.to_string());
        }
    };
    let actor = Actor::person(&login, Via::GitHub);
    let entry = AuditEntry::new(now_ms(), &actor, AuditAction::SignIn, &client.0.to_string());
    match super::authorize::readable(&state, &actor, true).await {
        Ok(Some(repos)) if repos.is_empty() => {
            tracing::info!(
                login = login.as_str(),
                "refused a sign-in: no repository readable"
            );
            let entry = entry.refused("can read no repository deployhook deploys");
            if let Err(err) = state.store.write(move |c| audit::record(c, &entry)).await {
                tracing::error!("could not record a refused sign-in: {err}");
            }
            return refused(
                &state,
                StatusCode::FORBIDDEN,
                &format!(
                    "{login} cannot read any repository this deployhook deploys, so there is \
                     nothing here for {login} to see."
                ),
            );
        }
        Ok(_) => {}
        Err(crate::web::refused::Refused(status, why)) => return refused(&state, status, &why),
    }
    // No session without its line in the audit log.
    if let Err(err) = state.store.write(move |c| audit::record(c, &entry)).await {
        tracing::error!("could not record a sign-in: {err}");
        let why = "the database could not be written; try again";
        return refused(&state, StatusCode::SERVICE_UNAVAILABLE, why);
    }
    tracing::info!(login = login.as_str(), "signed in with GitHub");
    let mut response = page(
        StatusCode::OK,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"0;url=/\"><title>deployhook</title></head>\
             <body><p>Signed in as {login}. <a href=\"/\" id=\"continue\">Continue to the \
             dashboard</a>.</p></body></html>"
        ),
    );
    let headers = response.headers_mut();
    if let Ok(cookie) = HeaderValue::from_str(&sessions.cookie(unix_now(), &actor)) {
        headers.append(header::SET_COOKIE, cookie);
    }
    let spent = format!("{STATE_COOKIE}=; Path=/login/github; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(cookie) = HeaderValue::from_str(&spent) {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

/// Where GitHub sends the browser back: set when deployhook knows its public address
/// (otherwise GitHub uses the callback URL registered with the OAuth App).
fn callback_url(state: &AppState) -> Option<String> {
    state
        .links
        .public_url
        .as_deref()
        .map(|base| format!("{base}/login/github/callback"))
}

fn secure(state: &AppState) -> &'static str {
    match state.links.public_url.as_deref() {
        Some(url) if url.starts_with("https://") => "; Secure",
        _ => "",
    }
}

/// What GitHub said, shown safely: short, no control characters.
fn shown(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(60)
        .collect()
}

fn refused(state: &AppState, status: StatusCode, why: &str) -> Response {
    crate::web::dashboard::sign_in::login_page(state, Some(why), status)
}
