//! People: who a request comes from and what they may do. A browser signs in with GitHub
//! ([`oauth`]) or the admin token (`dashboard::sign_in`) and carries a session; the CLI and
//! scripts send a bearer token — a person's personal token ([`tokens`], made on the
//! dashboard) or the shared admin token. [`authorize`] decides, in one place, what an
//! actor may do.

pub mod authorize;
pub mod oauth;
pub mod tokens;

use std::collections::BTreeSet;

use axum::http::{HeaderMap, StatusCode, header};

use crate::model::Actor;
use crate::web::AppState;
use crate::web::auth::cross_site;
use crate::web::client::ClientAddress;
use crate::web::guesses::Verdict;
use crate::web::refused::Refused;

pub use authorize::{Scope, authorize};

/// What a caller may read: the repositories a person can read on GitHub, or everything
/// (the admin token, and its sessions).
#[derive(Debug, Clone)]
pub struct Sight {
    repos: Option<BTreeSet<String>>,
    pub actor: Actor,
}

impl Sight {
    pub fn can_read(&self, repo: &str) -> bool {
        self.repos
            .as_ref()
            .is_none_or(|repos| repos.contains(&repo.to_ascii_lowercase()))
    }

    /// Whether this is the admin token's sight, which also reads what names no repository
    /// that can be trusted (refused deliveries).
    pub fn everything(&self) -> bool {
        self.repos.is_none()
    }

    /// What `actor` may read; a person who can read nothing deployhook deploys (removed
    /// from every repository since signing in) is refused, as at the sign-in.
    pub async fn of(state: &AppState, actor: Actor) -> Result<Self, Refused> {
        let repos = authorize::readable(state, &actor, false).await?;
        if repos.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                format!(
                    "{} can read no repository this deployhook deploys (any more)",
                    actor.login
                ),
            ));
        }
        Ok(Self { repos, actor })
    }
}

/// What an API request may read (see [`caller`] for who it is).
pub async fn api_sight(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
) -> Result<Sight, Refused> {
    Sight::of(state, caller(state, client, headers, None).await?).await
}

/// What a dashboard page's viewer may read, or the answer instead of the page (to the
/// sign-in page without a session).
pub async fn page_sight(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Sight, axum::response::Response> {
    use axum::response::IntoResponse;
    if let Some(answer) = crate::web::dashboard::refusal(state, headers) {
        return Err(answer);
    }
    let Some(session) = crate::web::dashboard::access::signed_in(state, headers) else {
        return Err(axum::response::Redirect::to("/login").into_response());
    };
    Sight::of(state, session.actor)
        .await
        .map_err(|Refused(status, why)| crate::web::dashboard::render::page(status, why))
}

/// The actor of an API request, from its bearer token: a personal token is its person; the
/// admin token is automation, named by what it claims (`claimed`: the request's `by`, else
/// its `X-Deployhook-By` header), marked as a claim.
pub async fn caller(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    claimed: Option<&str>,
) -> Result<Actor, Refused> {
    let Some(admin) = &state.admin else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            "the admin API is off: set DEPLOYHOOK_ADMIN_TOKEN or sign-in with GitHub on the \
             server"
                .into(),
        ));
    };
    if cross_site(headers) {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "refused: a cross-site request".into(),
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Err(Refused(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <a personal token (DEPLOYHOOK_TOKEN) or \
             DEPLOYHOOK_ADMIN_TOKEN>"
                .into(),
        ));
    };
    if given.starts_with(tokens::PREFIX) {
        return tokens::person(state, given).await;
    }
    match admin.check_token(client.0, given) {
        Verdict::Right => {
            let header = headers.get("x-deployhook-by").and_then(|v| v.to_str().ok());
            let name = claimed
                .or(header)
                .map_or_else(|| client.acting("admin API"), str::to_owned);
            Ok(Actor::admin_token(&name))
        }
        Verdict::Wrong => Err(Refused(
            StatusCode::UNAUTHORIZED,
            "wrong admin token (personal tokens begin with dhp_)".into(),
        )),
        Verdict::Limited(wait) => Err(Refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong admin tokens from your address: wait {} s",
                wait.as_secs().max(1)
            ),
        )),
    }
}
