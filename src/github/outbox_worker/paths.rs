//! An environment's `paths`, applied when the deployment of a merge to it is about to be
//! created: the files changed between the environment's last successful deploy of the
//! repository and the merge are read with the compare API (slow, so here in the worker and
//! not in the webhook handler; retried like any call when GitHub fails), and the
//! deployment is created only when one of them matches.
//!
//! Whenever the answer cannot prove that nothing matching changed, the merge deploys: no
//! successful deploy is known (none yet, or pruned), the deployed commit is gone (404) or
//! not on the branch (`diverged`), or the comparison is too large to list every file.
//! Skipping a deploy that was needed is the worse mistake.
//!
//! Comparing with the last *successful* deploy, rather than the previous merge, is what
//! keeps skipped merges harmless: a merge that changed `services/api` and whose deploy
//! failed, or is still running, is compared again with the next merge, which then deploys.

use std::sync::Arc;

use crate::config::{EnvironmentConfig, find_environment};
use crate::github::{GitHubClient, GitHubError};
use crate::model::{DeploymentRequest, Merge, RepoName};
use crate::store::outbox::{self, Call, Item};
use crate::store::{StoreError, jobs, merges};

use super::OutboxWorker;

impl OutboxWorker {
    /// This worker, applying the `paths` of `environments` to the merges it deploys.
    pub fn with_environments(mut self, environments: Arc<[EnvironmentConfig]>) -> Self {
        self.environments = environments;
        self
    }

    /// Why the deployment `request` asks for must not be created, if it must not: it
    /// deploys a merge to an environment with `paths`, and no file it changed matches.
    pub(super) async fn skipped_by_paths(
        &self,
        github: &GitHubClient,
        repo: &RepoName,
        request: &DeploymentRequest,
    ) -> Result<Option<String>, GitHubError> {
        let name = request.environment.as_ref();
        let Some(environment) = find_environment(&self.environments, name) else {
            return Ok(None);
        };
        let paths = &environment.triggers.paths;
        // Only merges are narrowed: a rollback, a promotion or a tag is a deliberate act.
        let is_merge = Merge::of_automatic(&request.payload).is_some()
            && request.payload.get("promoted_from").is_none();
        if paths.is_empty() || !is_merge {
            return Ok(None);
        }
        let head = request.git_ref.as_ref();
        let (repository, env) = (repo.to_string(), name.to_owned());
        let base = match self
            .store
            .read(move |c| jobs::last_success(c, &repository, &env))
            .await
        {
            Ok(Some(base)) => base,
            Ok(None) => {
                tracing::info!(
                    repo = repo.as_ref(),
                    environment = name,
                    "no successful deploy of {repo} to {name} is known: deploying {} without \
                     comparing it with {paths}",
                    &head[..7]
                );
                return Ok(None);
            }
            Err(err) => {
                tracing::warn!(
                    repo = repo.as_ref(),
                    environment = name,
                    "could not read the last successful deploy to {name}, deploying: {err}"
                );
                return Ok(None);
            }
        };
        let short = &base[..base.len().min(7)];
        let comparison = match github
            .compare_files(repo, &base, head, |file| paths.matches(file))
            .await
        {
            Ok(comparison) => comparison,
            Err(err) if !err.is_retryable() && matches!(&err, GitHubError::Status { .. }) => {
                tracing::warn!(
                    repo = repo.as_ref(),
                    environment = name,
                    "GitHub cannot compare {short} (last deployed to {name}) with {}: \
                     deploying: {err}",
                    &head[..7]
                );
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let files = comparison.files;
        let deploying = match (&comparison.matched, comparison.status.as_str()) {
            (Some(file), _) => format!("{file} matches {paths}"),
            (None, "diverged") => format!("{short} is not on the merge's branch"),
            (None, _) if !comparison.complete => format!(
                "{files} files or more changed since {short}, too many to be sure none \
                 matches {paths}"
            ),
            (None, _) => {
                let why = format!(
                    "{name}: not deployed, no file matching {paths} changed since {short} \
                     ({files} files compared)"
                );
                tracing::info!(repo = repo.as_ref(), environment = name, "{repo}: {why}");
                return Ok(Some(why));
            }
        };
        tracing::info!(
            repo = repo.as_ref(),
            environment = name,
            "deploying {repo}@{} to {name}: {deploying}",
            &head[..7]
        );
        Ok(None)
    }

    /// Records that `item`, a deployment's creation, was skipped for `why`: the call is done,
    /// and the merge's delivery says why (see [`merges::note_skipped`]).
    pub(super) async fn record_skipped(&self, item: &Item, why: String) -> Result<(), StoreError> {
        let Call::CreateDeployment {
            repository,
            pull_request,
            request,
        } = item.call.clone()
        else {
            unreachable!("only a deployment's creation is skipped");
        };
        let id = item.id;
        self.store
            .write_persistently("a skipped deployment", move |c| {
                let environment = request.environment.as_ref();
                merges::note_skipped(c, &repository, pull_request, environment, &why)?;
                outbox::complete(c, id)
            })
            .await
    }
}
