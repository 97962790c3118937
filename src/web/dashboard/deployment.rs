//! `GET /deployments/{id}`: one deployment's page — its repository, environment, commit,
//! how it came about (a merge, a promotion, a tag, a command, a preview, a rollback, forced
//! through a lock), its state and timing, its log, and what it deploys: the commits since
//! the environment's previous success (its changelog), linked to GitHub, the previous deploy
//! linked to its own page. Read role, as the dashboard; another person's repository is not
//! there. Everything shown is escaped by the template: commit titles are anyone's text.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::render::{page, render, unavailable};
use super::views::time;
use crate::model::changelog::{Change, Changelog};
use crate::model::{DeploymentId, changelog::ChangelogState};
use crate::store::changelogs::{self, Previous};
use crate::store::views::{self, JobRow};
use crate::web::AppState;
use crate::web::people::page_sight;

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    id: u64,
    repository: String,
    environment: String,
    sha: String,
    git_ref: String,
    commit_url: String,
    task: String,
    origin: String,
    state: String,
    description: String,
    queued: String,
    started: String,
    finished: String,
    took: String,
    log_path: String,
    /// The previous success: its deployment (linked) and short commit.
    previous: Option<(u64, String)>,
    /// The changelog's sentence; empty while it is not read yet.
    summary: String,
    read: bool,
    /// The `deploy` task: only it has a changelog.
    deploys_code: bool,
    commits: Vec<CommitView>,
    /// The whole comparison on GitHub, when there is one to show.
    compare_url: String,
}

struct CommitView {
    short: String,
    url: String,
    title: String,
    author: String,
    pull_request: Option<(u64, String)>,
}

pub(super) async fn deployment_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let sight = match page_sight(&state, &headers).await {
        Ok(sight) => sight,
        Err(answer) => return answer,
    };
    let Ok(id) = id.parse::<DeploymentId>() else {
        return page(StatusCode::NOT_FOUND, "no such deployment".to_owned());
    };
    let number = id.get();
    let read = state
        .store
        .read(move |c| {
            let Some(job) = views::job(c, number)? else {
                return Ok(None);
            };
            if !sight.can_read(&job.repository) {
                return Ok(None);
            }
            let payload = views::job_payload(c, number)?.unwrap_or_default();
            let previous = changelogs::previous_of(c, number)?;
            Ok(Some((job, payload, previous, changelogs::read(c, number)?)))
        })
        .await;
    match read {
        Ok(Some((job, payload, previous, changelog))) => {
            render(&view(&state, job, &payload, previous, changelog))
        }
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            format!("deployhook has no deployment {id} (it may be older than what it keeps)"),
        ),
        Err(err) => unavailable(&err),
    }
}

fn view(
    state: &AppState,
    job: JobRow,
    payload: &str,
    previous: Option<Previous>,
    changelog: Option<Changelog>,
) -> DeploymentPage {
    let web = format!("{}/{}", state.github_web, job.repository);
    let short = |sha: &str| sha.chars().take(7).collect::<String>();
    let took = match (job.started_at, job.finished_at) {
        (Some(start), Some(end)) => humantime::format_duration(std::time::Duration::from_secs(
            u64::try_from((end - start) / 1000).unwrap_or(0),
        ))
        .to_string(),
        _ => String::new(),
    };
    let compare_url = match &changelog {
        Some(log) if !log.base.is_empty() && log.total > 0 => {
            let (from, to) = if log.backwards {
                (job.sha.as_str(), log.base.as_str())
            } else {
                (log.base.as_str(), job.sha.as_str())
            };
            format!("{web}/compare/{from}...{to}")
        }
        _ => String::new(),
    };
    let commits = changelog
        .as_ref()
        .map(|log| log.commits.iter().map(|c| commit_view(&web, c)).collect())
        .unwrap_or_default();
    DeploymentPage {
        id: job.deployment_id,
        commit_url: format!("{web}/commit/{}", job.sha),
        origin: origin(payload, &job.deploy_user),
        task: job.task_shown(),
        state: job.state.clone(),
        description: job.description.clone().unwrap_or_default(),
        queued: time(job.queued_at),
        started: job.started_at.map(time).unwrap_or_default(),
        finished: job.finished_at.map(time).unwrap_or_default(),
        took,
        log_path: state.links.path(DeploymentId::from(job.deployment_id)),
        previous: previous.map(|p| (p.deployment_id, short(&p.sha))),
        read: changelog.is_some(),
        deploys_code: job.task == crate::model::DEPLOY_TASK,
        summary: changelog.as_ref().map(summary).unwrap_or_default(),
        commits,
        compare_url,
        repository: job.repository,
        environment: job.environment,
        sha: job.sha,
        git_ref: job.git_ref,
    }
}

/// The changelog's sentence, with what a rollback means for the list below it.
fn summary(log: &Changelog) -> String {
    match log.state {
        ChangelogState::Listed | ChangelogState::TooMany if log.backwards => {
            format!("{}: the commits below are removed", log.summary())
        }
        _ => log.summary(),
    }
}

fn commit_view(web: &str, change: &Change) -> CommitView {
    CommitView {
        short: change.sha.chars().take(7).collect(),
        url: format!("{web}/commit/{}", change.sha),
        title: change.title.clone(),
        author: change.author.clone().unwrap_or_default(),
        pull_request: change.pull_request.map(|n| (n, format!("{web}/pull/{n}"))),
    }
}

/// How the deployment came about, from its payload, in words.
fn origin(payload: &str, by: &str) -> String {
    let payload: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let number = |value: &serde_json::Value| value.as_u64().map(|n| format!("#{n}"));
    let mut said = if crate::model::rollback::is_rollback(&payload) {
        match crate::model::rollback::rolled_back(&payload) {
            Some(from) => format!(
                "rollback by {by} (from {})",
                from.chars().take(7).collect::<String>()
            ),
            None => format!("rollback by {by}"),
        }
    } else if let Some(from) = payload["promoted_from"]["environment"].as_str() {
        format!("promotion from {from}")
    } else if let Some(tag) = payload["tag"].as_str() {
        format!("tag {tag}, by {by}")
    } else if let Some(pr) = number(&payload["preview"]["pull_request"]) {
        format!("preview of pull request {pr}")
    } else if let Some(pr) = number(&payload["command"]["pull_request"]) {
        format!("command in pull request {pr}, by {by}")
    } else if let Some(pr) = number(&payload["pull_request"]) {
        format!("merge of pull request {pr}, by {by}")
    } else {
        format!("created by {by}")
    };
    if payload["force"] == serde_json::Value::Bool(true) && !said.starts_with("rollback") {
        said.push_str(", forced through a lock");
    }
    said
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn the_origin_says_how_a_deployment_came_about() {
        let cases = [
            (
                r#"{"pull_request": 41, "merged_at": "x"}"#,
                "merge of pull request #41, by maria",
            ),
            (
                r#"{"promoted_from": {"environment": "staging", "deployment": 7}}"#,
                "promotion from staging",
            ),
            (
                r#"{"rollback": true, "rolled_back": "ccccccccc", "force": true}"#,
                "rollback by maria (from ccccccc)",
            ),
            (
                r#"{"force": true}"#,
                "created by maria, forced through a lock",
            ),
            (r#"{"tag": "v1.2.0"}"#, "tag v1.2.0, by maria"),
            (
                r#"{"command": {"comment_id": 9, "pull_request": 42}}"#,
                "command in pull request #42, by maria",
            ),
            ("not json", "created by maria"),
        ];
        for (payload, said) in cases {
            assert_eq!(origin(payload, "maria"), said, "{payload}");
        }
    }
}
