//! The page at `/` and its live part at `/dashboard/live` (what runs and waits, the
//! deployments of each environment, deliveries, locks, given-up calls, replicas), read in
//! one snapshot; and `/dashboard.js`, the script that refreshes the live part and streams a
//! running deploy's log into the page.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::access::{form_token, refusal};
use super::render::{page, render, unavailable};
use super::views::{
    ApprovalView, DeliveryLine, FailedCallView, JobView, LockView, RefusedView, ReplicaView,
    WaitView, approval_view, delivery_lines, delivery_view, failed_call_view, job_view, lock_view,
    refused_view, replica_view, wait_view,
};
use crate::store::locks;
use crate::store::now_ms;
use crate::store::outbox::given_up;
use crate::store::views;
use crate::store::views::waiting;
use crate::store::waits;
use crate::web::AppState;
use crate::web::people::{Sight, page_sight};

/// Ended waits the dashboard shows.
const RECENT_WAITS: usize = 10;
/// Given-up calls the dashboard shows (the newest; `deployhook calls` lists them all).
const RECENT_FAILED_CALLS: i64 = 20;
/// Rows of recent deliveries the dashboard shows (a run of routine ones is one row); the
/// rest are on `/deliveries`.
const RECENT_DELIVERY_ROWS: usize = 10;
/// Refused deliveries the dashboard shows.
const RECENT_REFUSED: i64 = 20;
/// The page's script: refreshes the live part, streams a running deploy's log.
const SCRIPT: &str = include_str!("../../../templates/dashboard.js");

/// The live part: what runs, what waits, deployments, deliveries.
#[derive(Template)]
#[template(path = "live.html")]
struct LivePart {
    /// The session's form token, for the lock, unlock and rollback forms.
    form_token: String,
    /// The locks holding now.
    locks: Vec<LockView>,
    /// The environments whose deploy window is closed or that are frozen now, and why:
    /// `frozen until 2027-01-04 09:00 Europe/Paris: holidays`.
    holds: Vec<(String, String)>,
    /// Deployments waiting for approval, soonest deadline first.
    approvals: Vec<ApprovalView>,
    running: Vec<JobView>,
    queued: Vec<JobView>,
    environments: Vec<(String, Vec<JobView>)>,
    /// The newest deliveries, runs of routine ones folded.
    deliveries: Vec<DeliveryLine>,
    /// The newest deliveries refused by intake.
    refused: Vec<RefusedView>,
    failed_calls: Vec<FailedCallView>,
    /// Merges waiting for their checks.
    checks: Vec<WaitView>,
    /// Promotions soaking.
    soaking: Vec<WaitView>,
    /// The latest waits that ended, and how.
    ended_waits: Vec<WaitView>,
    /// The replicas alive (PostgreSQL; empty on SQLite, where there is one server).
    replicas: Vec<ReplicaView>,
    /// What runs where, repository by repository: `.wcid`'s answer.
    where_runs: Vec<WhereView>,
    /// Pull requests' previews: open ones first.
    previews: Vec<super::previews::PreviewView>,
}

/// One repository in one environment, as `.wcid` tells it.
struct WhereView {
    repository: String,
    environment: String,
    /// The short commit of the last successful deploy; empty: none yet.
    running: String,
    /// What deploys or waits there now.
    active: Vec<ActiveView>,
    /// `locked by X: why`; empty: not locked.
    lock: String,
}

/// A deployment that deploys or waits in a [`WhereView`]'s place.
struct ActiveView {
    id: u64,
    short: String,
    state: String,
    by: String,
}

fn where_views(places: Vec<(String, Vec<crate::web::commands::wcid::Where>)>) -> Vec<WhereView> {
    let short = |sha: &str| sha.chars().take(7).collect::<String>();
    places
        .into_iter()
        .flat_map(|(repository, places)| {
            places.into_iter().map(move |place| WhereView {
                repository: repository.clone(),
                environment: place.environment,
                running: place.running.as_deref().map(short).unwrap_or_default(),
                active: place
                    .active
                    .into_iter()
                    .map(|(id, sha, state, by)| ActiveView {
                        id,
                        short: short(&sha),
                        state,
                        by,
                    })
                    .collect(),
                lock: place
                    .lock
                    .map(|(by, why)| format!("locked by {by}: {why}"))
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    environments: String,
    /// The environments, for the lock form.
    names: Vec<String>,
    form_token: String,
    /// [`LivePart`], rendered.
    live: String,
    /// The log of the first running deploy, streamed into the page by the script.
    live_log: Option<JobView>,
    /// Who is signed in, as the page names them.
    who: String,
    /// Whether the person may make personal tokens (signed in with GitHub).
    person: bool,
}

async fn live_part(
    state: &AppState,
    form_token: String,
    viewer: &Sight,
) -> Result<LivePart, crate::store::StoreError> {
    let now = now_ms();
    // One read, so one snapshot: the tables never contradict each other.
    let (locks, jobs, active, deliveries, refused, failed_calls, all_waits, mut awaiting) = state
        .store
        .read(move |c| {
            Ok((
                locks::holding_all(c, now)?,
                views::recent_jobs(c)?,
                views::active_jobs(c)?,
                views::recent_deliveries(c)?,
                crate::store::refused::recent(c, RECENT_REFUSED)?,
                given_up::list(c, "failed", RECENT_FAILED_CALLS)?,
                waits::waits(c, RECENT_WAITS)?,
                crate::store::approvals::waiting(c)?,
            ))
        })
        .await?;
    let mut previews = state
        .store
        .read(|c| crate::store::previews::list(c, super::previews::SHOWN))
        .await?;
    // A person sees only the repositories they can read on GitHub; refused deliveries,
    // which name none that can be trusted, only the admin token's session sees.
    let (mut jobs, mut active, mut deliveries, mut refused, mut failed_calls, mut all_waits) =
        (jobs, active, deliveries, refused, failed_calls, all_waits);
    let mut locks = locks;
    let visible = crate::web::people::authorize::visible_environments(state, viewer)
        .await
        // Only a failed read of the store fails this.
        .map_err(|refused| crate::store::StoreError::Unavailable(refused.1))?;
    if !viewer.everything() {
        locks.retain(|l| visible.contains(&l.environment));
        awaiting.retain(|w| viewer.can_read(&w.repository));
        jobs.retain(|j| viewer.can_read(&j.repository));
        active.retain(|j| viewer.can_read(&j.repository));
        deliveries.retain(|d| d.repository.as_deref().is_some_and(|r| viewer.can_read(r)));
        refused.clear();
        failed_calls.retain(|c| viewer.can_read(&c.repository));
        all_waits.retain(|w| viewer.can_read(&w.repository));
        previews.retain(|p| viewer.can_read(&p.repository));
    }
    // `.wcid`'s answer, from this same snapshot of what runs and what is locked.
    let where_runs = where_views(
        crate::web::commands::wcid::everywhere(state, |r| viewer.can_read(r), &active, &locks)
            .await?,
    );
    let replicas = match state.store.postgres() {
        None => vec![],
        Some(pg) => {
            let since = now - i64::try_from(state.lease.as_millis()).unwrap_or(i64::MAX / 2);
            pg.replicas(since)
                .await?
                .into_iter()
                .map(|r| replica_view(r, state, now))
                .collect()
        }
    };
    let holding = |job: &views::JobRow| {
        let lock = locks.iter().find(|l| l.environment == job.environment);
        let running = active
            .iter()
            .find(|r| {
                // A verifying deploy holds its environment as a running one does.
                (r.state == "running" || r.state == "verifying")
                    && r.repository == job.repository
                    && r.environment == job.environment
            })
            .map(|r| (r.deployment_id, r.started_at, r.state == "verifying"));
        let hold = crate::config::hold_of(&state.environments, &job.environment, now_ms());
        waiting::why(job.forced, job.clearance, lock, hold.as_ref(), running).map(|w| w.sentence())
    };
    let reasons: Vec<Option<String>> = active
        .iter()
        .map(|j| {
            if j.state == "queued" {
                holding(j)
            } else {
                None
            }
        })
        .collect();
    let locks = locks.into_iter().map(lock_view).collect();
    let failed_calls = failed_calls.into_iter().map(failed_call_view).collect();
    let now = now_ms();
    let jobs: Vec<JobView> = jobs.into_iter().map(|j| job_view(j, state, now)).collect();
    let active: Vec<JobView> = active
        .into_iter()
        .zip(reasons)
        .map(|(j, why)| JobView {
            waiting: why.unwrap_or_else(|| {
                "no lock nor deploy ahead: it starts as soon as a deploy slot is free".to_owned()
            }),
            ..job_view(j, state, now)
        })
        .collect();
    let pick = |states: &[&str]| {
        active
            .iter()
            .filter(|j| states.contains(&j.state.as_str()))
            .cloned()
            .collect()
    };
    let (running, queued) = (pick(&["running", "verifying"]), pick(&["queued"]));
    let environments = state
        .environments
        .iter()
        .filter(|e| visible.contains(e.name.as_ref()))
        .map(|e| {
            let name = e.name.to_string();
            // A preview environment's deployments are its pull requests' (`pr-42`): listed
            // under it, with no rollback (each preview runs its own head).
            let mut of_it: Vec<JobView> = jobs
                .iter()
                .filter(|j| j.environment == name || e.preview_number(&j.environment).is_some())
                .cloned()
                .collect();
            if e.preview.is_none() {
                mark_rollback_targets(&mut of_it);
            }
            (name, of_it)
        })
        .collect();
    let deliveries = delivery_lines(
        deliveries.into_iter().map(delivery_view).collect(),
        RECENT_DELIVERY_ROWS,
    );
    let refused = refused.into_iter().map(refused_view).collect();
    let (mut checks, mut soaking, mut ended_waits) = (vec![], vec![], vec![]);
    for wait in all_waits {
        let view = wait_view(wait, state);
        match (view.state.as_str(), view.kind.as_str()) {
            ("waiting", "checks") => checks.push(view),
            ("waiting", _) => soaking.push(view),
            _ => ended_waits.push(view),
        }
    }
    let holds = state
        .environments
        .iter()
        .filter(|e| viewer.everything() || visible.contains(&e.name.to_string()))
        .filter_map(|e| {
            let hold = crate::config::hold_of(&state.environments, e.name.as_ref(), now)?;
            Some((e.name.to_string(), hold.sentence()))
        })
        .collect();
    Ok(LivePart {
        holds,
        where_runs,
        approvals: awaiting.into_iter().map(approval_view).collect(),
        form_token,
        locks,
        checks,
        soaking,
        ended_waits,
        running,
        queued,
        environments,
        deliveries,
        refused,
        failed_calls,
        replicas,
        previews: previews
            .into_iter()
            .map(|p| super::previews::preview_view(p, state))
            .collect(),
    })
}

/// Marks the deployments of one environment (newest first) that "Roll back to this" may
/// put back: each success of a commit other than the one its repository runs there now.
/// What runs is the commit deployed last, whether that deploy succeeded or not (as
/// [`crate::guide::rollback`] reckons it): rolling back to it would change nothing, so
/// neither its own row nor an older success of the same commit offers it.
fn mark_rollback_targets(jobs: &mut [JobView]) {
    let ran = |j: &JobView| {
        j.task == crate::model::DEPLOY_TASK
            && matches!(j.state.as_str(), "success" | "failure" | "error")
    };
    let mut live: Vec<(String, String)> = Vec::new();
    for job in jobs.iter_mut().filter(|j| ran(j)) {
        match live.iter().find(|(repo, _)| *repo == job.repository) {
            Some((_, sha)) => job.can_roll_back = job.state == "success" && *sha != job.sha,
            None => live.push((job.repository.clone(), job.sha.clone())),
        }
    }
}

pub(super) async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match page_sight(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(answer) => return answer,
    };
    let token = form_token(&state, &headers);
    // The environments this viewer may see: in the heading and the lock form.
    let names: Vec<String> =
        match crate::web::people::authorize::visible_environments(&state, &viewer).await {
            Ok(visible) => state
                .environments
                .iter()
                .map(|e| e.name.to_string())
                .filter(|name| visible.contains(name))
                .collect(),
            Err(crate::web::admin::Refused(status, why)) => return page(status, why),
        };
    match live_part(&state, token.clone(), &viewer).await {
        Ok(live) => {
            let live_log = live.running.first().cloned();
            let environments = names.join(", ");
            match live.render() {
                Ok(live) => render(&DashboardPage {
                    environments,
                    names,
                    form_token: token,
                    live,
                    live_log,
                    who: viewer.actor.shown(),
                    person: viewer.actor.via == crate::model::Via::GitHub,
                }),
                Err(err) => {
                    tracing::error!("could not render the dashboard: {err}");
                    page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "see the server log".to_owned(),
                    )
                }
            }
        }
        Err(err) => unavailable(&err),
    }
}

pub(super) async fn live(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if refusal(&state, &headers).is_some() {
        return (StatusCode::UNAUTHORIZED, "sign in again\n").into_response();
    }
    let viewer = match page_sight(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(answer) => return answer,
    };
    match live_part(&state, form_token(&state, &headers), &viewer).await {
        Ok(live) => render(&live),
        Err(err) => unavailable(&err),
    }
}

pub(super) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}
