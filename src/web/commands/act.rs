//! Each command, done as its author: the same actions the dashboard and the admin API do
//! (`web::admin` locks, unlocks and rollbacks, `web::approvals` verdicts), so that the
//! same roles decide and the same audit lines are written. A refusal becomes a reply that
//! says why; GitHub not answering becomes a [`Retry`].

use axum::http::StatusCode;

use super::{Answer, Retry, deploy, wcid};
use crate::model::command::{quiet, usage};
use crate::model::{Actor, AuditAction, AuditEntry, Command, CommandRequest, Via};
use crate::store::{approvals, audit, now_ms};
use crate::web::AppState;
use crate::web::admin::{self, Refused};
use crate::web::approvals::{Verdict, decide};

/// Does `request` as its author.
pub(super) async fn act(state: &AppState, request: &CommandRequest) -> Result<Answer, Retry> {
    let actor = Actor::person(&request.author, Via::Comment);
    // Where the command came from, in the audit log's address column.
    let address = format!("{}#{}", request.repo, request.pull_request);
    let prefix = &state.commands.prefix;
    let answered = match &request.command {
        Command::Help => Ok(Answer {
            text: format!("Commands deployhook takes here:\n{}", usage(prefix)),
            reaction: Some("+1"),
            deployment: None,
        }),
        Command::Invalid { why } => Ok(Answer::refused(format!("{why}.\n\n{}", usage(prefix)))),
        Command::Wcid => wcid::answer(state, &request.repo).await.map(|text| Answer {
            text,
            reaction: Some("+1"),
            deployment: None,
        }),
        Command::Deploy {
            branch,
            environment,
        } => {
            let deployed = deploy::deploy(
                state,
                request,
                &actor,
                branch.as_deref(),
                environment.as_deref(),
            )
            .await;
            if let Err(refused) = &deployed {
                refusal_audited(
                    state,
                    request,
                    &actor,
                    &address,
                    environment.as_deref(),
                    refused,
                )
                .await;
            }
            deployed
        }
        Command::Lock {
            environment,
            reason,
        } => admin::lock(state, environment, reason, None, &actor, &address)
            .await
            .map(|lock| {
                Answer::done(format!(
                    "🔒 {} is locked by {}: {}. Nothing deploys there until `{prefix}unlock {}`.",
                    lock.environment,
                    lock.locked_by,
                    quiet(&lock.reason),
                    lock.environment
                ))
            }),
        Command::Unlock { environment } => admin::unlock(state, environment, &actor, &address)
            .await
            .map(|lock| {
                Answer::done(format!(
                    "🔓 {} is unlocked (it was locked by {}: {}).",
                    lock.environment,
                    lock.locked_by,
                    quiet(&lock.reason)
                ))
            }),
        Command::Rollback { environment } => admin::roll_back(
            state,
            request.repo.as_ref(),
            environment,
            None,
            &actor,
            &address,
        )
        .await
        .map(|done| {
            Answer::done(format!(
                "⏪ Rolling {} in {} back to `{}` (from `{}`); {} is locked until \
                         `{prefix}unlock {}`.",
                request.repo,
                environment,
                short(&done["sha"]),
                short(&done["rolled_back"]),
                environment,
                environment
            ))
        }),
        Command::Approve { environment } => {
            verdict(
                state,
                request,
                &actor,
                environment.as_deref(),
                Verdict::Approve,
                &address,
            )
            .await
        }
        Command::Reject { reason } => {
            let verdict = Verdict::Reject(reason.clone());
            self::verdict(state, request, &actor, None, verdict, &address).await
        }
    };
    match answered {
        Ok(answer) => Ok(answer),
        Err(Refused(StatusCode::SERVICE_UNAVAILABLE, why)) => Err(Retry(why)),
        Err(Refused(_, why)) => Ok(Answer::refused(format!(
            "{}: {}",
            request.author,
            quiet(&why)
        ))),
    }
}

/// A refused `.deploy` in the audit log, as the dashboard's refusals are (GitHub not
/// answering is no refusal of the person, and is not recorded).
async fn refusal_audited(
    state: &AppState,
    request: &CommandRequest,
    actor: &Actor,
    address: &str,
    environment: Option<&str>,
    refused: &Refused,
) {
    if refused.0 == StatusCode::SERVICE_UNAVAILABLE {
        return;
    }
    let mut entry = AuditEntry::new(now_ms(), actor, AuditAction::Deploy, address)
        .with_repository(request.repo.as_ref())
        .with_target(&format!("#{}", request.pull_request));
    if let Some(environment) = environment {
        entry = entry.with_environment(environment);
    }
    let entry = entry.refused(&refused.1);
    if let Err(err) = state
        .store
        .write(move |c| audit::record(c, &entry).map(drop))
        .await
    {
        tracing::warn!("could not record a refused command in the audit log: {err}");
    }
}

/// The first seven characters of a JSON string.
fn short(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or("?").chars().take(7).collect()
}

/// Approves or rejects this pull request's deployment waiting for approval: one waiting
/// in this repository for the pull request's head or merge commit (in `environment`, if
/// named).
async fn verdict(
    state: &AppState,
    request: &CommandRequest,
    actor: &Actor,
    environment: Option<&str>,
    verdict: Verdict,
    address: &str,
) -> Result<Answer, Refused> {
    let pull = state
        .github
        .for_installation(request.installation)
        .pull_request(&request.repo, request.pull_request)
        .await
        .map_err(|err| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "could not read #{} from GitHub: {err}",
                    request.pull_request
                ),
            )
        })?;
    let commits: Vec<String> = std::iter::once(pull.head_sha.to_string())
        .chain(pull.merge_commit_sha.map(|s| s.to_string()))
        .collect();
    let waiting = state
        .store
        .read(approvals::waiting)
        .await
        .map_err(|err| admin::unavailable(&err))?;
    let mine: Vec<_> = waiting
        .into_iter()
        .filter(|w| w.repository.eq_ignore_ascii_case(request.repo.as_ref()))
        .filter(|w| commits.contains(&w.sha))
        .filter(|w| environment.is_none_or(|e| w.environment == e))
        .collect();
    let chosen = match mine.as_slice() {
        [] => {
            return Err(Refused(
                StatusCode::NOT_FOUND,
                format!(
                    "no deployment of #{} waits for approval{}",
                    request.pull_request,
                    environment.map_or_else(String::new, |e| format!(" in {e}"))
                ),
            ));
        }
        [one] => one,
        several => {
            let names: Vec<&str> = several.iter().map(|w| w.environment.as_str()).collect();
            return Err(Refused(
                StatusCode::CONFLICT,
                format!(
                    "deployments of #{} wait in {}: name one (`{}approve ENV`)",
                    request.pull_request,
                    names.join(", "),
                    state.commands.prefix
                ),
            ));
        }
    };
    let id = chosen.deployment_id.to_string();
    let approving = matches!(verdict, Verdict::Approve);
    let done = decide(state, actor, &id, verdict, address).await?;
    let text = if approving {
        let (given, needed) = (
            done["approvers"].as_array().map_or(0, Vec::len),
            done["needed"].as_u64().unwrap_or(1),
        );
        if done["queued"].as_bool() == Some(true) {
            format!(
                "✅ Approved deployment {id} to {} ({given} of {needed}): it is queued to run.",
                chosen.environment
            )
        } else {
            format!(
                "✅ Approved deployment {id} to {} ({given} of {needed} approvals).",
                chosen.environment
            )
        }
    } else {
        format!("🛑 Rejected deployment {id} to {}.", chosen.environment)
    };
    Ok(Answer::done(text))
}
