//! The one place that decides whether an actor may do an action: the dashboard's forms,
//! the admin API (and so the CLI) all ask [`authorize`]. The admin token may do everything
//! (it is the automation's key, and the way in when GitHub cannot answer); a person may do
//! what their role allows, where their role is their GitHub permission on the repository
//! concerned — admin if the environment names them or one of their teams in `admins` — and
//! each action needs the role its environment asks (`roles`, else the action's default).
//! When GitHub cannot be asked, people are refused (503), never let through.

use std::collections::BTreeSet;

use axum::http::StatusCode;

use crate::config::{EnvironmentConfig, Grantee, RepoPattern, find_environment};
use crate::model::{Action, Actor, RepoName, Role};
use crate::store::views;
use crate::web::AppState;
use crate::web::refused::Refused;

/// What an action is about.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One repository's deploys in one environment (a rollback, an approval).
    Deploys(&'a RepoName, &'a str),
    /// A whole environment (a lock): the person needs the role on every repository known
    /// to deploy there.
    Environment(&'a str),
    /// One repository, wherever it deploys (a given-up GitHub call).
    Repository(&'a RepoName),
}

/// Repositories asked about at most for one environment or one person's pages.
const MAX_REPOSITORIES: usize = 100;
/// How long one page waits at most for GitHub's answers about what a person may read.
const READABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `Ok` when `actor` may do `action` within `scope`; otherwise why not, as the API answers.
pub async fn authorize(
    state: &AppState,
    actor: &Actor,
    action: Action,
    scope: Scope<'_>,
) -> Result<(), Refused> {
    if !actor.is_person() {
        return Ok(());
    }
    let (environment, repos) = match scope {
        Scope::Deploys(repo, env) => (
            find_environment(&state.environments, env),
            vec![repo.clone()],
        ),
        Scope::Repository(repo) => (None, vec![repo.clone()]),
        Scope::Environment(env) => {
            let config = find_environment(&state.environments, env);
            let repos = environment_repositories(state, config, env).await?;
            // Never decide on part of the list: past the cap, only the admin token may.
            if repos.len() > MAX_REPOSITORIES {
                return Err(Refused(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{} may not {action} in {env}: more than {MAX_REPOSITORIES} \
                         repositories deploy there, too many to ask GitHub about; use the \
                         admin token",
                        actor.login
                    ),
                ));
            }
            (config, repos)
        }
    };
    let needed = environment.map_or_else(|| action.default_role(), |e| e.access.needs(action));
    let where_ = environment.map_or_else(String::new, |e| format!(" in {}", e.name));
    if repos.is_empty() {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not {action}{where_}: no repository has deployed there yet, so only \
                 its admins or the admin token may",
                actor.login
            ),
        ));
    }
    for repo in &repos {
        let role = role(state, actor, repo, environment).await?;
        if role < needed {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not {action}{where_}: that needs {needed} on {repo}, and {} has {role}",
                    actor.login, actor.login
                ),
            ));
        }
    }
    Ok(())
}

/// `actor`'s role on `repo` (in `environment`, whose admins are admins whatever GitHub
/// says).
pub async fn role(
    state: &AppState,
    actor: &Actor,
    repo: &RepoName,
    environment: Option<&EnvironmentConfig>,
) -> Result<Role, Refused> {
    if !actor.is_person() {
        return Ok(Role::Admin);
    }
    let unreachable = |err: crate::github::GitHubError| {
        tracing::warn!(
            login = actor.login.as_str(),
            repo = repo.as_ref(),
            "could not read a person's permission from GitHub: {err}"
        );
        Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "could not ask GitHub what {} may do on {repo}: {err}; try again (the admin \
                 token still works)",
                actor.login
            ),
        )
    };
    let admins = environment.map_or(&[][..], |e| &e.access.admins[..]);
    // People named first: a team GitHub cannot be asked about does not stop them.
    let named = |g: &Grantee| matches!(g, Grantee::User(l) if l.eq_ignore_ascii_case(&actor.login));
    if admins.iter().any(named) {
        return Ok(Role::Admin);
    }
    for admin in admins {
        if let Grantee::Team { org, slug } = admin
            && state
                .permissions
                .in_team(org, slug, &actor.login, repo)
                .await
                .map_err(unreachable)?
        {
            return Ok(Role::Admin);
        }
    }
    state
        .permissions
        .role(&actor.login, repo)
        .await
        .map_err(unreachable)
}

/// The repositories `actor` may read, of those deployhook knows (configured by name, or
/// with deploys on record); `None` for the admin token, which reads everything. With
/// `first_only`, it stops at the first one (enough for a sign-in: a stranger costs one
/// question to GitHub per repository at most). A repository GitHub cannot answer for is
/// left out (the safe direction); only when it could answer for none is the person
/// refused, saying why.
pub async fn readable(
    state: &AppState,
    actor: &Actor,
    first_only: bool,
) -> Result<Option<BTreeSet<String>>, Refused> {
    if !actor.is_person() {
        return Ok(None);
    }
    let mut readable = BTreeSet::new();
    let mut failure = None;
    let known = known_repositories(state, None, "").await?;
    // A page waits this long at most for GitHub, however many repositories are asked about
    // (each answer is cached, so the next page goes further).
    let deadline = tokio::time::Instant::now() + READABLE_WAIT;
    for repo in known.iter().take(MAX_REPOSITORIES) {
        let Ok(name) = RepoName::parse(repo) else {
            continue;
        };
        let asked = tokio::time::timeout_at(deadline, role(state, actor, &name, None)).await;
        let Ok(asked) = asked else {
            failure = Some(Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "GitHub was too slow to say what {} may read; try again",
                    actor.login
                ),
            ));
            break;
        };
        match asked {
            Ok(role) if role >= Role::Read => {
                readable.insert(repo.to_ascii_lowercase());
                if first_only {
                    break;
                }
            }
            Ok(_) => {}
            Err(refused) => failure = Some(refused),
        }
    }
    match failure {
        Some(refused) if readable.is_empty() => Err(refused),
        _ => Ok(Some(readable)),
    }
}

/// The repositories of `environment` (all environments for `None`): those configured by
/// name, and those with deploys on record.
async fn known_repositories(
    state: &AppState,
    environment: Option<&EnvironmentConfig>,
    name: &str,
) -> Result<Vec<String>, Refused> {
    let named = name.to_owned();
    let recorded = state
        .store
        .read(move |c| {
            views::known_repositories(
                c,
                (!named.is_empty()).then_some(named.as_str()),
                // One more than the cap: whether there are more than it.
                MAX_REPOSITORIES + 1,
            )
        })
        .await
        .map_err(|err| crate::web::refused::unavailable(&err))?;
    let configured: Vec<&EnvironmentConfig> = match environment {
        Some(e) => vec![e],
        None => state.environments.iter().collect(),
    };
    let mut all: BTreeSet<String> = recorded.iter().map(|r| r.to_ascii_lowercase()).collect();
    for config in configured {
        for pattern in &config.repositories {
            if let RepoPattern::Exact(repo) = pattern {
                all.insert(repo.clone());
            }
        }
    }
    Ok(all.into_iter().collect())
}

/// The environments `sight` may see: those where it can read at least one repository that
/// deploys there (every one for the admin token).
pub async fn visible_environments(
    state: &AppState,
    sight: &super::Sight,
) -> Result<BTreeSet<String>, Refused> {
    let mut visible = BTreeSet::new();
    for config in state.environments.iter() {
        let name = config.name.to_string();
        if sight.everything() {
            visible.insert(name);
            continue;
        }
        let repos = environment_repositories(state, Some(config), &name).await?;
        if repos.iter().any(|r| sight.can_read(r.as_ref())) {
            visible.insert(name);
        }
    }
    Ok(visible)
}

async fn environment_repositories(
    state: &AppState,
    config: Option<&EnvironmentConfig>,
    name: &str,
) -> Result<Vec<RepoName>, Refused> {
    let Some(config) = config else {
        return Ok(vec![]);
    };
    Ok(known_repositories(state, Some(config), name)
        .await?
        .iter()
        .filter_map(|r| RepoName::parse(r).ok())
        .filter(|r| config.accepts(r))
        .collect())
}
