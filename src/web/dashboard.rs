//! The operators' dashboard at `/`: what is running and queued, the deployments of each
//! environment with links to their logs and to GitHub, and the recent deliveries. Rendered
//! on the server (askama templates in `templates/`, checked at compile time), readable
//! without JavaScript; with it, `/dashboard.js` refreshes the tables every few seconds and
//! streams the log of a running deploy into the page.
//!
//! Access is by `DEPLOYHOOK_ADMIN_TOKEN`, through the session of [`crate::web::auth`].
//! Without a configured token the dashboard is off and says so.

use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::model::DeploymentId;
use crate::store::locks;
use crate::store::now_ms;
use crate::store::outbox::given_up;
use crate::store::sessions;
use crate::store::views::{self, DeliveryRow, JobRow};
use crate::store::waits::{self, WaitRow};
use crate::web::AppState;
use crate::web::auth::{COOKIE, cross_site, unix_now};

/// Ended waits the dashboard shows.
const RECENT_WAITS: usize = 10;
/// How long a wrong token waits for its answer, to slow guessing.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(500);
/// Headers every dashboard page carries: nothing cached, framed, or leaked through the
/// referrer (log links carry their token).
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
    ),
];
/// The page's script: refreshes the live part, streams a running deploy's log.
const SCRIPT: &str = include_str!("../../templates/dashboard.js");

/// The dashboard's routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/dashboard/live", get(live))
        .route("/dashboard.js", get(script))
        .route("/dashboard/lock", axum::routing::post(lock_form))
        .route("/dashboard/unlock", axum::routing::post(unlock_form))
        .route("/dashboard/rollback", axum::routing::post(rollback_form))
}

fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    for (name, value) in PAGE_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => page(StatusCode::OK, html),
        Err(err) => {
            tracing::error!("could not render a dashboard page: {err}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log".to_owned(),
            )
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

/// The live part: what runs, what waits, deployments, deliveries.
#[derive(Template)]
#[template(path = "live.html")]
struct LivePart {
    /// The session's form token, for the lock, unlock and rollback forms.
    form_token: String,
    /// The locks holding now.
    locks: Vec<LockView>,
    running: Vec<JobView>,
    queued: Vec<JobView>,
    environments: Vec<(String, Vec<JobView>)>,
    deliveries: Vec<DeliveryView>,
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
}

/// A replica, ready to show.
#[derive(Debug, Clone)]
struct ReplicaView {
    id: String,
    host: String,
    role: &'static str,
    started: String,
    heartbeat: String,
    this: bool,
}

/// A lock, ready to show.
#[derive(Debug, Clone)]
struct LockView {
    environment: String,
    reason: String,
    by: String,
    since: String,
    /// Empty: until unlocked.
    until: String,
}

/// A wait — for checks, or a soak — ready to show.
#[derive(Debug, Clone)]
struct WaitView {
    kind: String,
    repository: String,
    environment: String,
    short_sha: String,
    commit_url: String,
    pull_request: u64,
    /// The gate (checks), or the environment promoted from (soak).
    required: String,
    passed: String,
    pending: String,
    since: String,
    /// The deadline (checks), the promotion (soak), or when it ended.
    until: String,
    state: String,
    /// Why it ended, or why GitHub did not tell its checks.
    note: String,
}

/// A GitHub call given up (a refused status, a deployment that could not be created).
#[derive(Debug, Clone)]
struct FailedCallView {
    /// What the Retry and Dismiss forms name.
    id: i64,
    what: String,
    repository: String,
    queued: String,
    attempts: i64,
    error: String,
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
}

/// A deployment, ready to show.
#[derive(Debug, Clone)]
struct JobView {
    id: u64,
    repository: String,
    environment: String,
    short_sha: String,
    git_ref: String,
    task: String,
    user: String,
    state: String,
    description: String,
    started: String,
    duration: String,
    log_path: String,
    commit_url: String,
    deployments_url: String,
    sha: String,
    /// A success older than the environment's current one: it can be rolled back to.
    can_roll_back: bool,
}

/// A delivery refused by intake, ready to show.
#[derive(Debug, Clone)]
struct RefusedView {
    id: i64,
    received: String,
    status: u16,
    message: String,
    client: String,
    event: String,
}

/// Given-up calls the dashboard shows (the newest; `deployhook calls` lists them all).
const RECENT_FAILED_CALLS: i64 = 20;
/// Refused deliveries the dashboard shows.
const RECENT_REFUSED: i64 = 20;

#[derive(Debug, Clone)]
struct DeliveryView {
    received: String,
    event: String,
    action: String,
    repository: String,
    outcome: String,
    message: String,
    delivery_id: String,
    hook_id: i64,
}

pub(super) fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text.replace('T', " ").replace('Z', " UTC")
}

fn job_view(job: JobRow, state: &AppState, now: i64) -> JobView {
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
        id: job.deployment_id,
        short_sha: job.sha.chars().take(7).collect(),
        sha: job.sha.clone(),
        can_roll_back: false,
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

async fn live_part(
    state: &AppState,
    form_token: String,
) -> Result<LivePart, crate::store::StoreError> {
    let now = now_ms();
    // One read, so one snapshot: the tables never contradict each other.
    let (locks, jobs, active, deliveries, refused, failed_calls, all_waits) = state
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
            ))
        })
        .await?;
    let replicas = match state.store.postgres() {
        None => vec![],
        Some(pg) => {
            let since = now - i64::try_from(state.lease.as_millis()).unwrap_or(i64::MAX / 2);
            pg.replicas(since)
                .await?
                .into_iter()
                .map(|r| ReplicaView {
                    this: r.id == state.replica.id,
                    role: if r.leading { "leader" } else { "standby" },
                    started: time(r.started_at),
                    heartbeat: format!("{} s ago", (now - r.heartbeat_at).max(0) / 1000),
                    id: r.id,
                    host: r.host,
                })
                .collect()
        }
    };
    let locks = locks
        .into_iter()
        .map(|lock| LockView {
            environment: lock.environment,
            reason: lock.reason,
            by: lock.locked_by,
            since: time(lock.locked_at),
            until: lock.until.map(time).unwrap_or_default(),
        })
        .collect();
    let failed_calls = failed_calls
        .into_iter()
        .map(|call| FailedCallView {
            what: match call.deployment_id {
                Some(id) => format!("{} of deployment {id}", call.kind.replace('_', " ")),
                None => call.kind.replace('_', " "),
            },
            id: call.id,
            repository: call.repository,
            queued: time(call.created_at),
            attempts: call.attempts,
            error: call.last_error,
        })
        .collect();
    let now = now_ms();
    let jobs: Vec<JobView> = jobs.into_iter().map(|j| job_view(j, state, now)).collect();
    let active: Vec<JobView> = active
        .into_iter()
        .map(|j| job_view(j, state, now))
        .collect();
    let pick = |s: &str| active.iter().filter(|j| j.state == s).cloned().collect();
    let (running, queued) = (pick("running"), pick("queued"));
    let environments = state
        .environments
        .iter()
        .map(|e| {
            let name = e.name.to_string();
            let mut of_it: Vec<JobView> = jobs
                .iter()
                .filter(|j| j.environment == name)
                .cloned()
                .collect();
            // Every success but the newest of its repository can be put back.
            let mut current: Vec<String> = Vec::new();
            for job in &mut of_it {
                if job.state != "success" || job.task != crate::model::DEPLOY_TASK {
                    continue;
                }
                if current.contains(&job.repository) {
                    job.can_roll_back = true;
                } else {
                    current.push(job.repository.clone());
                }
            }
            (name, of_it)
        })
        .collect();
    let deliveries = deliveries.into_iter().map(delivery_view).collect();
    let refused = refused
        .into_iter()
        .map(|row| RefusedView {
            id: row.id,
            received: time(row.refusal.received_at),
            status: row.refusal.status,
            message: row.refusal.message,
            client: row.refusal.client,
            event: row.refusal.event.unwrap_or_default(),
        })
        .collect();
    let (mut checks, mut soaking, mut ended_waits) = (vec![], vec![], vec![]);
    for wait in all_waits {
        let view = wait_view(wait, state);
        match (view.state.as_str(), view.kind.as_str()) {
            ("waiting", "checks") => checks.push(view),
            ("waiting", _) => soaking.push(view),
            _ => ended_waits.push(view),
        }
    }
    Ok(LivePart {
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
    })
}

fn wait_view(wait: WaitRow, state: &AppState) -> WaitView {
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

fn delivery_view(d: DeliveryRow) -> DeliveryView {
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

/// `None` for a signed-in admin; otherwise the answer to give instead of the page.
pub(crate) fn refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(admin) = &state.admin else {
        let off = MessagePage {
            title: "The dashboard is off",
            message: "Set DEPLOYHOOK_ADMIN_TOKEN (a long random value) and restart deployhook \
                      to turn it on.",
        };
        let mut response = render(&off);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Some(response);
    };
    if admin.session_valid(headers, unix_now()) {
        None
    } else {
        Some(Redirect::to("/login").into_response())
    }
}

async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(answer) = refusal(&state, &headers) {
        return answer;
    }
    let token = form_token(&state, &headers);
    match live_part(&state, token.clone()).await {
        Ok(live) => {
            let live_log = live.running.first().cloned();
            let environments = state
                .environments
                .iter()
                .map(|e| e.name.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            match live.render() {
                Ok(live) => render(&DashboardPage {
                    environments,
                    names: state
                        .environments
                        .iter()
                        .map(|e| e.name.to_string())
                        .collect(),
                    form_token: token,
                    live,
                    live_log,
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

async fn live(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if refusal(&state, &headers).is_some() {
        return (StatusCode::UNAUTHORIZED, "sign in again\n").into_response();
    }
    match live_part(&state, form_token(&state, &headers)).await {
        Ok(live) => render(&live),
        Err(err) => unavailable(&err),
    }
}

pub(crate) fn unavailable(err: &crate::store::StoreError) -> Response {
    tracing::error!("could not read the dashboard's data: {err}");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database could not be read; try again".to_owned(),
    )
}

async fn login_form(State(state): State<AppState>) -> Response {
    if state.admin.is_none() {
        return refusal(&state, &HeaderMap::new()).unwrap_or_default();
    }
    render(&LoginPage { error: None })
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    client: crate::web::client::ClientAddress,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    let Some(admin) = &state.admin else {
        return refusal(&state, &HeaderMap::new()).unwrap_or_default();
    };
    if cross_site(&headers) {
        return cross_site_refusal();
    }
    use crate::web::guesses::Verdict;
    let (error, status) = match admin.check_token(client.0, &form.token) {
        Verdict::Right => (None, StatusCode::SEE_OTHER),
        Verdict::Wrong => {
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            (
                Some("That is not the admin token."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Verdict::Limited(_) => (
            Some("Too many wrong tokens from your address: wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
    };
    if let Some(error) = error {
        let mut response = render(&LoginPage { error: Some(error) });
        *response.status_mut() = status;
        return response;
    }
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&admin.cookie(unix_now())) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Signs out: the session is revoked for good, not only its cookie dropped.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return cross_site_refusal();
    }
    let now = unix_now();
    if let Some(session) = state.admin.as_ref().and_then(|a| a.session(&headers, now)) {
        let (id, expires) = (session.id.clone(), session.expires);
        let recorded = state
            .store
            .write(move |c| sessions::revoke(c, &id, expires, now))
            .await;
        if let Err(err) = recorded {
            // Still refused until a restart: the revocation is in memory.
            tracing::error!("could not record a sign-out: {err}");
        }
        if let Some(admin) = &state.admin {
            admin.revoke(&session, now);
        }
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(cookie) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn cross_site_refusal() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "refused: this form may only be sent from deployhook's own pages".to_owned(),
    )
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The form token of the request's session (empty without one: its forms are refused).
fn form_token(state: &AppState, headers: &HeaderMap) -> String {
    match (
        &state.admin,
        state
            .admin
            .as_ref()
            .and_then(|a| a.session(headers, unix_now())),
    ) {
        (Some(admin), Some(session)) => admin.form_token(&session),
        _ => String::new(),
    }
}

/// `None` when a dashboard form may change something: a signed-in admin, from this site,
/// with the session's form token.
pub(super) fn form_refusal(state: &AppState, headers: &HeaderMap, token: &str) -> Option<Response> {
    if let Some(answer) = refusal(state, headers) {
        return Some(answer);
    }
    if cross_site(headers) {
        return Some(cross_site_refusal());
    }
    let admin = state.admin.as_ref()?;
    let valid = admin
        .session(headers, unix_now())
        .is_some_and(|session| admin.form_token_valid(&session, token));
    (!valid).then(|| {
        page(
            StatusCode::FORBIDDEN,
            "refused: the form's token is missing or stale; reload the dashboard".to_owned(),
        )
    })
}

/// After a form: back to the dashboard, or the refusal's sentence.
pub(super) fn after_form(result: Result<(), crate::web::admin::Refused>) -> Response {
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(crate::web::admin::Refused(status, why)) => {
            let mut response = render(&MessagePage {
                title: "Not done",
                message: &why,
            });
            *response.status_mut() = status;
            response
        }
    }
}

#[derive(serde::Deserialize)]
struct LockForm {
    environment: String,
    reason: String,
    /// `2h`; empty: until unlocked.
    #[serde(default, rename = "for")]
    duration: String,
    #[serde(default)]
    form_token: String,
}

async fn lock_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LockForm>,
) -> Response {
    if let Some(refused) = form_refusal(&state, &headers, &form.form_token) {
        return refused;
    }
    let duration = match form.duration.trim() {
        "" => None,
        text => match crate::config::parse_duration(text) {
            Ok(d) if d > crate::web::admin::MAX_LOCK => {
                return after_form(Err(crate::web::admin::Refused(
                    StatusCode::BAD_REQUEST,
                    "for: at most a year".into(),
                )));
            }
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                return after_form(Err(crate::web::admin::Refused(
                    StatusCode::BAD_REQUEST,
                    "for: must be longer than 0s".into(),
                )));
            }
            Err(err) => {
                return after_form(Err(crate::web::admin::Refused(
                    StatusCode::BAD_REQUEST,
                    format!("for: {err}"),
                )));
            }
        },
    };
    let done = crate::web::admin::lock(
        &state,
        &form.environment,
        &form.reason,
        duration,
        "the dashboard",
    )
    .await;
    after_form(done.map(drop))
}

#[derive(serde::Deserialize)]
struct UnlockForm {
    environment: String,
    #[serde(default)]
    form_token: String,
}

async fn unlock_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<UnlockForm>,
) -> Response {
    if let Some(refused) = form_refusal(&state, &headers, &form.form_token) {
        return refused;
    }
    after_form(
        crate::web::admin::unlock(&state, &form.environment, "the dashboard")
            .await
            .map(drop),
    )
}

#[derive(serde::Deserialize)]
struct RollbackForm {
    repository: String,
    environment: String,
    /// The commit to put back.
    to: String,
    #[serde(default)]
    form_token: String,
}

async fn rollback_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<RollbackForm>,
) -> Response {
    if let Some(refused) = form_refusal(&state, &headers, &form.form_token) {
        return refused;
    }
    let done = crate::web::admin::roll_back(
        &state,
        &form.repository,
        &form.environment,
        Some(&form.to),
        "the dashboard",
    )
    .await;
    after_form(done.map(drop))
}
