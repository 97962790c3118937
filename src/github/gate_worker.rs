//! The gate worker: the clock of the waits. It ends soaks that are over (queuing their
//! deployment), and every `checks_poll` asks GitHub again for the checks of each merge that
//! still waits — the backstop for a check event GitHub never delivered, and past a wait's
//! deadline the read that decides `timed_out`. It also ends the deployments whose wait for
//! approval passed its deadline (`failure`). What to do is decided in the store
//! ([`crate::store::waits::tick`], [`crate::store::approvals::expire`]); this loop only
//! says when. It runs on the leader only, so two replicas never end a wait twice. It
//! also tells when a freeze starts and ends (`freezes.rs`), at the edge.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::github::outbox_worker::OutboxWorker;
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::store::{Store, approvals, now_ms, waits};

mod freezes;

/// Waits handled per pass; more wait for the next, which follows at once.
const BATCH: usize = 256;
/// The longest the worker sleeps without looking at the waits.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// Runs the waits' clock. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GateWorker {
    store: Store,
    outbox: OutboxWorker,
    metrics: Arc<Metrics>,
    poll: Duration,
    wake: Arc<Notify>,
    alive: Liveness,
    /// Closes previews whose pull request closed unseen; runs beside this clock, on the
    /// leader too.
    previews: Option<crate::github::preview_worker::PreviewWorker>,
    /// Whose freezes' starts and ends are told.
    environments: Arc<[crate::config::EnvironmentConfig]>,
}

impl GateWorker {
    pub fn new(store: Store, outbox: OutboxWorker, metrics: Arc<Metrics>, poll: Duration) -> Self {
        Self {
            store,
            outbox,
            metrics,
            poll,
            wake: Arc::new(Notify::new()),
            alive: Liveness::default(),
            previews: None,
            environments: Arc::new([]),
        }
    }

    /// This clock, telling the starts and ends of these environments' freezes.
    #[must_use]
    pub fn with_freezes(mut self, environments: Arc<[crate::config::EnvironmentConfig]>) -> Self {
        self.environments = environments;
        self
    }

    /// Records and queues the notices of freeze edges passed and not told yet.
    async fn announce_freezes(&self, now: i64) {
        let edges = freezes::passed(&self.environments, now);
        if edges.is_empty() {
            return;
        }
        let told = self
            .store
            .write(move |c| {
                let mut told = 0;
                for (environment, freeze, edge, notification) in &edges {
                    let new = crate::store::freezes::announce(
                        c,
                        environment,
                        *freeze,
                        edge,
                        notification,
                        now,
                    )?;
                    told += usize::from(new);
                }
                Ok(told)
            })
            .await;
        match told {
            Ok(0) => {}
            Ok(told) => {
                tracing::info!(told, "told of a freeze starting or ending");
                self.outbox.wake();
            }
            Err(err) => tracing::error!("could not record a freeze's notice: {err}"),
        }
    }

    /// This clock, with the preview worker running beside it.
    #[must_use]
    pub fn with_previews(
        mut self,
        previews: Option<crate::github::preview_worker::PreviewWorker>,
    ) -> Self {
        self.previews = previews;
        self
    }

    /// Whether the loop runs.
    pub fn is_alive(&self) -> bool {
        self.alive.is_alive()
    }

    /// Tells the worker a wait was recorded (a soak, or a wait for approval, may end sooner
    /// than it planned).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ticks until `stop` is cancelled. A wait due while the server is down is handled at
    /// the next start: its time is in the database.
    pub async fn run(self, stop: CancellationToken) {
        let _alive = self.alive.mark();
        // Its reads of GitHub must not hold this clock up: a task of its own, ended with it.
        let previews = self
            .previews
            .clone()
            .map(|p| tokio::spawn(p.run(stop.clone())));
        self.tick_until(stop).await;
        if let Some(previews) = previews {
            let _ = previews.await;
        }
    }

    async fn tick_until(&self, stop: CancellationToken) {
        let poll_ms = i64::try_from(self.poll.as_millis()).unwrap_or(i64::MAX / 2);
        loop {
            let now = now_ms();
            let tick = self
                .store
                .write(move |c| waits::tick(c, poll_ms, now, BATCH))
                .await;
            self.announce_freezes(now).await;
            let mut again = false;
            match tick {
                Ok(tick) => {
                    if tick.reads > 0 || tick.created > 0 {
                        self.outbox.wake();
                    }
                    for wait in &tick.ended {
                        self.metrics.wait_ended(wait.kind, wait.outcome);
                    }
                    again = tick.reads + tick.created >= BATCH;
                }
                Err(err) => tracing::error!("could not look at the waits: {err}"),
            }
            match self
                .store
                .write(move |c| approvals::expire(c, now, BATCH))
                .await
            {
                Ok(0) => {}
                Ok(expired) => {
                    tracing::info!(expired, "ended deployments not approved in time");
                    // Their `failure` statuses and events are queued.
                    self.outbox.wake();
                    again |= expired >= BATCH;
                }
                Err(err) => tracing::error!("could not end the expired approvals: {err}"),
            }
            let sleep = if again {
                Duration::ZERO
            } else {
                let due = match self.store.read(next_due).await {
                    Ok(due) => due,
                    Err(err) => {
                        tracing::error!("could not look at the waits: {err}");
                        None
                    }
                };
                // A freeze's edge is told when it passes.
                let now = now_ms();
                [due, freezes::next_edge(&self.environments, now)]
                    .into_iter()
                    .flatten()
                    .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
                    .fold(IDLE_POLL, Duration::min)
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// When the clock must look next: the soonest of the waits' next moment and the deadlines
/// of the deployments awaiting approval.
fn next_due(conn: &crate::store::Connection) -> rusqlite::Result<Option<i64>> {
    let waits = waits::next_due(conn)?;
    let approvals = approvals::next_deadline(conn)?;
    Ok(waits.into_iter().chain(approvals).min())
}
