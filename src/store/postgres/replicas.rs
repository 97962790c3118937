//! Replicas on one PostgreSQL database: which one leads the workers, and which are alive.
//!
//! Every replica takes deliveries and serves pages; one at a time, the *leader*, runs the
//! deploy queue, the GitHub outbox, the checks gate and the pruning. Leading is a session
//! advisory lock held on a connection of its own, so:
//! - a leader that dies (SIGKILL, a crash, its host rebooting cleanly) closes its
//!   connection, the server releases the lock at once, and a standby takes over within
//!   its next try (every second);
//! - a leader that goes silent (its host powered off, a partition) is cut off by the
//!   server's TCP keepalives, set on that session so that the lock is released within the
//!   lease;
//! - a leader that cannot renew (a failed or slow round trip on that connection) stops its
//!   deploys and steps down at once, long before the server would release the lock: two
//!   leaders never run at once.
//!
//! Jobs record the replica that claimed them (`jobs.owner`), and a job's end is written
//! only by its owner: a leader that lost its lease and comes back cannot report over what
//! its successor decided. Heartbeats (`replicas`) are for people: the dashboard, `/readyz`
//! and `/metrics` show which replicas are alive and which one leads.

use std::time::Duration;

use super::{PgStore, pg_error_text};
use crate::store::StoreError;

/// The advisory lock whose holder leads the workers.
const LEADER_LOCK: i64 = 0x6465_706c_6f79_0002;

/// This replica's name in `replicas` and `jobs.owner`.
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: &'static str,
    pub started_at: i64,
}

/// A replica as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub leading: bool,
}

/// The lead, while held: the connection that holds the lock.
#[derive(Debug)]
pub struct Lead {
    client: Option<deadpool_postgres::ClientWrapper>,
    timeout: Duration,
}

impl PgStore {
    /// Tries to become the leader; `None` while another replica leads. The server is told
    /// to drop this session (and so the lock) if this process goes silent for `lease`.
    pub async fn try_lead(&self, lease: Duration) -> Result<Option<Lead>, StoreError> {
        let object = self.client().await?;
        // Out of the pool for good: a lock must never go back to it with the connection.
        let client = deadpool_postgres::Object::take(object);
        let secs = |d: Duration| d.as_secs().max(1);
        let setup = format!(
            "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
             SET tcp_keepalives_count = 3; SET tcp_user_timeout = {}",
            secs(lease / 2),
            secs(lease / 6),
            (lease / 2).as_millis()
        );
        client
            .batch_execute(&setup)
            .await
            .map_err(|err| StoreError::Unavailable(pg_error_text(&err)))?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await
            .map_err(|err| StoreError::Unavailable(pg_error_text(&err)))?
            .get(0);
        Ok(got.then(|| Lead {
            client: Some(client),
            // As web::lead::renew_deadline: a tenth of the lease, at least half a second.
            timeout: (lease / 10).max(Duration::from_millis(500)),
        }))
    }

    /// Records this replica's heartbeat (and whether it leads); forgets replicas silent for
    /// ten times `lease`.
    pub async fn heartbeat(
        &self,
        replica: &Replica,
        leading: bool,
        now: i64,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let replica = replica.clone();
        let forget = now - i64::try_from(lease.as_millis() * 10).unwrap_or(i64::MAX);
        self.run(false, move |c| {
            c.execute(
                "INSERT INTO replicas (id, host, pid, version, started_at, heartbeat_at, \"leading\")
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                     \"leading\" = excluded.\"leading\"",
                crate::store::db::params![
                    replica.id,
                    replica.host,
                    i64::from(replica.pid),
                    replica.version,
                    replica.started_at,
                    now,
                    i64::from(leading)
                ],
            )?;
            c.execute("DELETE FROM replicas WHERE heartbeat_at < ?1", [forget])?;
            Ok(())
        })
        .await
    }

    /// The replicas that sent a heartbeat since `since`, the leader first.
    pub async fn replicas(&self, since: i64) -> Result<Vec<ReplicaRow>, StoreError> {
        self.run(true, move |c| {
            c.prepare_cached(
                "SELECT id, host, pid, version, started_at, heartbeat_at, \"leading\"
                 FROM replicas WHERE heartbeat_at >= ?1
                 ORDER BY \"leading\" DESC, started_at, id",
            )?
            .query_map([since], |row| {
                Ok(ReplicaRow {
                    id: row.get(0)?,
                    host: row.get(1)?,
                    pid: row.get(2)?,
                    version: row.get(3)?,
                    started_at: row.get(4)?,
                    heartbeat_at: row.get(5)?,
                    leading: row.get(6)?,
                })
            })?
            .collect()
        })
        .await
    }
}

impl Lead {
    /// One round trip on the lock's connection, within the lease's tenth: an error means
    /// the lead is lost (or may be), and the caller must stop leading now.
    pub async fn renew(&self) -> Result<(), String> {
        let Some(client) = &self.client else {
            return Err("the lead was given up".into());
        };
        match tokio::time::timeout(self.timeout, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(pg_error_text(&err)),
            Err(_) => Err(format!(
                "no answer from PostgreSQL within {:?}",
                self.timeout
            )),
        }
    }

    /// Gives the lead up: the connection closes, and the server releases the lock.
    pub fn release(mut self) {
        self.client.take();
    }
}
