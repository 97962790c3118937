//! Prometheus metrics, served at `GET /metrics` in the text exposition format
//! (`prometheus-client`, the Prometheus project's own Rust client).
//!
//! Counters and histograms move where things happen (intake, the deploy worker, the GitHub
//! client); the gauges that describe state — queue depth, outbox backlog — are read from
//! the database at scrape time, so they are right after a restart too. One [`Metrics`] per
//! server, not a global: tests run several servers in one process.
//!
//! Label values come from a fixed set or from configuration (environment names), never
//! from raw request data, so a stranger cannot grow the series count.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::views::Backlog;

/// Deploy durations, in seconds: from a few seconds to an hour.
const DEPLOY_BUCKETS: [f64; 10] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];
/// Merge-to-deployed lead times, in seconds: from a minute to a day.
const LEAD_TIME_BUCKETS: [f64; 9] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    event: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuessLabels {
    token: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployLabels {
    environment: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvironmentLabels {
    environment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: &'static str,
    status: String,
}

/// A family listed on `/metrics` from the start, with its help and type, before it has a
/// series: `prometheus-client` leaves an empty family out, so a scrape (and the README's
/// test against it) would see a family only once something happened to fill it.
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// The server's metrics. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    signature_failures: Counter,
    refusals_unrecorded: Counter,
    deploys: Family<DeployLabels, Counter>,
    deploy_seconds: Family<EnvironmentLabels, Histogram, fn() -> Histogram>,
    lead_time_seconds: Family<EnvironmentLabels, Histogram, fn() -> Histogram>,
    github_calls: Family<CallLabels, Counter>,
    queued: Family<EnvironmentLabels, Gauge>,
    running: Family<EnvironmentLabels, Gauge>,
    outbox_pending: Gauge,
    outbox_failed: Gauge,
    outbox_oldest_seconds: Gauge,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    token_guesses: Family<GuessLabels, Counter>,
    connections_shed: Counter,
    waits_ended: Family<WaitLabels, Counter>,
    waiting: Family<KindLabels, Gauge>,
    locked: Family<EnvironmentLabels, Gauge>,
    notifications_pending: Gauge,
    replicas_alive: Gauge,
    leader: Gauge,
    /// One scrape at a time: each clears and refills the state gauges.
    rendering: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deployhook");
        let deliveries = Family::default();
        registry.register(
            "deliveries",
            "Deliveries answered 2xx, by event and outcome",
            Listed(deliveries.clone()),
        );
        let rejected = Family::default();
        registry.register(
            "deliveries_rejected",
            "Deliveries refused with a 4xx, by reason",
            Listed(rejected.clone()),
        );
        let signature_failures = Counter::default();
        registry.register(
            "signature_failures",
            "Deliveries whose signature was missing or wrong",
            signature_failures.clone(),
        );
        let refusals_unrecorded = Counter::default();
        registry.register(
            "refusals_unrecorded",
            "Refused deliveries not kept for the dashboard: the queue to the database was full",
            refusals_unrecorded.clone(),
        );
        let deploys = Family::default();
        registry.register(
            "deploys",
            "Deploys ended, by environment and final state",
            Listed(deploys.clone()),
        );
        let deploy_seconds: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DEPLOY_BUCKETS));
        registry.register(
            "deploy_duration_seconds",
            "How long deploy commands ran",
            Listed(deploy_seconds.clone()),
        );
        let lead_time_seconds: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(LEAD_TIME_BUCKETS));
        registry.register(
            "lead_time_seconds",
            "From a pull request's merge to its successful deploy",
            Listed(lead_time_seconds.clone()),
        );
        let github_calls = Family::default();
        registry.register(
            "github_calls",
            "Calls to GitHub's REST API, by endpoint and answer (error: no answer)",
            Listed(github_calls.clone()),
        );
        let queued = Family::default();
        registry.register(
            "queue_queued",
            "Deploys waiting, by environment",
            Listed(queued.clone()),
        );
        let running = Family::default();
        registry.register(
            "queue_running",
            "Deploys running, by environment",
            Listed(running.clone()),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "outbox_pending",
            "GitHub calls still to make",
            outbox_pending.clone(),
        );
        let outbox_failed = Gauge::default();
        registry.register(
            "outbox_failed",
            "Calls given up — to GitHub, or notifications — kept in the outbox table",
            outbox_failed.clone(),
        );
        let outbox_oldest_seconds = Gauge::default();
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest GitHub call still to make (0 when none)",
            outbox_oldest_seconds.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Inbound connections open now",
            connections_open.clone(),
        );
        let connections_refused = Family::default();
        registry.register(
            "connections_refused",
            "Inbound connections refused at a cap, by which cap",
            Listed(connections_refused.clone()),
        );
        let token_guesses = Family::default();
        registry.register(
            "token_guesses",
            "Wrong admin or metrics tokens presented (token), checked (outcome wrong) or \
             refused unchecked because their address had used up its guesses (limited)",
            Listed(token_guesses.clone()),
        );
        let connections_shed = Counter::default();
        registry.register(
            "connections_shed",
            "Idle inbound connections closed at the connection cap to make room for a new one",
            connections_shed.clone(),
        );
        let waits_ended = Family::default();
        registry.register(
            "waits_ended",
            "Waits ended — merges waiting for checks (kind checks), promotions soaking \
             (kind soak) — by outcome: passed, failed, timed_out, superseded",
            Listed(waits_ended.clone()),
        );
        let waiting = Family::default();
        registry.register(
            "waiting",
            "Merges waiting for their checks (kind checks), promotions soaking (kind soak) and \
             deployments waiting for approval (kind approval) now",
            Listed(waiting.clone()),
        );
        let locked = Family::default();
        registry.register(
            "environment_locked",
            "1 for each environment locked now (no automatic deploy runs there)",
            Listed(locked.clone()),
        );
        let notifications_pending = Gauge::default();
        registry.register(
            "notifications_pending",
            "Notifications still to send (retried while their receiver fails)",
            notifications_pending.clone(),
        );
        let replicas_alive = Gauge::default();
        registry.register(
            "replicas_alive",
            "Replicas whose heartbeat is within the lease (PostgreSQL; 1 on SQLite)",
            replicas_alive.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica leads the workers (deploys, GitHub calls), 0 on a standby",
            leader.clone(),
        );
        Self {
            replicas_alive,
            leader,
            notifications_pending,
            waits_ended,
            waiting,
            locked,
            registry,
            deliveries,
            rejected,
            signature_failures,
            refusals_unrecorded,
            deploys,
            deploy_seconds,
            lead_time_seconds,
            github_calls,
            queued,
            running,
            outbox_pending,
            outbox_failed,
            outbox_oldest_seconds,
            connections_open,
            connections_refused,
            token_guesses,
            connections_shed,
            rendering: std::sync::Mutex::new(()),
        }
    }

    /// A wait ended (`kind`: checks or soak).
    pub fn wait_ended(&self, kind: &'static str, outcome: &'static str) {
        self.waits_ended
            .get_or_create(&WaitLabels { kind, outcome })
            .inc();
    }

    /// The label of an event name: the events deployhook handles, or `other`.
    pub fn event_label(event: &str) -> &'static str {
        match event {
            "pull_request" => "pull_request",
            "deployment" => "deployment",
            "deployment_status" => "deployment_status",
            "ping" => "ping",
            "check_run" => "check_run",
            "check_suite" => "check_suite",
            "status" => "status",
            _ => "other",
        }
    }

    /// A delivery of `event` (see [`Metrics::event_label`]) answered 2xx.
    pub fn delivery(&self, event: &'static str, outcome: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels { event, outcome })
            .inc();
    }

    /// A delivery refused, for `reason` (a fixed label).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
        if matches!(reason, "missing_signature" | "bad_signature") {
            self.signature_failures.inc();
        }
    }

    /// A refused delivery dropped instead of recorded (see `store::refused::RefusalLog`).
    pub fn refusal_unrecorded(&self) {
        self.refusals_unrecorded.inc();
    }

    /// A deploy ended in `state` after `ran` (`None` when it never ran).
    pub fn deploy_ended(&self, environment: &str, state: &'static str, ran: Option<Duration>) {
        let labels = DeployLabels {
            environment: environment.to_owned(),
            state,
        };
        self.deploys.get_or_create(&labels).inc();
        if let Some(ran) = ran {
            let labels = EnvironmentLabels {
                environment: environment.to_owned(),
            };
            self.deploy_seconds
                .get_or_create(&labels)
                .observe(ran.as_secs_f64());
        }
    }

    /// A merge deployed successfully `lead_time` after it happened.
    pub fn lead_time(&self, environment: &str, lead_time: Duration) {
        let labels = EnvironmentLabels {
            environment: environment.to_owned(),
        };
        self.lead_time_seconds
            .get_or_create(&labels)
            .observe(lead_time.as_secs_f64());
    }

    /// A call to GitHub answered `status` (`None`: no answer).
    pub fn github_call(&self, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.github_calls
            .get_or_create(&CallLabels { endpoint, status })
            .inc();
    }

    /// `count` inbound connections are open.
    pub fn connections_open(&self, count: usize) {
        self.connections_open
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// An inbound connection refused at a cap (`reason`, a fixed label).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A wrong `token` (`admin`, `metrics`) presented: `wrong` when checked, `limited` when
    /// refused unchecked.
    pub fn token_guess(&self, token: &'static str, outcome: &'static str) {
        self.token_guesses
            .get_or_create(&GuessLabels { token, outcome })
            .inc();
    }

    /// An idle inbound connection closed to make room for a new one.
    pub fn connection_shed(&self) {
        self.connections_shed.inc();
    }

    /// The replicas alive now, and whether this one leads: set before [`Metrics::render`].
    pub fn replicas(&self, alive: usize, leading: bool) {
        self.replicas_alive
            .set(i64::try_from(alive).unwrap_or(i64::MAX));
        self.leader.set(i64::from(leading));
    }

    /// The text exposition, with the state gauges set from `backlog`.
    pub fn render(&self, backlog: &Backlog) -> String {
        let _one_at_a_time = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.queued.clear();
        self.running.clear();
        for (environment, queued, running) in &backlog.jobs {
            let labels = EnvironmentLabels {
                environment: environment.clone(),
            };
            self.queued.get_or_create(&labels).set(*queued);
            self.running.get_or_create(&labels).set(*running);
        }
        self.outbox_pending.set(backlog.outbox_pending);
        self.outbox_failed.set(backlog.outbox_failed);
        self.outbox_oldest_seconds
            .set(backlog.outbox_oldest_seconds);
        self.notifications_pending
            .set(backlog.notifications_pending);
        self.locked.clear();
        for environment in &backlog.locked {
            self.locked
                .get_or_create(&EnvironmentLabels {
                    environment: environment.clone(),
                })
                .set(1);
        }
        for (kind, count) in [
            ("checks", backlog.waiting_for_checks),
            ("soak", backlog.soaking),
            ("approval", backlog.awaiting_approval),
        ] {
            self.waiting
                .get_or_create(&KindLabels { kind })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;
