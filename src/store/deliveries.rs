//! The `deliveries` table, and recording a delivery together with what it set in motion,
//! in one transaction: a delivery is never acknowledged without its work being queued,
//! and a redelivery finds its row and does nothing.

use crate::store::db::{Connection, params};

use crate::model::{Clearance, Effect, Hold, Outcome};
use crate::store::merges::{marks, record_merge};
use crate::store::views::waiting;
use crate::store::waits::{self, Ended};
use crate::store::{approvals, commands, int_key, jobs, previews};

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
    /// New: recorded, and its effect queued; the waits it ended, and why it deploys to
    /// none of some environments (older than what they run; see [`marks`]).
    New {
        ended: Vec<Ended>,
        skipped: Vec<String>,
        /// For a deployment that cannot start yet: the answer that says what holds it
        /// (see [`waiting`]), recorded as the delivery's message.
        queued: Option<String>,
    },
    /// New, and nothing deployed: what it would deploy is older than what its environment
    /// already runs or has queued (see [`marks`]). Recorded as `skipped` with this message.
    Skipped(String),
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
    record_with_holds(conn, delivery, effect, checks_poll_ms, |_| None)
}

/// [`record`], with `hold` saying what holds an environment now (its window closed, a
/// freeze): a deployment queued behind one says so, in its `queued` status and the answer.
pub fn record_with_holds(
    conn: &Connection,
    delivery: &DeliveryRecord,
    effect: &Effect,
    checks_poll_ms: i64,
    hold: impl Fn(&str) -> Option<Hold>,
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
    // Why deployments it asked for are not made: older than what their environment runs.
    let mut skipped = Vec::new();
    let mut queued = None;
    let mut preview_notes = Vec::new();
    // A pull request's previews first; then what else it asks for (a merge's deployments).
    let effect = match effect {
        Effect::Preview(changes, rest) => {
            let applied = previews::apply(conn, changes, checks_poll_ms, now)?;
            ended.extend(applied.ended);
            preview_notes = applied.notes;
            rest.as_ref()
        }
        other => other,
    };
    let already_done = match effect {
        Effect::None => None,
        Effect::CreateDeployment(deployments) => {
            let mut created = false;
            for new in deployments {
                if let Some(why) = marks::refuses(conn, new)? {
                    skipped.push(why);
                    continue;
                }
                if !record_merge(conn, new, &delivery.delivery_id, now)? {
                    continue;
                }
                match &new.gate {
                    None => marks::accept(conn, new, now)?,
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
                _ if !created && !skipped.is_empty() => {
                    return skip(conn, delivery, hook_id, &skipped.join("; "));
                }
                Some(new) if !created => Some(format!(
                    "pull request #{} of {} already asked for its deployment",
                    new.pull_request, new.repo
                )),
                _ => None,
            }
        }
        Effect::DeployTag(deploys) => {
            // No merge marks, no merge record: a tag is deployed as asked, in the order
            // its environment's tags came (see `outbox::enqueue_tag`).
            let mut queued = false;
            for deploy in deploys {
                queued |= crate::store::outbox::enqueue_tag(conn, deploy, now)?;
            }
            match deploys.first() {
                // Every one was queued moments ago, through another webhook.
                Some(first) if !queued => Some(format!(
                    "tag {} of {} was already deployed through another delivery",
                    first.tag, first.repo
                )),
                _ => None,
            }
        }
        Effect::Preview(..) => None,
        Effect::Checks(report) => {
            ended.extend(waits::record_check(conn, report, now)?);
            None
        }
        Effect::Promote(promotions) => {
            let mut started = false;
            for promotion in promotions {
                if let Some(why) = marks::refuses(conn, &promotion.new)? {
                    skipped.push(why.replace("; not deployed", "; not promoted"));
                    continue;
                }
                if let Some(superseded) = waits::soak(conn, promotion, now)? {
                    ended.extend(superseded);
                    started = true;
                }
            }
            match promotions.first() {
                _ if !started && !skipped.is_empty() => {
                    return skip(conn, delivery, hook_id, &skipped.join("; "));
                }
                Some(p) if !started => Some(format!(
                    "{}@{} was already promoted, or is soaking",
                    p.new.repo,
                    p.new.request.git_ref.short()
                )),
                _ => None,
            }
        }
        Effect::Command(request) => {
            match commands::record(conn, request, &delivery.delivery_id, now)? {
                commands::Recorded::New => None,
                commands::Recorded::Again => Some(format!(
                    "comment {} was already read: a command acts once",
                    request.comment_id
                )),
                commands::Recorded::TooMany => Some(format!(
                    "{} gave {} commands in {} within the hour: this one is not read",
                    request.author,
                    commands::PER_AUTHOR,
                    request.repo
                )),
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
        Effect::Deploy(job) | Effect::AwaitApproval(job, _) => {
            if let Some(why) = marks::refuses_start(conn, job)? {
                return if jobs::skip(conn, job, &delivery.delivery_id, &why, now)? {
                    skip(
                        conn,
                        delivery,
                        hook_id,
                        &format!("deployment {} not run: {why}", job.id),
                    )
                } else {
                    mark_done(conn, delivery, hook_id, job_known(job))
                };
            }
            let enqueued = match effect {
                Effect::AwaitApproval(_, asked) => {
                    // Held by its approvals, not yet by a lock or a deploy ahead: the
                    // answer already says what it waits for.
                    approvals::request(conn, job, &delivery.delivery_id, asked, now)?
                }
                _ => {
                    let hold = hold(job.environment.as_ref());
                    let why = hold
                        .as_ref()
                        .filter(|h| !h.lets_through(Clearance::of(&job.payload)))
                        .map(Hold::sentence);
                    let id = &delivery.delivery_id;
                    let new = jobs::enqueue_saying(conn, job, id, why.as_deref(), now)?;
                    if new {
                        previews::deployment_queued(conn, job, now)?;
                        queued = queued_answer(conn, delivery, hook_id, job, hold.as_ref())?;
                    }
                    new
                }
            };
            (!enqueued).then(|| job_known(job))
        }
    };
    let Some(message) = already_done else {
        // The answer was written before the waits were settled: say how they ended, and
        // which environments it did not deploy to.
        skipped.extend(preview_notes);
        let summary: Vec<String> = waits::summary(&ended)
            .into_iter()
            .chain(skipped.iter().cloned())
            .collect();
        if !summary.is_empty() {
            conn.prepare_cached(
                "UPDATE deliveries SET message = message || '; ' || ?3
                 WHERE hook_id = ?1 AND delivery_id = ?2",
            )?
            .execute(params![hook_id, delivery.delivery_id, summary.join("; ")])?;
        }
        return Ok(Recorded::New {
            ended,
            skipped,
            queued,
        });
    };
    mark_done(conn, delivery, hook_id, message)
}

/// When something holds the deployment just queued (a lock, a window or freeze, a deploy
/// running ahead), the
/// delivery's answer says so instead of "deploying": recorded, and returned to be sent.
fn queued_answer(
    conn: &Connection,
    delivery: &DeliveryRecord,
    hook_id: i64,
    job: &crate::model::DeployJob,
    hold: Option<&Hold>,
) -> rusqlite::Result<Option<String>> {
    let kind = (jobs::is_forced(&job.payload), Clearance::of(&job.payload));
    let (repo, environment) = (job.repo.as_ref(), job.environment.as_ref());
    let at = delivery.received_at;
    let Some(holding) = waiting::of_queued(conn, repo, environment, kind, hold, at)? else {
        return Ok(None);
    };
    let message = format!(
        "deployment {} of {}@{} to {} queued: {}",
        job.id,
        job.repo,
        job.sha.short(),
        job.environment,
        holding.sentence()
    );
    conn.prepare_cached(
        "UPDATE deliveries SET message = ?3 WHERE hook_id = ?1 AND delivery_id = ?2",
    )?
    .execute(params![hook_id, delivery.delivery_id, message])?;
    Ok(Some(message))
}

fn job_known(job: &crate::model::DeployJob) -> String {
    format!("deployment {} was already received; not run again", job.id)
}

/// Records the delivery as `ignored`: what it asks for was already done.
fn mark_done(
    conn: &Connection,
    delivery: &DeliveryRecord,
    hook_id: i64,
    message: String,
) -> rusqlite::Result<Recorded> {
    set_outcome(conn, delivery, hook_id, Outcome::Ignored, &message)?;
    Ok(Recorded::AlreadyDone(message))
}

/// Records the delivery as `skipped`: what it asks for would roll its environment back.
fn skip(
    conn: &Connection,
    delivery: &DeliveryRecord,
    hook_id: i64,
    message: &str,
) -> rusqlite::Result<Recorded> {
    set_outcome(conn, delivery, hook_id, Outcome::Skipped, message)?;
    tracing::info!("{message}");
    Ok(Recorded::Skipped(message.to_owned()))
}

fn set_outcome(
    conn: &Connection,
    delivery: &DeliveryRecord,
    hook_id: i64,
    outcome: Outcome,
    message: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET outcome = ?3, message = ?4 WHERE hook_id = ?1 AND delivery_id = ?2",
    )?
    .execute(params![
        hook_id,
        delivery.delivery_id,
        outcome.as_str(),
        message
    ])?;
    Ok(())
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
            assert_eq!(
                first,
                Recorded::New {
                    ended: vec![],
                    skipped: vec![],
                    queued: None,
                }
            );
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
