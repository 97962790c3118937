//! Notifications in the outbox. An event is queued as one `notify` row in the transaction
//! that decided it (a deploy's end, a wait's); the outbox worker, which knows the
//! receivers, replaces it in one write with one `notification` row per receiver
//! ([`fan_out`]), sent one at a time per receiver, in order.
//!
//! The outbox serializes rows by lane (`installation_id`: an App installation's id, or 0
//! for the token), one call in flight per lane. Notifications must never wait behind
//! GitHub, nor GitHub behind a receiver that hangs, so they take negative lanes, which no
//! installation has: [`NOTIFY_LANE`] for the events, and one per receiver
//! ([`receiver_lane`]).

use crate::store::db::{Connection, OptionalExtension};

use super::{Call, Row, complete, insert, json_error};
use crate::model::notification::ChangelogNote;
use crate::model::{DeployJob, DeploymentState, NewDeployment, Notification, NotificationKind};
use crate::store::int_key;

/// The lane of events waiting to be fanned out to their receivers.
pub const NOTIFY_LANE: i64 = -1;

/// The lane of `receiver`'s messages: a negative number derived from its name, stable
/// across restarts (FNV-1a). Two receivers that happen to share a lane only take turns.
pub fn receiver_lane(receiver: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in receiver.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Below NOTIFY_LANE, within i32 so it reads plainly in the table.
    -2 - i64::try_from(hash % u64::from(i32::MAX.unsigned_abs())).unwrap_or(0)
}

/// Queues `notification` for whoever is configured to receive it.
pub fn enqueue_notification(
    conn: &Connection,
    notification: &Notification,
    now: i64,
) -> rusqlite::Result<()> {
    let body = serde_json::to_string(notification).map_err(json_error)?;
    let deployment_id = notification
        .deployment
        .map(|d| int_key(d.get()))
        .transpose()?;
    let row = Row {
        key: "notify",
        kind: "notify",
        repository: notification.repository.as_ref().map_or("", AsRef::as_ref),
        deployment_id,
        lane: Some(NOTIFY_LANE),
        body: &body,
    };
    insert(conn, &row, now)
}

/// Queues the event a deploy's status `state` reports (none for `queued`), with how long
/// the deploy ran when it ended.
pub fn notify_deploy(
    conn: &Connection,
    job: &DeployJob,
    state: DeploymentState,
    description: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let ended = matches!(
        state,
        DeploymentState::Success | DeploymentState::Failure | DeploymentState::Error
    );
    let duration_ms = if ended {
        started_at(conn, job)?.and_then(|started| u64::try_from(now - started).ok())
    } else {
        None
    };
    let Some(mut notification) = Notification::of_deploy(job, state, description, duration_ms, now)
    else {
        return Ok(());
    };
    // A deploy's start and success say what it deploys, as far as it is read by now.
    let tells_changes = matches!(
        notification.event,
        NotificationKind::DeployStarted | NotificationKind::DeploySucceeded
    );
    if tells_changes && job.task == crate::model::DEPLOY_TASK {
        let changelog = crate::store::changelogs::read(conn, job.id.get())?;
        notification.changelog = ChangelogNote::new(changelog.as_ref(), job.log_url.as_deref());
    }
    enqueue_notification(conn, &notification, now)
}

/// Queues the event of a merge's wait for its checks that ended `outcome` (only `failed`
/// and `timed_out` are news).
pub fn notify_checks_ended(
    conn: &Connection,
    new: &NewDeployment,
    outcome: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    match Notification::checks_ended(new, outcome, reason, now) {
        Some(notification) => enqueue_notification(conn, &notification, now),
        None => Ok(()),
    }
}

/// When `job` started running, if it did.
fn started_at(conn: &Connection, job: &DeployJob) -> rusqlite::Result<Option<i64>> {
    let started: Option<Option<i64>> = conn
        .prepare_cached("SELECT started_at FROM jobs WHERE deployment_id = ?1")?
        .query_row([int_key(job.id.get())?], |row| row.get(0))
        .optional()?;
    Ok(started.flatten())
}

/// Replaces the event row `id` with one row per receiver in `receivers` (none: the event
/// is only dropped), all carrying one delivery id. Returns how many rows it queued; 0 too
/// when the event row is gone (fanned out already).
pub fn fan_out(
    conn: &Connection,
    id: i64,
    event: &Notification,
    receivers: &[String],
    now: i64,
) -> rusqlite::Result<usize> {
    let pending: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE id = ?1 AND state = 'pending')")?
        .query_row([id], |row| row.get(0))?;
    if !pending {
        return Ok(0);
    }
    let delivery = uuid::Uuid::new_v4().to_string();
    let deployment_id = event.deployment.map(|d| int_key(d.get())).transpose()?;
    for receiver in receivers {
        let body = serde_json::json!({
            "receiver": receiver,
            "delivery": delivery,
            "event": event,
        })
        .to_string();
        let key = format!("notify:{receiver}");
        let row = Row {
            key: &key,
            kind: "notification",
            repository: event.repository.as_ref().map_or("", AsRef::as_ref),
            deployment_id,
            lane: Some(receiver_lane(receiver)),
            body: &body,
        };
        insert(conn, &row, now)?;
    }
    complete(conn, id)?;
    Ok(receivers.len())
}

/// The call a `notify` or `notification` row asks for.
pub(super) fn call_from(kind: &str, body: &str) -> rusqlite::Result<Call> {
    if kind == "notify" {
        return Ok(Call::Notify(
            serde_json::from_str(body).map_err(json_error)?,
        ));
    }
    let mut body: serde_json::Value = serde_json::from_str(body).map_err(json_error)?;
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    Ok(Call::Notification {
        receiver: text(&body["receiver"]),
        delivery: text(&body["delivery"]),
        event: serde_json::from_value(body["event"].take()).map_err(json_error)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{STALE_IN_FLIGHT_MS, enqueue_status, take_due};
    use super::*;
    use crate::store::tests::{each_engine, job};

    fn event() -> Notification {
        Notification::of_deploy(&job(1, None), DeploymentState::Failure, "exit 1", None, 0).unwrap()
    }

    #[test]
    fn notifications_never_wait_for_a_github_call_in_flight_nor_pass_as_an_installation() {
        each_engine(|conn| {
            enqueue_status(conn, &job(1, None), DeploymentState::Queued, "q", 0).unwrap();
            let github = take_due(conn, 1_000, 8).unwrap();
            assert_eq!(github.len(), 1);
            enqueue_notification(conn, &event(), 0).unwrap();
            let taken = take_due(conn, 1_000, 8).unwrap();
            assert_eq!(
                taken.len(),
                1,
                "the token's call in flight holds up nothing else"
            );
            assert!(matches!(taken[0].call, Call::Notify(_)));
            assert_eq!(taken[0].installation, None);
        });
    }

    #[test]
    fn an_event_becomes_one_row_per_receiver_each_in_its_own_lane() {
        each_engine(|conn| {
            enqueue_notification(conn, &event(), 0).unwrap();
            let taken = take_due(conn, 1_000, 8).unwrap();
            let receivers = ["slack:A".to_owned(), "webhook:B".to_owned()];
            assert_eq!(
                fan_out(conn, taken[0].id, &event(), &receivers, 1_000).unwrap(),
                2
            );
            assert_eq!(
                fan_out(conn, taken[0].id, &event(), &receivers, 1_000).unwrap(),
                0,
                "done once"
            );
            // Both receivers' rows are due at once: one does not wait for the other.
            let sent = take_due(conn, 1_000, 8).unwrap();
            let mut got: Vec<(String, String)> = sent
                .iter()
                .map(|item| match &item.call {
                    Call::Notification {
                        receiver, delivery, ..
                    } => (receiver.clone(), delivery.clone()),
                    other => panic!("{other:?}"),
                })
                .collect();
            got.sort();
            assert_eq!(got[0].0, "slack:A");
            assert_eq!(got[1].0, "webhook:B");
            assert_eq!(got[0].1, got[1].1, "one delivery id per event");
            assert!(sent.iter().all(|item| item.installation.is_none()));
            assert_ne!(receiver_lane("slack:A"), receiver_lane("webhook:B"));
            assert!(receiver_lane("slack:A") < NOTIFY_LANE);
            // A message in flight past the stale limit is taken again, like any call.
            let again = take_due(conn, 1_000 + STALE_IN_FLIGHT_MS + 1, 8).unwrap();
            assert_eq!(again.len(), 2);
        });
    }

    #[test]
    fn only_the_ends_of_a_deploy_carry_how_long_it_ran() {
        each_engine(|conn| {
            let job = job(1, None);
            crate::store::jobs::enqueue(conn, &job, "d", 0).unwrap();
            let claimed =
                crate::store::jobs::claim(conn, "test", 4, |_| Default::default(), 1_000).unwrap();
            assert_eq!(claimed.len(), 1);
            notify_deploy(conn, &job, DeploymentState::Queued, "q", 1_000).unwrap();
            notify_deploy(conn, &job, DeploymentState::InProgress, "running", 1_000).unwrap();
            notify_deploy(conn, &job, DeploymentState::Success, "deployed", 3_500).unwrap();
            let events: Vec<(String, Option<u64>)> = conn
                .prepare("SELECT body FROM outbox WHERE kind = 'notify' ORDER BY id")
                .unwrap()
                .query_map([], |row| row.get::<_, String>(0))
                .unwrap()
                .map(|body| {
                    let event: Notification = serde_json::from_str(&body.unwrap()).unwrap();
                    (event.event.to_string(), event.duration_ms)
                })
                .collect();
            assert_eq!(
                events,
                [
                    ("deploy_started".to_owned(), None),
                    ("deploy_succeeded".to_owned(), Some(2_500))
                ]
            );
        });
    }
}
