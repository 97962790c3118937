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

/// Where `repo` deploys, environment by environment.
pub async fn of_repository(state: &AppState, repo: &RepoName) -> Result<Vec<Where>, Refused> {
    let environments: Vec<String> = state
        .environments
        .iter()
        .filter(|e| e.accepts(repo))
        .map(|e| e.name.to_string())
        .collect();
    let name = repo.to_string();
    state
        .store
        .read(move |c| {
            let now = now_ms();
            let active = views::active_jobs(c)?;
            environments
                .iter()
                .map(|environment| {
                    let history = views::deploy_history(c, &name, environment)?;
                    let running = history
                        .iter()
                        .find(|h| h.result == "success")
                        .map(|h| h.sha.clone());
                    let lock =
                        locks::holding(c, environment, now)?.map(|l| (l.locked_by, l.reason));
                    Ok(Where {
                        environment: environment.clone(),
                        running,
                        active: active
                            .iter()
                            .filter(|j| &j.environment == environment)
                            .filter(|j| j.repository.eq_ignore_ascii_case(&name))
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
        })
        .await
        .map_err(|err| unavailable(&err))
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
