//! `.wcid` ("where can I deploy"): for one repository, each environment that deploys it —
//! what runs there (the last successful deploy), what is deploying or queued, and whether
//! it is locked, by whom and why. The same lines are a section of the dashboard.

use crate::model::RepoName;
use crate::model::command::quiet;
use crate::store::{locks, now_ms, views};
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
            let active = views::active_jobs(c)?;
            places(c, &name, &environments, &active, now_ms())
        })
        .await
        .map_err(|err| unavailable(&err))
}

/// Where each repository deploys, for the dashboard: those configured by name or with
/// deploys on record that `can_read` allows, at most [`MAX_SHOWN`], by name.
pub async fn everywhere(
    state: &AppState,
    can_read: impl Fn(&str) -> bool,
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
    state
        .store
        .read(move |c| {
            let (active, now) = (views::active_jobs(c)?, now_ms());
            shown
                .iter()
                .map(|(repo, environments)| {
                    Ok((repo.clone(), places(c, repo, environments, &active, now)?))
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

/// `repo` in each of `environments`: what runs, what is active (of `active`), the lock.
fn places(
    c: &crate::store::db::Connection,
    repo: &str,
    environments: &[String],
    active: &[views::JobRow],
    now: i64,
) -> rusqlite::Result<Vec<Where>> {
    environments
        .iter()
        .map(|environment| {
            let history = views::deploy_history(c, repo, environment)?;
            let running = history
                .iter()
                .find(|h| h.result == "success")
                .map(|h| h.sha.clone());
            let lock = locks::holding(c, environment, now)?.map(|l| (l.locked_by, l.reason));
            Ok(Where {
                environment: environment.clone(),
                running,
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
                lock,
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
