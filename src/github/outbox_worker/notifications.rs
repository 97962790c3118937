//! The outbox worker's notifications. An event row is replaced, in one write, by one row
//! per receiver configured for it; each receiver's rows are sent one at a time, in order,
//! in the receiver's own lane. A message that gets no answer, a 5xx or a 429 is retried
//! with the outbox's backoff; any other refusal is given up at once and kept, with the
//! receiver's answer, among the failed calls the dashboard lists. None of it touches a
//! deploy or a GitHub call: they only share the table.

use std::time::Duration;

use super::{OutboxWorker, describe};
use crate::model::Notification;
use crate::notify::{Notifier, NotifyError};
use crate::store::outbox::{self, Call, Item};
use crate::store::{StoreError, now_ms};

/// A message still failing this long after its event is given up (or sooner, with a
/// shorter outbox maximum age): an hour on, "deploy started" would mislead more than tell.
const MAX_AGE: Duration = Duration::from_secs(60 * 60);

impl OutboxWorker {
    /// Fans out an event, or sends one message, and records how it went.
    pub(super) async fn deliver_notification(self, item: Item) {
        let id = item.id;
        let recorded = match &item.call {
            Call::Notify(event) => self.fan_out(id, event.clone()).await,
            Call::Notification {
                receiver,
                delivery,
                event,
            } => {
                let sent = match &self.notifier {
                    Some(notifier) => notifier.send(receiver, delivery, event).await,
                    None => Err(NotifyError::Unconfigured),
                };
                self.record_sent(&item, receiver, event, sent).await
            }
            _ => Ok(()),
        };
        if let Err(err) = recorded {
            tracing::error!("could not record the outcome of outbox call {id}: {err}");
        }
    }

    async fn fan_out(&self, id: i64, event: Notification) -> Result<(), StoreError> {
        let receivers = self
            .notifier
            .as_ref()
            .map(|notifier| notifier.receivers_for(&event))
            .unwrap_or_default();
        let what = describe_event(&event);
        let queued = self
            .store
            .write_persistently("a notification's receivers", move |c| {
                outbox::fan_out(c, id, &event, &receivers, now_ms())
            })
            .await?;
        tracing::debug!(receivers = queued, "{what}: queued for {queued} receivers");
        Ok(())
    }

    /// Completes the message, schedules its retry, or gives it up.
    async fn record_sent(
        &self,
        item: &Item,
        receiver: &str,
        event: &Notification,
        sent: Result<(), NotifyError>,
    ) -> Result<(), StoreError> {
        let id = item.id;
        let what = describe(&item.call);
        let err = match sent {
            Ok(()) => {
                tracing::info!("{what}: sent");
                return self
                    .store
                    .write_persistently("a sent notification", move |c| outbox::complete(c, id))
                    .await;
            }
            Err(err) => err,
        };
        let age = Duration::from_millis(u64::try_from(now_ms() - item.created_at).unwrap_or(0));
        let receiver = Notifier::describe(receiver);
        let event = describe_event(event);
        if err.is_retryable() && age < self.config.max_age.min(MAX_AGE) {
            // A receiver's Retry-After is obeyed up to the longest backoff: a day's wait
            // would outlive the message.
            let wait = err.retry_after().map_or_else(
                || self.backoff(item.attempts),
                |w| w.min(self.config.max_retry),
            );
            tracing::warn!(attempt = item.attempts + 1, retry_in = ?wait, "{what} failed, will retry: {err}");
            let at = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            let error = format!("{receiver}: {event}: {err}");
            return self
                .store
                .write_persistently("a notification to retry", move |c| {
                    outbox::retry_at(c, id, at, &error)
                })
                .await;
        }
        let why = if err.is_retryable() {
            format!(
                "still failing after {}",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )
        } else {
            "refused".to_owned()
        };
        let error = format!("{receiver} {why} {event}: {err}");
        tracing::error!("{what}: giving up: {error}");
        self.store
            .write_persistently("a given-up notification", move |c| {
                outbox::give_up(c, id, &error)
            })
            .await
    }
}

/// `deploy_failed (acme/widgets@6f1e3c9, production)`, `locked (production)`.
pub(super) fn describe_event(event: &Notification) -> String {
    match (&event.repository, &event.sha) {
        (Some(repo), Some(sha)) => {
            format!(
                "{} ({repo}@{}, {})",
                event.event,
                sha.short(),
                event.environment
            )
        }
        (Some(repo), None) => format!("{} ({repo}, {})", event.event, event.environment),
        (None, _) => format!("{} ({})", event.event, event.environment),
    }
}
