//! Who runs the workers (the deploy queue, the outbox, the checks gate, the pruning): on
//! SQLite this server, always; on PostgreSQL the one replica that leads, while it leads
//! (see `store::postgres::replicas`). The others take deliveries and serve pages, and
//! take over within a second of the leader's connection closing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::deploy::worker::DeployWorker;
use crate::github::gate_worker::GateWorker;
use crate::github::outbox_worker::OutboxWorker;
use crate::store::postgres::replicas::{Lead, Replica};
use crate::store::{Store, now_ms, outbox, retention};

/// How often a standby tries to take the lead, and how often the leader looks at the
/// tables for work queued through another replica (whose wake-ups it does not hear).
const TRY_EVERY: Duration = Duration::from_secs(1);
/// After the deploys finished at shutdown, how long to keep sending the statuses they
/// queued. What is not sent by then is sent by the next leader.
const OUTBOX_FLUSH: Duration = Duration::from_secs(10);

/// What `/readyz`, `/metrics` and the dashboard say about this replica.
#[derive(Debug, Default)]
pub struct LeadStatus {
    leading: AtomicBool,
    /// When this replica's heartbeat last reached the database (Unix ms; 0: never).
    heartbeat_at: AtomicI64,
}

impl LeadStatus {
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    pub fn heartbeat_at(&self) -> i64 {
        self.heartbeat_at.load(Ordering::Relaxed)
    }
}

/// The workers, and what leading them needs.
#[derive(Debug, Clone)]
pub struct Workers {
    pub store: Store,
    pub deployer: DeployWorker,
    pub outbox: OutboxWorker,
    pub gate: GateWorker,
    pub ages: retention::Ages,
    pub shutdown_timeout: Duration,
    /// How long the database waits for a silent leader before another replica may lead.
    pub lease: Duration,
    pub replica: Replica,
    pub status: Arc<LeadStatus>,
    /// Carries out the commands written in pull-request comments.
    pub commands: super::commands::CommandWorker,
}

impl Workers {
    /// Runs the workers while this server leads, until `stop`; then lets the running
    /// deploys finish (up to the shutdown timeout) and flushes the outbox.
    pub async fn run(self, stop: CancellationToken) {
        let Some(pg) = self.store.postgres().cloned() else {
            self.status.leading.store(true, Ordering::Relaxed);
            self.lead(None, Duration::ZERO, &stop).await;
            return;
        };
        let heartbeats = tokio::spawn(self.clone().heartbeats(pg.clone(), stop.clone()));
        let mut said_standby = false;
        while !stop.is_cancelled() {
            match pg.try_lead(self.lease).await {
                Ok(Some(lead)) => {
                    tracing::info!(replica = %self.replica.id, "this replica leads the workers");
                    self.status.leading.store(true, Ordering::Relaxed);
                    // The previous leader is gone: settle what it left running (its own
                    // commands, on its own host, died with it or were stopped by it).
                    // The previous leader stops its deploys within its renewal (a second,
                    // plus the renewal's own deadline) of losing the lead: one still dying
                    // must not overlap the next run of its environment, so the queue waits
                    // that long when there were any (the outbox does not: the statuses that
                    // report them go out at once).
                    let hold_back = match self.deployer.recover().await {
                        Ok(0) => Duration::ZERO,
                        Ok(_) => TRY_EVERY + renew_deadline(self.lease),
                        Err(err) => {
                            tracing::error!("could not recover the deploy queue: {err}");
                            Duration::ZERO
                        }
                    };
                    if let Err(err) = self.store.write(outbox::release_in_flight).await {
                        tracing::error!("could not recover the outbox: {err}");
                    }
                    self.lead(Some(lead), hold_back, &stop).await;
                    self.status.leading.store(false, Ordering::Relaxed);
                    said_standby = false;
                }
                Ok(None) => {
                    if !said_standby {
                        tracing::info!(
                            replica = %self.replica.id,
                            "another replica leads the workers; this one takes deliveries and \
                             stands by"
                        );
                        said_standby = true;
                    }
                }
                Err(err) => tracing::warn!("could not try to lead: {err}"),
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(TRY_EVERY) => {}
            }
        }
        let _ = heartbeats.await;
    }

    /// Runs the workers until `stop` (an orderly end) or until `lead` is lost (this replica
    /// stops its deploys at once and stands by again).
    async fn lead(&self, lead: Option<Lead>, hold_back: Duration, stop: &CancellationToken) {
        let stop_loops = CancellationToken::new();
        let stop_outbox = CancellationToken::new();
        let deploy_loop = {
            let (deployer, stop) = (self.deployer.clone(), stop_loops.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(hold_back) => {}
                }
                deployer.run(stop).await;
            })
        };
        let mut outbox_loop = tokio::spawn(self.outbox.clone().run(stop_outbox.clone()));
        let prune_loop = tokio::spawn(retention::run(
            self.store.clone(),
            self.ages,
            stop_loops.clone(),
        ));
        // The waits' clock stops with the pruning: a soak due during shutdown is promoted
        // at the next start, from the time in the database.
        let gate_loop = tokio::spawn(self.gate.clone().run(stop_loops.clone()));
        let command_loop = tokio::spawn(self.commands.clone().run(stop_loops.clone()));
        let lost = async {
            let Some(lead) = &lead else {
                return std::future::pending::<String>().await;
            };
            loop {
                tokio::time::sleep(TRY_EVERY).await;
                if let Err(why) = lead.renew().await {
                    return why;
                }
                // Work queued through another replica woke nobody here.
                self.deployer.wake();
                self.outbox.wake();
                self.gate.wake();
                self.commands.wake();
            }
        };
        tokio::select! {
            () = stop.cancelled() => {
                stop_loops.cancel();
                let _ = deploy_loop.await;
                let _ = prune_loop.await;
                let _ = gate_loop.await;
                let _ = command_loop.await;
                self.deployer.finish_running(self.shutdown_timeout).await;
                stop_outbox.cancel();
                if tokio::time::timeout(OUTBOX_FLUSH, &mut outbox_loop).await.is_err() {
                    outbox_loop.abort();
                    let _ = outbox_loop.await;
                    tracing::warn!(
                        "GitHub calls still pending at shutdown will be sent at the next start"
                    );
                }
            }
            why = lost => {
                tracing::error!(
                    "lost the lead ({why}): stopping this replica's deploys now; another \
                     replica takes over their queue"
                );
                stop_loops.cancel();
                stop_outbox.cancel();
                outbox_loop.abort();
                let _ = outbox_loop.await;
                self.deployer.kill_running_and_wait().await;
                let _ = deploy_loop.await;
                let _ = prune_loop.await;
                let _ = gate_loop.await;
                let _ = command_loop.await;
            }
        }
        if let Some(lead) = lead {
            lead.release();
        }
    }

    /// Records this replica's heartbeat every sixth of the lease, until `stop`.
    async fn heartbeats(self, pg: crate::store::postgres::PgStore, stop: CancellationToken) {
        let every = (self.lease / 6).max(Duration::from_millis(500));
        loop {
            let now = now_ms();
            let leading = self.status.leading();
            match pg.heartbeat(&self.replica, leading, now, self.lease).await {
                Ok(()) => self.status.heartbeat_at.store(now, Ordering::Relaxed),
                Err(err) => tracing::warn!("could not record this replica's heartbeat: {err}"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// How long a leader's renewal may take before it counts as failed: a tenth of the lease,
/// at least half a second (see `store::postgres::replicas::Lead::renew`).
pub fn renew_deadline(lease: Duration) -> Duration {
    (lease / 10).max(Duration::from_millis(500))
}

/// This process as a replica: a random id, its host and pid.
pub fn this_replica() -> Replica {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    Replica {
        id: format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        host,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION"),
        started_at: now_ms(),
    }
}
