//! Personal tokens: a person signed in with GitHub makes one on the dashboard (`/tokens`),
//! sees it once, and gives it to the CLI (`DEPLOYHOOK_TOKEN`), which then acts as them —
//! with their role, re-read from GitHub, on every action. Only the token's SHA-256 is kept;
//! each has an expiry, and its owner may revoke it at any time.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::model::{Actor, AuditAction, AuditEntry, Via};
use crate::store::{audit, now_ms, tokens};
use crate::web::AppState;
use crate::web::client::ClientAddress;
use crate::web::dashboard::access::{form_refusal, form_token, signed_in};
use crate::web::dashboard::render::{MessagePage, page, render, unavailable};
use crate::web::refused::Refused;

/// How every personal token begins: what tells it from the admin token, and what secret
/// scanners can look for.
pub const PREFIX: &str = "dhp_";
/// Live tokens one person may hold.
const MAX_LIVE: usize = 10;
/// The lifetimes offered, in days.
const LIFETIMES: [u32; 4] = [7, 30, 90, 365];

/// The person a personal token belongs to, if it is live.
pub async fn person(state: &AppState, given: &str) -> Result<Actor, Refused> {
    let hash = hash(given);
    let now = now_ms();
    let found = state
        .store
        .read(move |c| tokens::find(c, &hash, now))
        .await
        .map_err(|err| crate::web::refused::unavailable(&err))?;
    match found {
        Some((_, login)) => Ok(Actor::person(&login, Via::PersonalToken)),
        None => Err(Refused(
            StatusCode::UNAUTHORIZED,
            "this personal token is unknown, expired or revoked: make a new one on the \
             dashboard's Tokens page"
                .into(),
        )),
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

struct Shown {
    id: String,
    name: String,
    created: String,
    expires: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage<'a> {
    login: &'a str,
    tokens: Vec<Shown>,
    form_token: String,
    lifetimes: &'a [u32],
    /// A token just made: shown this once.
    new_token: Option<String>,
}

/// `GET /tokens`: the person's tokens, and the form to make one.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    show(&state, &headers, None).await
}

async fn show(state: &AppState, headers: &HeaderMap, new_token: Option<String>) -> Response {
    let login = match person_of(state, headers) {
        Ok(login) => login,
        Err(answer) => return *answer,
    };
    let now = now_ms();
    let owner = login.clone();
    let rows = match state
        .store
        .read(move |c| tokens::list(c, &owner, now))
        .await
    {
        Ok(rows) => rows,
        Err(err) => return unavailable(&err),
    };
    let time = |ms: i64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
        humantime::format_rfc3339_seconds(at).to_string()
    };
    let tokens = rows
        .into_iter()
        .map(|row| Shown {
            state: match row.revoked_at {
                Some(_) => "revoked",
                None if row.expires_at <= now => "expired",
                None => "live",
            },
            id: row.id,
            name: row.name,
            created: time(row.created_at),
            expires: time(row.expires_at),
        })
        .collect();
    render(&TokensPage {
        login: &login,
        tokens,
        form_token: form_token(state, headers),
        lifetimes: &LIFETIMES,
        new_token,
    })
}

/// The signed-in person's login, or the answer for anyone else: tokens are a person's,
/// so the admin token's sessions have none.
fn person_of(state: &AppState, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let Some(session) = signed_in(state, headers) else {
        return Err(Box::new(Redirect::to("/login").into_response()));
    };
    if session.actor.via != Via::GitHub {
        return Err(Box::new(render(&MessagePage {
            title: "Personal tokens are for people",
            message: "Sign in with GitHub to make a personal token: the admin token's \
                      sessions act for no one in particular.",
        })));
    }
    Ok(session.actor.login)
}

/// The person sending a tokens form: signed in with GitHub, from this site, with the
/// session's form token.
fn form_person(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<String, Box<Response>> {
    if let Some(refused) = form_refusal(state, headers, token) {
        return Err(Box::new(refused));
    }
    person_of(state, headers)
}

#[derive(serde::Deserialize)]
pub(crate) struct NewToken {
    name: String,
    days: u32,
    #[serde(default)]
    form_token: String,
}

/// `POST /tokens`: makes a token and shows it, once.
pub(crate) async fn create(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Form(form): Form<NewToken>,
) -> Response {
    let login = match form_person(&state, &headers, &form.form_token) {
        Ok(login) => login,
        Err(answer) => return *answer,
    };
    let name: String = form
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    if name.trim().is_empty() || !LIFETIMES.contains(&form.days) {
        return page(
            StatusCode::BAD_REQUEST,
            "a token needs a name (where it is used) and one of the offered lifetimes".into(),
        );
    }
    let secret = format!(
        "{PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let now = now_ms();
    let row = tokens::TokenRow {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        login: login.clone(),
        name,
        created_at: now,
        expires_at: now + i64::from(form.days) * 24 * 60 * 60 * 1000,
        revoked_at: None,
    };
    let hashed = hash(&secret);
    let actor = Actor::person(&login, Via::GitHub);
    let entry = AuditEntry::new(
        now,
        &actor,
        AuditAction::TokenCreated,
        &client.0.to_string(),
    )
    .with_target(&row.id)
    .with_detail(&format!("{} (expires in {} days)", row.name, form.days));
    let made = state
        .store
        .write(move |c| {
            if tokens::live(c, &row.login, now)? >= MAX_LIVE {
                return Ok(false);
            }
            tokens::create(c, &row, &hashed)?;
            audit::record(c, &entry)?;
            Ok(true)
        })
        .await;
    match made {
        Ok(true) => {
            tracing::info!(login = login.as_str(), "personal token created");
            show(&state, &headers, Some(secret)).await
        }
        Ok(false) => page(
            StatusCode::CONFLICT,
            format!("{login} has {MAX_LIVE} live tokens already: revoke one first"),
        ),
        Err(err) => unavailable(&err),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    form_token: String,
}

/// `POST /tokens/{id}/revoke`: ends one of the person's own tokens.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let login = match form_person(&state, &headers, &form.form_token) {
        Ok(login) => login,
        Err(answer) => return *answer,
    };
    let (owner, now) = (login.clone(), now_ms());
    let actor = Actor::person(&login, Via::GitHub);
    let entry = AuditEntry::new(
        now,
        &actor,
        AuditAction::TokenRevoked,
        &client.0.to_string(),
    )
    .with_target(&id);
    match state
        .store
        .write(move |c| {
            let revoked = tokens::revoke(c, &id, &owner, now)?;
            if revoked {
                audit::record(c, &entry)?;
            }
            Ok(revoked)
        })
        .await
    {
        Ok(true) => {
            tracing::info!(login = login.as_str(), "personal token revoked");
            Redirect::to("/tokens").into_response()
        }
        Ok(false) => page(StatusCode::NOT_FOUND, "no such live token of yours".into()),
        Err(err) => unavailable(&err),
    }
}
