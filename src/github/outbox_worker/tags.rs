//! A release's tag resolved to its commit (`GET /repos/{owner}/{repo}/commits/{tag}`)
//! before its deployment is created: the `release` event names the tag only. The
//! resolution is a call like any other (retried when GitHub fails, given up when the tag
//! is gone); its completion and the creation it queues are one transaction.

use crate::github::{GitHubClient, GitHubError};
use crate::model::{CommitSha, TagDeploy};
use crate::store::outbox::{self, Call, Item};
use crate::store::{StoreError, now_ms};

use super::{OutboxWorker, Sent, parse_repo};

impl OutboxWorker {
    /// Finds the commit of `deploy`'s tag.
    pub(super) async fn resolve_tag(
        &self,
        github: &GitHubClient,
        deploy: &TagDeploy,
    ) -> Result<Sent, GitHubError> {
        let repo = parse_repo(deploy.repo.as_ref())?;
        let sha = github.commit_of(&repo, &deploy.tag).await?;
        tracing::info!(
            repo = repo.as_ref(),
            environment = deploy.environment.as_ref(),
            "tag {} of {repo} is {}: creating its deployment to {}",
            deploy.tag,
            sha.short(),
            deploy.environment
        );
        Ok(Sent::Resolved(sha))
    }

    /// Records the resolution of `item`: done, and the deployment of `sha` queued.
    pub(super) async fn record_resolved(
        &self,
        item: &Item,
        sha: CommitSha,
    ) -> Result<(), StoreError> {
        let Call::ResolveTag(deploy) = item.call.clone() else {
            unreachable!("only a tag's resolution brings a commit back");
        };
        let id = item.id;
        let recorded = self
            .store
            .write_persistently("a resolved tag", move |c| {
                outbox::tag_resolved(c, id, &deploy, sha.clone(), now_ms())
            })
            .await;
        self.wake();
        recorded
    }
}

/// What resolving `deploy` is, for a log line.
pub(super) fn describe(deploy: &TagDeploy) -> String {
    format!(
        "finding the commit of tag {} of {} (to deploy to {})",
        deploy.tag, deploy.repo, deploy.environment
    )
}
