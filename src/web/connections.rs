//! The open connections, as the accept loop counts them: in all and per client address,
//! each known as waiting for a request (just accepted and its headers still to come, or
//! kept alive between requests) or busy with one (its body being read, its answer being
//! written). At the connection cap a new connection takes the place of a waiting one, which
//! is closed: the one that has waited longest, of the client holding the most connections.
//! So idle connections cannot keep GitHub out however many addresses hold them, and churning
//! through the cap cannot close GitHub's own connection while it sends its headers unless
//! GitHub holds as many as the busiest address. Busy connections are never closed: a body
//! being read or an answer being written is never cut to make room.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};
use tokio_util::sync::CancellationToken;

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
use crate::model::ClientKey;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The server holds as many connections as it may, every one of them busy.
    Full,
    /// This client address holds as many as one address may.
    ClientFull,
}

impl Refusal {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::Full => "max_connections",
            Self::ClientFull => "max_connections_per_client",
        }
    }

    /// The log line's words for a run of these.
    pub(super) fn notice(self) -> &'static str {
        match self {
            Self::Full => "refusing connections (max_connections)",
            Self::ClientFull => "refusing connections (max_connections_per_client)",
        }
    }

    pub(super) fn message(self) -> &'static str {
        match self {
            Self::Full => "deployhook has too many open connections; try again shortly\n",
            Self::ClientFull => "too many open connections from your address; close some\n",
        }
    }
}

/// The open connections, shared by the accept loop and every connection's task.
#[derive(Debug, Clone)]
pub(super) struct Connections {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Open {
    by_id: HashMap<u64, Entry>,
    by_client: HashMap<ClientKey, usize>,
    next_id: u64,
    /// Ticks at every change of state: orders connections by how long they have waited.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    client: ClientKey,
    /// Requests being served: hyper serves one at a time, counted to stay right anyway.
    busy: u32,
    /// When it last began to wait for a request (a tick of [`Open::clock`]).
    waiting_since: u64,
    /// Cancelled when the connection is shed.
    shed: CancellationToken,
}

impl Open {
    /// The connection to shed to make room: a waiting one, from the client holding the
    /// most connections, the one that has waited longest; `None` when every one is busy.
    fn victim(&self) -> Option<u64> {
        self.by_id
            .iter()
            .filter(|(_, entry)| entry.busy == 0)
            .max_by_key(|(_, entry)| {
                let held = self.by_client.get(&entry.client).copied().unwrap_or(0);
                (held, Reverse(entry.waiting_since))
            })
            .map(|(id, _)| *id)
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.by_id.remove(&id)?;
        if let Some(count) = self.by_client.get_mut(&entry.client) {
            *count -= 1;
            if *count == 0 {
                self.by_client.remove(&entry.client);
            }
        }
        Some(entry)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

impl Connections {
    pub(super) fn new(limits: ConnectionLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            limits,
            open: Arc::default(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `client`, held until the connection closes. At the
    /// cap a waiting connection is shed to make room; its client is returned with the slot.
    pub(super) fn admit(&self, client: ClientKey) -> Result<(Slot, Option<ClientKey>), Refusal> {
        let mut open = self.lock();
        let per_client = self.limits.max_connections_per_client;
        let mine = open.by_client.get(&client).copied().unwrap_or(0);
        if per_client != 0 && mine >= per_client {
            return Err(Refusal::ClientFull);
        }
        let mut shed = None;
        if open.by_id.len() >= self.limits.max_connections {
            let victim = open.victim().ok_or(Refusal::Full)?;
            if let Some(entry) = open.remove(victim) {
                entry.shed.cancel();
                self.metrics.connection_shed();
                shed = Some(entry.client);
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let waiting_since = open.tick();
        let token = CancellationToken::new();
        open.by_id.insert(
            id,
            Entry {
                client,
                busy: 0,
                waiting_since,
                shed: token.clone(),
            },
        );
        *open.by_client.entry(client).or_default() += 1;
        self.metrics.connections_open(open.by_id.len());
        let slot = Slot {
            tracker: Tracker {
                connections: self.clone(),
                id,
            },
            shed: token,
        };
        Ok((slot, shed))
    }
}

/// One open connection's place among the [`Connections`]; given up when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    tracker: Tracker,
    /// Cancelled when the connection is shed to make room: its task then closes it.
    pub(super) shed: CancellationToken,
}

impl Slot {
    /// What the connection's requests mark it busy through.
    pub(super) fn tracker(&self) -> Tracker {
        self.tracker.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let connections = &self.tracker.connections;
        let mut open = connections.lock();
        // Already gone if it was shed.
        open.remove(self.tracker.id);
        connections.metrics.connections_open(open.by_id.len());
    }
}

/// Marks one connection busy while a request of it is served.
#[derive(Debug, Clone)]
pub(super) struct Tracker {
    connections: Connections,
    id: u64,
}

impl Tracker {
    /// Marks the connection busy until the returned guard is dropped; `None` if it was
    /// shed meanwhile (its request is not served: the connection is closing).
    pub(super) fn busy(&self) -> Option<Busy> {
        let mut open = self.connections.lock();
        let entry = open.by_id.get_mut(&self.id)?;
        entry.busy += 1;
        Some(Busy {
            tracker: self.clone(),
        })
    }
}

/// A request being served; its connection waits again when this is dropped.
#[derive(Debug)]
pub(super) struct Busy {
    tracker: Tracker,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut open = self.tracker.connections.lock();
        let tick = open.tick();
        if let Some(entry) = open.by_id.get_mut(&self.tracker.id) {
            entry.busy -= 1;
            if entry.busy == 0 {
                entry.waiting_since = tick;
            }
        }
    }
}

/// A response's body, keeping its connection busy until hyper drops it: once its last
/// byte is handed to the connection, or when the connection is gone.
#[derive(Debug)]
pub(super) struct Answering {
    body: Body,
    _busy: Busy,
}

impl Answering {
    pub(super) fn new(body: Body, busy: Busy) -> Self {
        Self { body, _busy: busy }
    }
}

impl hyper::body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
