//! The memory request bodies may take while they are read, before their signatures are
//! checked: a total, and a share of it per client, taken as the bytes arrive (a
//! `Content-Length` costs nothing until its bytes come). Small bodies first: one of up to
//! [`SMALL_BODY`] never asks, since every connection may hold that much and the connection
//! cap bounds them all, so GitHub's usual deliveries never wait behind large bodies, however
//! many addresses stall them. A larger body is counted whole; when the total or its
//! client's share has no room it waits, without queueing in front of anyone: whoever fits
//! when room is freed takes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::model::ClientKey;

/// The largest body read without counting it: GitHub's usual deliveries (a ping, a pull
/// request, a deployment and its statuses, a check) are 5–60 KB. Bounded by the connection
/// cap rather than the budget: 512 connections hold at most 64 MiB of such bodies.
pub const SMALL_BODY: usize = 128 * 1024;

/// What the counted bodies may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes, in all.
    pub total: usize,
    /// Bytes, per client; `None`: no share (behind a reverse proxy every body comes from
    /// the proxy's address).
    pub per_client: Option<usize>,
}

/// The bytes held by the bodies being read, against [`BodyLimits`].
#[derive(Debug)]
pub struct BodyBudget {
    limits: BodyLimits,
    held: Mutex<Held>,
    /// Woken when bytes are given back.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<ClientKey, usize>,
}

/// A body would need more than a client may ever hold here: waiting would not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeverFits {
    /// The most one body may hold, in bytes.
    pub limit: usize,
}

impl BodyBudget {
    pub fn new(limits: BodyLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            held: Mutex::default(),
            freed: Notify::new(),
        })
    }

    /// An empty reservation for a body from `client` (`None`: not known, so only the total
    /// applies), grown with [`Reservation::grow_to`] and given back when dropped.
    pub fn reserve(self: &Arc<Self>, client: Option<ClientKey>) -> Reservation {
        Reservation {
            budget: self.clone(),
            client: client.filter(|_| self.limits.per_client.is_some()),
            bytes: 0,
        }
    }

    /// Bytes held now: in all, and by `client`.
    pub fn held(&self, client: ClientKey) -> (usize, usize) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.by_client.get(&client).copied().unwrap_or(0);
        (held.total, mine)
    }

    /// The most a body from `client` may hold.
    fn limit(&self, client: Option<ClientKey>) -> usize {
        match (client, self.limits.per_client) {
            (Some(_), Some(share)) => share.min(self.limits.total),
            _ => self.limits.total,
        }
    }

    /// Takes `more` bytes for `client` if both the total and its share have room.
    fn try_take(&self, client: Option<ClientKey>, more: usize) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.total + more > self.limits.total {
            return false;
        }
        if let (Some(client), Some(share)) = (client, self.limits.per_client) {
            let mine = held.by_client.entry(client).or_default();
            if *mine + more > share {
                if *mine == 0 {
                    held.by_client.remove(&client);
                }
                return false;
            }
            *mine += more;
        }
        held.total += more;
        true
    }

    fn give_back(&self, client: Option<ClientKey>, bytes: usize) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= bytes;
        if let Some(client) = client
            && let Some(mine) = held.by_client.get_mut(&client)
        {
            *mine -= bytes;
            if *mine == 0 {
                held.by_client.remove(&client);
            }
        }
        drop(held);
        self.freed.notify_waiters();
    }
}

/// The bytes one body holds in the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    client: Option<ClientKey>,
    bytes: usize,
}

impl Reservation {
    /// Makes room for the body to hold `bytes` in all: nothing while that is at most
    /// [`SMALL_BODY`], else the whole, waiting while the total or the client's share has no
    /// room (the caller bounds the wait).
    pub async fn grow_to(&mut self, bytes: usize) -> Result<(), NeverFits> {
        if bytes <= SMALL_BODY || bytes <= self.bytes {
            return Ok(());
        }
        let limit = self.budget.limit(self.client);
        if bytes > limit {
            return Err(NeverFits { limit });
        }
        let more = bytes - self.bytes;
        loop {
            // Listening before trying: bytes given back in between still wake this.
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.budget.try_take(self.client, more) {
                self.bytes = bytes;
                return Ok(());
            }
            freed.await;
        }
    }

    /// Bytes counted against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.client, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests;
