//! `.deploy`: a pull request's head, or a branch of its repository, deployed before it is
//! merged — the way GitHub's own teams ship (github/branch-deploy). Safe by default: the
//! author needs the `deploy` role in the environment; a fork's head is never deployed (its
//! code is a stranger's until merged); the commit's checks must be green unless the
//! environment says `branch_deploys = "any"` (and `"off"` refuses every such deploy); a
//! locked or frozen environment refuses it (a closed deploy window does not). The deployment is created on GitHub like any other and
//! runs through the same queue; its statuses edit the reply.

use axum::http::StatusCode;
use serde_json::json;

use super::Answer;
use crate::config::environment::BranchDeploys;
use crate::config::{EnvironmentConfig, find_environment};
use crate::model::command::{CommandMark, quiet};
use crate::model::{
    Action, Actor, AuditAction, AuditEntry, CommandRequest, CommitSha, DEPLOY_TASK,
    DeploymentRequest, NewDeployment, Required, Verdict,
};
use crate::store::{locks, now_ms};
use crate::web::AppState;
use crate::web::people::{Scope, authorize};
use crate::web::refused::Refused;

/// Decides `.deploy [branch] [to environment]` for `request`'s author.
pub(super) async fn deploy(
    state: &AppState,
    request: &CommandRequest,
    actor: &Actor,
    branch: Option<&str>,
    environment: Option<&str>,
) -> Result<Answer, Refused> {
    let config = target(state, environment)?;
    let name = config.name.as_ref();
    let repo = &request.repo;
    if !config.accepts(repo) {
        return Err(forbidden(format!("{name} does not deploy {repo}")));
    }
    if config.branch_deploys == BranchDeploys::Off {
        return Err(forbidden(format!(
            "{name} takes no deploys from pull requests (branch_deploys = \"off\"): merge to \
             deploy there"
        )));
    }
    authorize(state, actor, Action::Deploy, Scope::Deploys(repo, name)).await?;
    let github = state.github.for_installation(request.installation);
    let unreachable = |what: String| {
        move |err: crate::github::GitHubError| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not read {what} from GitHub: {err}"),
            )
        }
    };
    let number = request.pull_request;
    let (sha, shown_ref) = match branch {
        None => {
            let pull = github
                .pull_request(repo, number)
                .await
                .map_err(unreachable(format!("#{number}")))?;
            if !pull.open {
                return Err(forbidden(format!(
                    "#{number} is closed: its head is not deployed"
                )));
            }
            if pull.from_fork(repo) {
                return Err(forbidden(format!(
                    "#{number} comes from a fork ({}): a fork's code is not deployed before \
                     it is merged",
                    pull.head_repo.as_deref().unwrap_or("deleted")
                )));
            }
            (pull.head_sha, pull.head_ref)
        }
        Some(branch) => {
            let head = github
                .branch_head(repo, branch)
                .await
                .map_err(unreachable(format!("branch {branch}")))?;
            let Some(sha) = head else {
                return Err(Refused(
                    StatusCode::NOT_FOUND,
                    format!("{repo} has no branch {branch}"),
                ));
            };
            (sha, branch.to_owned())
        }
    };
    if config.branch_deploys == BranchDeploys::Green {
        green(state, request, config, &sha).await?;
    }
    let now = now_ms();
    let environment_name = name.to_owned();
    let lock = state
        .store
        .read(move |c| locks::holding(c, &environment_name, now))
        .await
        .map_err(|err| crate::web::refused::unavailable(&err))?;
    if let Some(lock) = lock {
        return Err(Refused(
            StatusCode::CONFLICT,
            format!(
                "{name} is locked by {}: {}",
                lock.locked_by,
                quiet(&lock.reason)
            ),
        ));
    }
    // Like a lock, a freeze refuses it rather than queue a pull request's head to deploy
    // by itself whenever the freeze ends; a closed window lets it through (a person asked).
    if let Some(hold) = crate::config::hold_of(&state.environments, name, now)
        .filter(|h| !h.lets_through(crate::model::Clearance::Deliberate))
    {
        return Err(Refused(
            StatusCode::CONFLICT,
            format!(
                "{name} is {}; ask again once it ends",
                quiet(&hold.sentence())
            ),
        ));
    }
    let mark = CommandMark {
        comment_id: request.comment_id,
        pull_request: number,
    };
    let new = NewDeployment {
        repo: repo.clone(),
        pull_request: number,
        installation: request.installation,
        request: DeploymentRequest {
            git_ref: sha.clone(),
            task: DEPLOY_TASK.to_owned(),
            auto_merge: false,
            // The checks were read above, as the environment asks; GitHub's own check of
            // required contexts would refuse every commit of a repository without any.
            required_contexts: vec![],
            environment: config.name.clone(),
            payload: json!({
                "deploy_user": request.author,
                "ref": shown_ref,
                CommandMark::KEY: mark,
            }),
            description: crate::model::text::description(&format!(
                "{} via {}deploy on #{number}",
                request.author, state.commands.prefix
            )),
            production_environment: config.production_environment,
            transient_environment: config.transient_environment,
        },
        gate: None,
    };
    let audited = AuditEntry::new(now, actor, AuditAction::Deploy, &format!("{repo}#{number}"))
        .with_repository(repo.as_ref())
        .with_environment(name)
        .with_target(sha.as_ref())
        .with_detail(&format!("{} of #{number}", quiet(&shown_ref)));
    Ok(Answer {
        text: format!(
            "⏳ Deploying `{}` ({}) to **{name}** for {}; this comment says how it ends.",
            sha.short(),
            quiet(&shown_ref),
            request.author
        ),
        reaction: None,
        deployment: Some((new, audited)),
    })
}

/// The environment a deploy goes to: the one named, else the configured default, else the
/// only one.
fn target<'a>(state: &'a AppState, named: Option<&str>) -> Result<&'a EnvironmentConfig, Refused> {
    let environments = &state.environments;
    let names = || {
        environments
            .iter()
            .map(|e| e.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = match (named, &state.commands.default_environment) {
        (Some(name), _) => name.to_owned(),
        (None, Some(default)) => default.to_string(),
        (None, None) if environments.len() == 1 => environments[0].name.to_string(),
        (None, None) => {
            return Err(Refused(
                StatusCode::BAD_REQUEST,
                format!(
                    "name the environment (`{}deploy to ENV`): this server deploys {}",
                    state.commands.prefix,
                    names()
                ),
            ));
        }
    };
    find_environment(environments, &name).ok_or_else(|| {
        Refused(
            StatusCode::NOT_FOUND,
            format!(
                "no environment {}; this server deploys {}",
                quiet(&name),
                names()
            ),
        )
    })
}

/// `Ok` when `sha`'s checks are green by the environment's rule (`checks`, else all of
/// them); otherwise which failed or still run.
async fn green(
    state: &AppState,
    request: &CommandRequest,
    config: &EnvironmentConfig,
    sha: &CommitSha,
) -> Result<(), Refused> {
    let results = state
        .github
        .for_installation(request.installation)
        .read_checks(&request.repo, sha.as_ref())
        .await
        .map_err(|err| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not read the checks of {}: {err}", sha.short()),
            )
        })?;
    let rule = config.checks.clone().unwrap_or(Required::All);
    let why = match rule.verdict(&results) {
        Verdict::Green => return Ok(()),
        Verdict::Failed(check) => format!("{} failed ({})", check.name, check.detail),
        Verdict::Pending(names) => format!("still waiting for {}", names.join(", ")),
    };
    Err(forbidden(format!(
        "the checks of `{}` are not green: {}; `{}` deploys only green commits from pull \
         requests (branch_deploys = \"any\" allows others)",
        sha.short(),
        quiet(&why),
        config.name
    )))
}

fn forbidden(why: String) -> Refused {
    Refused(StatusCode::FORBIDDEN, why)
}
