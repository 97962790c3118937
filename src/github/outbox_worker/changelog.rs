//! A deployment's changelog, read by the outbox worker (`Call::Changelog`, queued when its
//! job was claimed): recorded with the call's completion, in one transaction. A read that
//! cannot succeed (GitHub refused it, or kept failing past the outbox's maximum age) is
//! recorded as a `failed` changelog saying why, rather than kept as a given-up call: a
//! changelog is for people to read, and an operator has nothing to retry for it.

use crate::model::Changelog;
use crate::model::changelog::ChangelogState;
use crate::store::outbox::{self, Call, Item};
use crate::store::{StoreError, changelogs, now_ms};

use super::OutboxWorker;

impl OutboxWorker {
    /// Records `log`, what `item` (a changelog's read) brought back, and completes it.
    pub(super) async fn record_changelog(
        &self,
        item: &Item,
        log: Changelog,
    ) -> Result<(), StoreError> {
        let Call::Changelog { deployment_id, .. } = item.call else {
            unreachable!("only a changelog's read brings a changelog back");
        };
        tracing::info!(
            deployment = deployment_id,
            "changelog of deployment {deployment_id}: {}",
            log.summary()
        );
        let id = item.id;
        self.store
            .write_persistently("a changelog", move |c| {
                changelogs::record(c, deployment_id, &log, now_ms())?;
                outbox::complete(c, id)
            })
            .await
    }

    /// Records that the changelog `item` reads cannot be read, because of `error`.
    pub(super) async fn changelog_failed(
        &self,
        item: &Item,
        error: &str,
    ) -> Result<(), StoreError> {
        let Call::Changelog {
            deployment_id: deployment,
            base,
            ..
        } = &item.call
        else {
            unreachable!("only a changelog's read fails as one");
        };
        let (id, deployment) = (item.id, *deployment);
        let mut log = Changelog::empty(ChangelogState::Failed, base.clone());
        log.detail = crate::model::text::description(error);
        self.store
            .write_persistently("a failed changelog", move |c| {
                changelogs::record(c, deployment, &log, now_ms())?;
                outbox::complete(c, id)
            })
            .await
    }
}
