//! `.wcid` ("where can I deploy"): for one repository, each environment that deploys it —
//! what runs there (the last successful deploy), what is deploying or queued, and whether
//! it is locked, by whom and why. The same lines are a section of the dashboard.

use crate::model::RepoName;
use crate::model::command::quiet;
use crate::store::locks::{self, Lock};
use crate::store::{jobs, now_ms, views};
use crate::web::AppState;
use crate::web::refused::{Refused, unavailable};

/// One environment's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub environment: String,
    /// The commit of the last successful deploy, if any.
    pub running: Option<String>,
    /// Deploys running or queued: `deployment id, sha, state, by`.
    pub active: Vec<(u64, String, String, String)>,
    /// `locked by X: reason`.
    pub lock: Option<(String, String)>,
}

/// Repositories the dashboard's section shows at most.
const MAX_SHOWN: usize = 20;

/// Where `repo` deploys, environment by environment.
pub async fn of_repository(state: &AppState, repo: &RepoName) -> Result<Vec<Where>, Refused> {
    let environments = environments_of(state, repo);
    let name = repo.to_string();
    state
        .store
        .read(move |c| {
            let (active, locks) = (views::active_jobs(c)?, locks::holding_all(c, now_ms())?);
            places(c, &name, &environments, &active, &locks)
        })
        .await
        .map_err(|err| unavailable(&err))
}

/// Where each repository deploys, for the dashboard: those configured by name or with
/// deploys on record that `can_read` allows, at most [`MAX_SHOWN`], by name. `active` and
/// `locks` are the dashboard's own snapshot, not read again.
pub async fn everywhere(
    state: &AppState,
    can_read: impl Fn(&str) -> bool,
    active: &[views::JobRow],
    locks: &[Lock],
) -> Result<Vec<(String, Vec<Where>)>, crate::store::StoreError> {
    let known = state
        .store
        .read(|c| views::known_repositories(c, None, 10 * MAX_SHOWN))
        .await?;
    // Those named in the configuration too: a new install shows where each will deploy.
    let mut all: std::collections::BTreeSet<String> =
        known.iter().map(|r| r.to_ascii_lowercase()).collect();
    for environment in state.environments.iter() {
        for pattern in &environment.repositories {
            if let crate::config::RepoPattern::Exact(repo) = pattern {
                all.insert(repo.clone());
            }
        }
    }
    let shown: Vec<(String, Vec<String>)> = all
        .into_iter()
        .filter(|r| can_read(r))
        .filter_map(|r| {
            let repo = RepoName::parse(&r).ok()?;
            Some((r, environments_of(state, &repo)))
        })
        .take(MAX_SHOWN)
        .collect();
    let (active, locks) = (active.to_vec(), locks.to_vec());
    state
        .store
        .read(move |c| {
            shown
                .iter()
                .map(|(repo, environments)| {
                    Ok((
                        repo.clone(),
                        places(c, repo, environments, &active, &locks)?,
                    ))
                })
                .collect()
        })
        .await
}

fn environments_of(state: &AppState, repo: &RepoName) -> Vec<String> {
    state
        .environments
        .iter()
        .filter(|e| e.accepts(repo))
        .map(|e| e.name.to_string())
        .collect()
}

/// `repo` in each of `environments`: what runs (one indexed read each), what is active
/// (of `active`), the lock (of `locks`).
fn places(
    c: &crate::store::db::Connection,
    repo: &str,
    environments: &[String],
    active: &[views::JobRow],
    locks: &[Lock],
) -> rusqlite::Result<Vec<Where>> {
    environments
        .iter()
        .map(|environment| {
            Ok(Where {
                environment: environment.clone(),
                running: jobs::last_success(c, repo, environment)?,
                active: active
                    .iter()
                    .filter(|j| &j.environment == environment)
                    .filter(|j| j.repository.eq_ignore_ascii_case(repo))
                    .map(|j| {
                        (
                            j.deployment_id,
                            j.sha.clone(),
                            j.state.clone(),
                            j.deploy_user.clone(),
                        )
                    })
                    .collect(),
                lock: locks
                    .iter()
                    .find(|l| &l.environment == environment)
                    .map(|l| (l.locked_by.clone(), l.reason.clone())),
            })
        })
        .collect()
}

/// `.wcid`'s reply for `repo`.
pub(super) async fn answer(state: &AppState, repo: &RepoName) -> Result<String, Refused> {
    let places = of_repository(state, repo).await?;
    if places.is_empty() {
        return Ok(format!("No environment here deploys {repo}."));
    }
    let mut text = format!("Where {repo} deploys:\n");
    for place in places {
        let running = place.running.as_deref().map_or_else(
            || "nothing deployed yet".to_owned(),
            |sha| format!("runs `{}`", &sha[..sha.len().min(7)]),
        );
        let lock = place.lock.map_or_else(String::new, |(by, why)| {
            format!(" · 🔒 locked by {}: {}", quiet(&by), quiet(&why))
        });
        let active: Vec<String> = place
            .active
            .iter()
            .map(|(id, sha, state, by)| {
                format!(
                    "{state} `{}` ({id}, by {})",
                    &sha[..sha.len().min(7)],
                    quiet(by)
                )
            })
            .collect();
        let active = if active.is_empty() {
            String::new()
        } else {
            format!(" · {}", active.join(", "))
        };
        text += &format!("- **{}**: {running}{active}{lock}\n", place.environment);
    }
    Ok(text)
}
