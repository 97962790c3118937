//! What the dashboard shows, one view per kind of row the store reads — jobs, waits,
//! deliveries, refused deliveries, locks, given-up calls, replicas — with times, durations
//! and links written out for people. The live part (`page`) builds them from one read.

use std::time::{Duration, UNIX_EPOCH};

use crate::model::DeploymentId;
use crate::store::locks::Lock;
use crate::store::outbox::given_up::GivenUp;
use crate::store::postgres::replicas::ReplicaRow;
use crate::store::refused::RefusedRow;
use crate::store::views::{DeliveryRow, JobRow};
use crate::store::waits::WaitRow;
use crate::web::AppState;

/// A replica, ready to show.
#[derive(Debug, Clone)]
pub(super) struct ReplicaView {
    pub(super) id: String,
    pub(super) host: String,
    pub(super) role: &'static str,
    pub(super) started: String,
    pub(super) heartbeat: String,
    pub(super) this: bool,
}

/// A lock, ready to show.
#[derive(Debug, Clone)]
pub(super) struct LockView {
    pub(super) environment: String,
    pub(super) reason: String,
    pub(super) by: String,
    pub(super) since: String,
    /// Empty: until unlocked.
    pub(super) until: String,
}

/// A wait — for checks, or a soak — ready to show.
#[derive(Debug, Clone)]
pub(super) struct WaitView {
    pub(super) kind: String,
    pub(super) repository: String,
    pub(super) environment: String,
    pub(super) short_sha: String,
    pub(super) commit_url: String,
    pub(super) pull_request: u64,
    /// The gate (checks), or the environment promoted from (soak).
    pub(super) required: String,
    pub(super) passed: String,
    pub(super) pending: String,
    pub(super) since: String,
    /// The deadline (checks), the promotion (soak), or when it ended.
    pub(super) until: String,
    pub(super) state: String,
    /// Why it ended, or why GitHub did not tell its checks.
    pub(super) note: String,
}

/// A GitHub call given up (a refused status, a deployment that could not be created).
#[derive(Debug, Clone)]
pub(super) struct FailedCallView {
    /// What the Retry and Dismiss forms name.
    pub(super) id: i64,
    pub(super) what: String,
    /// The deployment the call is about, linked to its page.
    pub(super) deployment: Option<i64>,
    pub(super) repository: String,
    pub(super) queued: String,
    pub(super) attempts: i64,
    pub(super) error: String,
}

/// A deployment, ready to show.
#[derive(Debug, Clone)]
pub(super) struct JobView {
    pub(super) id: u64,
    pub(super) repository: String,
    pub(super) environment: String,
    pub(super) short_sha: String,
    pub(super) git_ref: String,
    pub(super) task: String,
    /// The task as shown: a rollback says so, and from which commit.
    pub(super) what: String,
    pub(super) user: String,
    pub(super) state: String,
    pub(super) description: String,
    pub(super) started: String,
    pub(super) duration: String,
    pub(super) log_path: String,
    pub(super) commit_url: String,
    pub(super) deployments_url: String,
    pub(super) sha: String,
    /// A success older than the environment's current one: it can be rolled back to.
    pub(super) can_roll_back: bool,
    /// Queued: what holds it (a lock, the deploy ahead of it).
    pub(super) waiting: String,
}

/// A delivery refused by intake, ready to show.
#[derive(Debug, Clone)]
pub(super) struct RefusedView {
    pub(super) id: i64,
    pub(super) received: String,
    pub(super) status: u16,
    pub(super) message: String,
    pub(super) client: String,
    pub(super) event: String,
}

/// A delivery, ready to show (on the dashboard, and on the deliveries' own list).
#[derive(Debug, Clone)]
pub(crate) struct DeliveryView {
    pub(crate) received: String,
    pub(crate) event: String,
    pub(crate) action: String,
    pub(crate) repository: String,
    pub(crate) outcome: String,
    pub(crate) message: String,
    pub(crate) delivery_id: String,
    /// 0: the delivery named no hook.
    pub(crate) hook_id: i64,
}

/// A row of the dashboard's recent deliveries: one delivery, or a run of routine ones
/// folded into one row. Routine ones (recorded, nothing to do: GitHub's echo of each status
/// deployhook posts, check events, pings) come three or more per deploy; listed one by
/// one they pushed everything else down the page.
#[derive(Debug, Clone)]
pub(super) struct DeliveryLine {
    /// The delivery, or the newest of the run.
    pub(super) delivery: DeliveryView,
    /// How many deliveries the row stands for: 1, or the run's length.
    pub(super) folded: usize,
    /// The run's events, each once, newest first (`deployment_status, check_run`).
    pub(super) events: String,
    /// When the run's oldest delivery came.
    pub(super) oldest: String,
}

/// Whether a delivery is routine: recorded, with nothing to do.
fn routine(delivery: &DeliveryView) -> bool {
    delivery.outcome == crate::model::Outcome::Recorded.as_str()
}

/// `deliveries` (newest first) as at most `rows` rows, each run of routine ones folded.
pub(super) fn delivery_lines(deliveries: Vec<DeliveryView>, rows: usize) -> Vec<DeliveryLine> {
    let mut lines: Vec<DeliveryLine> = Vec::new();
    for delivery in deliveries {
        if let Some(run) = lines.last_mut()
            && routine(&run.delivery)
            && routine(&delivery)
        {
            run.folded += 1;
            if !run.events.split(", ").any(|e| e == delivery.event) {
                run.events = format!("{}, {}", run.events, delivery.event);
            }
            run.oldest = delivery.received;
            continue;
        }
        if lines.len() == rows {
            break;
        }
        lines.push(DeliveryLine {
            events: delivery.event.clone(),
            oldest: delivery.received.clone(),
            folded: 1,
            delivery,
        });
    }
    lines
}

pub(crate) fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text.replace('T', " ").replace('Z', " UTC")
}

pub(super) fn job_view(job: JobRow, state: &AppState, now: i64) -> JobView {
    let shared = &**state;
    let duration = match (job.started_at, job.finished_at) {
        (Some(start), Some(end)) => Some(end - start),
        (Some(start), None) => Some(now - start),
        _ => None,
    }
    .map(|ms| {
        humantime::format_duration(Duration::from_secs(u64::try_from(ms / 1000).unwrap_or(0)))
            .to_string()
    })
    .unwrap_or_default();
    let id = DeploymentId::from(job.deployment_id);
    JobView {
        what: job.task_shown(),
        id: job.deployment_id,
        short_sha: job.sha.chars().take(7).collect(),
        sha: job.sha.clone(),
        can_roll_back: false,
        waiting: String::new(),
        commit_url: format!(
            "{}/{}/commit/{}",
            shared.github_web, job.repository, job.sha
        ),
        deployments_url: format!("{}/{}/deployments", shared.github_web, job.repository),
        repository: job.repository,
        environment: job.environment,
        git_ref: job.git_ref,
        task: job.task,
        user: job.deploy_user,
        state: job.state,
        description: job.description.unwrap_or_default(),
        started: job.started_at.map(time).unwrap_or_default(),
        duration,
        log_path: shared.links.path(id),
    }
}

pub(super) fn wait_view(wait: WaitRow, state: &AppState) -> WaitView {
    let (passed, pending) = wait.progress();
    let ended = wait.ended_at.is_some();
    let required = match (&wait.required, &wait.from_deployment) {
        (Some(required), _) => required.to_string(),
        (None, Some(from)) => {
            // The environment it is promoted from is in the promoted environment's config.
            let from_environment = state
                .environments
                .iter()
                .find(|e| e.name.as_ref() == wait.environment)
                .and_then(|e| e.promote_from.as_ref())
                .map_or_else(String::new, ToString::to_string);
            format!("{from_environment} (deployment {from})")
        }
        (None, None) => String::new(),
    };
    WaitView {
        kind: if wait.kind == "soak" {
            "soak".into()
        } else {
            "checks".into()
        },
        short_sha: wait.sha.chars().take(7).collect(),
        commit_url: format!(
            "{}/{}/commit/{}",
            state.github_web, wait.repository, wait.sha
        ),
        repository: wait.repository,
        environment: wait.environment,
        pull_request: wait.pull_request,
        required,
        passed: passed.join(", "),
        pending: pending.join(", "),
        since: time(wait.created_at),
        until: time(wait.ended_at.unwrap_or(wait.due_at)),
        state: wait.state,
        note: if ended {
            wait.reason.unwrap_or_default()
        } else {
            wait.read_error.unwrap_or_default()
        },
    }
}

pub(crate) fn delivery_view(d: DeliveryRow) -> DeliveryView {
    DeliveryView {
        received: time(d.received_at),
        event: d.event,
        action: d.action.unwrap_or_default(),
        repository: d.repository.unwrap_or_default(),
        outcome: d.outcome,
        message: d.message,
        delivery_id: d.delivery_id,
        hook_id: d.hook_id,
    }
}

pub(super) fn lock_view(lock: Lock) -> LockView {
    LockView {
        environment: lock.environment,
        reason: lock.reason,
        by: lock.locked_by,
        since: time(lock.locked_at),
        until: lock.until.map(time).unwrap_or_default(),
    }
}

pub(super) fn failed_call_view(call: GivenUp) -> FailedCallView {
    FailedCallView {
        what: call.kind.replace('_', " "),
        deployment: call.deployment_id,
        id: call.id,
        repository: call.repository,
        queued: time(call.created_at),
        attempts: call.attempts,
        error: call.last_error,
    }
}

pub(super) fn refused_view(row: RefusedRow) -> RefusedView {
    RefusedView {
        id: row.id,
        received: time(row.refusal.received_at),
        status: row.refusal.status,
        message: row.refusal.message,
        client: row.refusal.client,
        event: row.refusal.event.unwrap_or_default(),
    }
}

/// A replica alive: `this` when it is the server answering.
pub(super) fn replica_view(r: ReplicaRow, state: &AppState, now: i64) -> ReplicaView {
    ReplicaView {
        this: r.id == state.replica.id,
        role: if r.leading { "leader" } else { "standby" },
        started: time(r.started_at),
        heartbeat: format!("{} s ago", (now - r.heartbeat_at).max(0) / 1000),
        id: r.id,
        host: r.host,
    }
}

/// A deployment waiting for approval, ready to show.
#[derive(Debug, Clone)]
pub(super) struct ApprovalView {
    pub(super) id: u64,
    pub(super) repository: String,
    pub(super) environment: String,
    pub(super) short_sha: String,
    pub(super) author: String,
    /// `1 of 2: wes` .
    pub(super) approved: String,
    pub(super) waiting_for: String,
    pub(super) until: String,
}

pub(super) fn approval_view(waiting: crate::store::approvals::Awaiting) -> ApprovalView {
    let mut approved = format!("{} of {}", waiting.approvers.len(), waiting.needed);
    if !waiting.approvers.is_empty() {
        approved += &format!(": {}", waiting.approvers.join(", "));
    }
    ApprovalView {
        id: waiting.deployment_id,
        short_sha: waiting.sha.chars().take(7).collect(),
        repository: waiting.repository,
        environment: waiting.environment,
        author: waiting.author,
        approved,
        waiting_for: waiting.waiting_for,
        until: time(waiting.deadline),
    }
}
