//! What the admin API and the dashboard's forms do: lock, unlock, roll back. Each is
//! authorised first (`web::people::authorize`) and recorded in the audit log in the same
//! transaction as the change, so a lock never exists without its line; a refusal about the
//! action (not allowed, nothing to unlock, nothing to roll back to) gets its line too.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use super::{MAX_LOCK, Refused, bounded, lock_json, unavailable};
use crate::config::{EnvironmentConfig, find_environment};
use crate::deploy::on_failure::RollBackOnFailure;
use crate::guide::rollback::{Deployed, Rollback, rollback};
use crate::model::{
    Action, Actor, AuditAction, AuditEntry, DeployJob, Environment, Notification, RepoName,
};
use crate::store::db::Connection;
use crate::store::jobs::verify::verifying_in;
use crate::store::locks::{self, Lock};
use crate::store::{audit, now_ms, outbox, views};
use crate::web::AppState;
use crate::web::people::{Scope, authorize};

/// Asks [`authorize`]; a refusal is recorded in the audit log as `audited`, refused.
async fn allowed(
    state: &AppState,
    actor: &Actor,
    action: Action,
    scope: Scope<'_>,
    audited: &AuditEntry,
) -> Result<(), Refused> {
    let Err(refused) = authorize(state, actor, action, scope).await else {
        return Ok(());
    };
    // Only what was decided is recorded: GitHub not answering is not a refusal of the person.
    if refused.0 == StatusCode::FORBIDDEN {
        let entry = audited.clone().refused(&refused.1);
        state
            .store
            .write(move |c| audit::record(c, &entry).map(drop))
            .await
            .map_err(|err| unavailable(&err))?;
    }
    Err(refused)
}

/// Locks `environment` (the API's and the dashboard's way), for `actor` at `address`.
pub async fn lock(
    state: &AppState,
    environment: &str,
    reason: &str,
    duration: Option<Duration>,
    actor: &Actor,
    address: &str,
) -> Result<Lock, Refused> {
    let environment = known_environment(state, environment)?;
    let audited = AuditEntry::new(now_ms(), actor, AuditAction::Lock, address)
        .with_environment(&environment)
        .with_detail(reason.trim());
    let scope = Scope::Environment(&environment);
    allowed(state, actor, Action::Lock, scope, &audited).await?;
    let by = actor.shown();
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "a lock needs a reason: say why, for whoever finds it".into(),
        ));
    }
    let now = now_ms();
    let lock = Lock {
        environment,
        reason: bounded(reason),
        locked_by: bounded(&by),
        locked_at: now,
        until: duration.map(|d| {
            now.saturating_add(i64::try_from(d.min(MAX_LOCK).as_millis()).unwrap_or(i64::MAX / 2))
        }),
    };
    let record = lock.clone();
    let detail = match lock_json(&lock)["until"].as_str() {
        Some(until) => format!("{} (until {until})", lock.reason),
        None => lock.reason.clone(),
    };
    let audited = audited.with_detail(&detail);
    let told = Notification::locked(
        &config_name(state, &lock.environment)?,
        &lock.locked_by,
        &lock.reason,
        lock.until,
        now,
    );
    state
        .store
        .write(move |c| {
            locks::lock(c, &record)?;
            audit::record(c, &audited)?;
            outbox::enqueue_notification(c, &told, now)
        })
        .await
        .map_err(|err| unavailable(&err))?;
    state.outbox.wake();
    // The queue sleeps until the next lock expires: this one may expire first.
    state.deployer.wake();
    // Who and why are what the request said: string fields, quoted in the text log.
    tracing::info!(
        environment = lock.environment.as_str(),
        by = lock.locked_by.as_str(),
        reason = lock.reason.as_str(),
        "environment locked"
    );
    Ok(lock)
}

/// Lifts the lock on `environment`; what waited for it runs, in its policy's order.
pub async fn unlock(
    state: &AppState,
    environment: &str,
    actor: &Actor,
    address: &str,
) -> Result<Lock, Refused> {
    let environment = known_environment(state, environment)?;
    let audited = AuditEntry::new(now_ms(), actor, AuditAction::Unlock, address)
        .with_environment(&environment);
    let scope = Scope::Environment(&environment);
    allowed(state, actor, Action::Unlock, scope, &audited).await?;
    let by = bounded(&actor.shown());
    let by = by.as_str();
    let now = now_ms();
    let name = environment.clone();
    let told = Notification::unlocked(&config_name(state, &environment)?, by, now);
    let lifted = state
        .store
        .write(move |c| {
            let lifted = locks::unlock(c, &name, now)?;
            let audited = match &lifted {
                Some(lock) => {
                    outbox::enqueue_notification(c, &told, now)?;
                    audited.with_detail(&format!("locked by {}: {}", lock.locked_by, lock.reason))
                }
                None => audited.refused(&format!("{name} is not locked")),
            };
            audit::record(c, &audited)?;
            Ok(lifted)
        })
        .await
        .map_err(|err| unavailable(&err))?;
    state.outbox.wake();
    let Some(lock) = lifted else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("{environment} is not locked"),
        ));
    };
    tracing::info!(
        environment = environment.as_str(),
        by,
        "environment unlocked"
    );
    state.deployer.wake();
    Ok(lock)
}

/// Rolls `repository` in `environment` back (see [`crate::guide::rollback`]): the
/// deployment is queued in the outbox and the environment locked, in one transaction.
pub async fn roll_back(
    state: &AppState,
    repository: &str,
    environment: &str,
    to: Option<&str>,
    actor: &Actor,
    address: &str,
) -> Result<serde_json::Value, Refused> {
    let name = known_environment(state, environment)?;
    let repo =
        RepoName::parse(repository).map_err(|e| Refused(StatusCode::BAD_REQUEST, e.to_string()))?;
    let Some(config) = find_environment(&state.environments, &name) else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("no environment {name}"),
        ));
    };
    if !config.accepts(&repo) {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            format!("environment {name} does not list {repo}"),
        ));
    }
    let audited = AuditEntry::new(now_ms(), actor, AuditAction::Rollback, address)
        .with_repository(repo.as_ref())
        .with_environment(&name);
    let scope = Scope::Deploys(&repo, &name);
    allowed(state, actor, Action::Rollback, scope, &audited).await?;
    // A rollback locks the whole environment: the person must be allowed that too.
    let scope = Scope::Environment(&name);
    allowed(state, actor, Action::Lock, scope, &audited).await?;
    let by = bounded(&actor.shown());
    let (config, rolled_repo, asked) = (config.clone(), repo.clone(), to.map(str::to_owned));
    let decided = state
        .store
        .write(move |c| {
            // Under a verification, the history has not its newest deploy yet: a rollback
            // now would go back from the wrong commit, and wait behind the check anyway.
            if let Some(id) = verifying_in(c, rolled_repo.as_ref(), config.name.as_ref())? {
                let why = format!(
                    "deployment {id} is verifying: roll back once it is judged (with \
                     on_verify_failure = \"rollback\" a failed one rolls back by itself)"
                );
                let refused = audited.with_target(asked.as_deref().unwrap_or_default());
                audit::record(c, &refused.refused(&why))?;
                return Ok(Err(why));
            }
            record_rollback(
                c,
                &config,
                &rolled_repo,
                asked.as_deref(),
                &by,
                audited,
                now_ms(),
            )
        })
        .await
        .map_err(|err| unavailable(&err))?
        .map_err(|why| Refused(StatusCode::CONFLICT, why))?;
    state.outbox.wake();
    tracing::info!(
        repo = repo.as_ref(),
        environment = name.as_str(),
        reason = decided.lock_reason.as_str(),
        "rolled back"
    );
    Ok(json!({
        "repository": repo,
        "environment": name,
        "sha": decided.new.request.git_ref,
        "rolled_back": decided.from,
        "locked": decided.lock_reason,
    }))
}

/// Decides the rollback of `repo` in `environment` (to `to`, or the last good commit) over
/// the deploys the store remembers, and records it — the deployment (through the outbox),
/// the lock that holds the environment, the notification and the audit line `audited` —
/// in the caller's transaction. A refusal (nothing to roll back to) is recorded in the
/// audit log and returned as `Err(why)`. The one rollback: an operator's (`roll_back`) and
/// a failed verification's ([`VerificationRollback`]) both come here.
pub(crate) fn record_rollback(
    c: &Connection,
    environment: &EnvironmentConfig,
    repo: &RepoName,
    to: Option<&str>,
    by: &str,
    audited: AuditEntry,
    now: i64,
) -> rusqlite::Result<Result<Rollback, String>> {
    let history: Vec<Deployed> =
        views::deploy_history(c, repo.as_ref(), environment.name.as_ref())?
            .into_iter()
            .map(|row| Deployed {
                sha: row.sha,
                result: row.result,
                rolled_back: row.rolled_back,
                installation: row.installation,
            })
            .collect();
    let decided = match rollback(environment, repo, &history, to, by) {
        Ok(decided) => decided,
        Err(why) => {
            let refused = audited.with_target(to.unwrap_or_default()).refused(&why);
            audit::record(c, &refused)?;
            return Ok(Err(why));
        }
    };
    let audited = audited
        .with_target(decided.new.request.git_ref.as_ref())
        .with_detail(&decided.lock_reason);
    let lock = Lock {
        environment: environment.name.to_string(),
        reason: decided.lock_reason.clone(),
        locked_by: by.to_owned(),
        locked_at: now,
        until: None,
    };
    let told = Notification::locked(&environment.name, by, &decided.lock_reason, None, now);
    outbox::enqueue_create_deployment(c, &decided.new, now)?;
    locks::lock(c, &lock)?;
    audit::record(c, &audited)?;
    outbox::enqueue_notification(c, &told, now)?;
    Ok(Ok(decided))
}

/// The rollback a failed verification asks for (`on_verify_failure = "rollback"`), by
/// deployhook itself: [`record_rollback`] to the last verified success, in the
/// transaction that records the failure.
#[derive(Debug)]
pub struct VerificationRollback {
    pub environments: std::sync::Arc<[EnvironmentConfig]>,
}

/// Who a verification's rollback is by, in its lock, payload and notification.
pub const VERIFICATION_ROLLBACK_BY: &str = "deployhook (verification failed)";

impl RollBackOnFailure for VerificationRollback {
    fn roll_back(
        &self,
        c: &Connection,
        job: &DeployJob,
        now: i64,
    ) -> rusqlite::Result<Result<String, String>> {
        let Some(environment) = find_environment(&self.environments, job.environment.as_ref())
        else {
            return Ok(Err(format!(
                "environment {} is not configured",
                job.environment
            )));
        };
        let audited = AuditEntry::new(
            now,
            &Actor::verification(),
            AuditAction::Rollback,
            "deployhook",
        )
        .with_repository(job.repo.as_ref())
        .with_environment(job.environment.as_ref());
        let decided = record_rollback(
            c,
            environment,
            &job.repo,
            None,
            VERIFICATION_ROLLBACK_BY,
            audited,
            now,
        )?;
        if let Ok(decided) = &decided {
            tracing::warn!(
                to = decided.new.request.git_ref.as_ref(),
                "verification failed: rolled back"
            );
        }
        Ok(decided.map(|d| d.new.request.git_ref.short().to_owned()))
    }
}

/// The configured environment named `name`.
fn known_environment(state: &AppState, name: &str) -> Result<String, Refused> {
    match find_environment(&state.environments, name) {
        Some(environment) => Ok(environment.name.to_string()),
        None => {
            let known: Vec<&str> = state.environments.iter().map(|e| e.name.as_ref()).collect();
            let shown: String = name.chars().take(60).collect();
            Err(Refused(
                StatusCode::NOT_FOUND,
                format!(
                    "no environment {shown} here; this server deploys {}",
                    known.join(", ")
                ),
            ))
        }
    }
}

/// The configured environment's name, as the model spells it.
fn config_name(state: &AppState, name: &str) -> Result<Environment, Refused> {
    find_environment(&state.environments, name)
        .map(|e| e.name.clone())
        .ok_or_else(|| Refused(StatusCode::NOT_FOUND, format!("no environment {name}")))
}
