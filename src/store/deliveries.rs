//! The `deliveries` table, and recording a delivery together with what it set in motion,
//! in one transaction: a delivery is never acknowledged without its work being queued,
//! and a redelivery finds its row and does nothing.

use crate::store::db::{Connection, params};

use crate::model::{Effect, Outcome};
use crate::store::merges::record_merge;
use crate::store::waits::{self, Ended};
use crate::store::{int_key, jobs, outbox};

/// A delivery as recorded.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// 0 when GitHub sent no `X-GitHub-Hook-ID`.
    pub hook_id: u64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub received_at: i64,
    pub outcome: Outcome,
    pub message: String,
    /// GitHub's headers as kept for the delivery's page (JSON), never a signature.
    pub headers: Option<String>,
}

/// What recording found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// New: recorded, and its effect queued; the waits it ended.
    New(Vec<Ended>),
    /// This hook already delivered this delivery id: nothing was done.
    DuplicateDelivery,
    /// A new delivery of work already done (a deployment already queued or run, a merge
    /// that already asked for its deployment), through another hook or a new delivery of
    /// the same event: recorded as ignored with this message, nothing queued.
    AlreadyDone(String),
}

/// Records `delivery` and queues `effect`, unless this is a redelivery. A merge that waits
/// for its checks has them read again every `checks_poll_ms`.
pub fn record(
    conn: &Connection,
    delivery: &DeliveryRecord,
    effect: &Effect,
    checks_poll_ms: i64,
) -> rusqlite::Result<Recorded> {
    let hook_id = int_key(delivery.hook_id)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO deliveries
                 (hook_id, delivery_id, event, action, repository, received_at, outcome, message,
                  headers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (hook_id, delivery_id) DO NOTHING",
        )?
        .execute(params![
            hook_id,
            delivery.delivery_id,
            delivery.event,
            delivery.action,
            delivery.repository,
            delivery.received_at,
            delivery.outcome.as_str(),
            delivery.message,
            delivery.headers,
        ])?;
    if inserted == 0 {
        return Ok(Recorded::DuplicateDelivery);
    }
    let now = delivery.received_at;
    let mut ended = Vec::new();
    let already_done = match effect {
        Effect::None => None,
        Effect::CreateDeployment(deployments) => {
            let mut created = false;
            for new in deployments {
                if !record_merge(conn, new, &delivery.delivery_id, now)? {
                    continue;
                }
                match &new.gate {
                    None => outbox::enqueue_create_deployment(conn, new, now)?,
                    Some(gate) => {
                        match waits::wait_for_checks(conn, new, gate, checks_poll_ms, now)? {
                            Some(settled) => ended.extend(settled),
                            // Its commit already waits, or passed, for this environment.
                            None => continue,
                        }
                    }
                }
                created = true;
            }
            match deployments.first() {
                Some(new) if !created => Some(format!(
                    "pull request #{} of {} already asked for its deployment",
                    new.pull_request, new.repo
                )),
                _ => None,
            }
        }
        Effect::Checks(report) => {
            ended.extend(waits::record_check(conn, report, now)?);
            None
        }
        Effect::Promote(promotions) => {
            let mut started = false;
            for promotion in promotions {
                if let Some(superseded) = waits::soak(conn, promotion, now)? {
                    ended.extend(superseded);
                    started = true;
                }
            }
            match promotions.first() {
                Some(p) if !started => Some(format!(
                    "{}@{} was already promoted, or is soaking",
                    p.new.repo,
                    p.new.request.git_ref.short()
                )),
                _ => None,
            }
        }
        Effect::Refuse(job, reason) => {
            if jobs::refuse(
                conn,
                job,
                &delivery.delivery_id,
                reason,
                delivery.received_at,
            )? {
                None
            } else {
                Some(format!("deployment {} was already received", job.id))
            }
        }
        Effect::Deploy(job) => {
            if jobs::enqueue(conn, job, &delivery.delivery_id, delivery.received_at)? {
                None
            } else {
                Some(format!(
                    "deployment {} was already received; not run again",
                    job.id
                ))
            }
        }
    };
    let Some(message) = already_done else {
        // The answer was written before the waits were settled: say how they ended.
        if let Some(summary) = waits::summary(&ended) {
            conn.prepare_cached(
                "UPDATE deliveries SET message = message || '; ' || ?3
                 WHERE hook_id = ?1 AND delivery_id = ?2",
            )?
            .execute(params![hook_id, delivery.delivery_id, summary])?;
        }
        return Ok(Recorded::New(ended));
    };
    conn.prepare_cached(
        "UPDATE deliveries SET outcome = ?3, message = ?4 WHERE hook_id = ?1 AND delivery_id = ?2",
    )?
    .execute(params![
        hook_id,
        delivery.delivery_id,
        Outcome::Ignored.as_str(),
        message
    ])?;
    Ok(Recorded::AlreadyDone(message))
}

/// Whether deployhook recorded delivery `delivery_id` (through hook `hook_id`, when given).
pub fn is_recorded(
    conn: &Connection,
    delivery_id: &str,
    hook_id: Option<u64>,
) -> rusqlite::Result<bool> {
    let hook = hook_id.map(int_key).transpose()?;
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM deliveries
                        WHERE delivery_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR hook_id = ?2))",
    )?
    .query_row(params![delivery_id, hook], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{each_engine, job};

    fn delivery(hook_id: u64, delivery_id: &str) -> DeliveryRecord {
        DeliveryRecord {
            hook_id,
            delivery_id: delivery_id.into(),
            event: "deployment".into(),
            action: Some("created".into()),
            repository: Some("acme/widgets".into()),
            received_at: 1_000,
            outcome: Outcome::Accepted,
            message: "queued".into(),
            headers: None,
        }
    }

    #[test]
    fn a_redelivery_does_nothing_and_another_delivery_of_the_same_deployment_is_ignored() {
        each_engine(|conn| {
            let deploy = Effect::Deploy(job(1, None));
            let first = record(conn, &delivery(1, "a"), &deploy, 0).unwrap();
            assert_eq!(first, Recorded::New(vec![]));
            assert_eq!(
                record(conn, &delivery(1, "a"), &deploy, 0).unwrap(),
                Recorded::DuplicateDelivery
            );
            // The same id through another hook is another delivery, of work already done.
            let again = record(conn, &delivery(2, "a"), &deploy, 0).unwrap();
            assert!(
                matches!(&again, Recorded::AlreadyDone(m) if m.contains("already received")),
                "{again:?}"
            );
            let outcome: String = conn
                .query_row(
                    "SELECT outcome FROM deliveries WHERE hook_id = 2 AND delivery_id = 'a'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(outcome, "ignored");
            let jobs: i64 = conn
                .query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))
                .unwrap();
            assert_eq!(jobs, 1);
            assert!(is_recorded(conn, "a", None).unwrap());
            assert!(is_recorded(conn, "a", Some(2)).unwrap());
            assert!(!is_recorded(conn, "a", Some(3)).unwrap());
            assert!(!is_recorded(conn, "b", None).unwrap());
        });
    }
}
