//! Connections, before any route sees them: the accept loop that faces the internet. Every
//! connection gets a deadline for its request headers, which also closes it once it has
//! sat idle that long after a response (hyper starts the same timer then); the number of
//! open connections is capped, in all and per client address, so that no client can take
//! the file descriptors and memory that GitHub's deliveries need. A connection past a cap
//! is answered `503` at once and closed; the others never notice it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;

/// After an accept error (out of file descriptors, say), how long to wait before accepting
/// again: retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often at most a refused connection is logged; the metric counts every one.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in
/// flight finish and returns once every connection has closed (the caller bounds how
/// long). Dropping the returned future closes every connection at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let counter = Counter::new(limits, metrics.clone());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut refusals = Refusals::default();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::error!("could not accept a connection: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let slot = match counter.admit(client_key(peer.ip())) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics.connection_refused(refusal.reason());
                refusals.log(peer, refusal);
                refuse(&stream, refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(axum::body::Body::new)
            },
        ));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            let _slot = slot;
            if let Err(err) = connection.await {
                // A client that went away or was too slow: routine on the internet.
                tracing::debug!(%peer, "connection ended: {err}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whom the per-client cap counts a connection against: an IPv4 address, or an IPv6
/// address's /64 network (one host is usually given a whole /64, so counting its addresses
/// one by one would give it billions of caps). IPv4-mapped IPv6 addresses count as IPv4.
/// The limits on wrong tokens (`guesses`) count clients the same way.
pub(super) fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server holds as many connections as it may.
    Full,
    /// This client address holds as many as one address may.
    ClientFull,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::Full => "max_connections",
            Self::ClientFull => "max_connections_per_client",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Full => "deployhook has too many open connections; try again shortly\n",
            Self::ClientFull => "too many open connections from your address; close some\n",
        }
    }
}

/// Answers a refused connection without waiting for it: a new socket's send buffer takes
/// the few bytes at once, and a client that reads nothing loses nothing of ours.
fn refuse(stream: &TcpStream, refusal: Refusal) {
    let message = refusal.message();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{message}",
        message.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Logs refused connections, at most once per [`REFUSAL_LOG_INTERVAL`], so that a flood
/// of them cannot flood the log too.
#[derive(Debug, Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn log(&mut self, peer: SocketAddr, refusal: Refusal) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            client = %peer.ip(),
            refused = self.unlogged,
            "refusing connections ({}): {} since the last such line",
            refusal.reason(),
            self.unlogged
        );
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// Counts open connections, in all and per client address.
#[derive(Debug, Clone)]
struct Counter {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl Counter {
    fn new(limits: ConnectionLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            limits,
            open: Arc::default(),
            metrics,
        }
    }

    /// A slot for a connection from `client`, held until the connection closes.
    fn admit(&self, client: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max_connections {
            return Err(Refusal::Full);
        }
        let per_client = self.limits.max_connections_per_client;
        let mine = open.by_client.entry(client).or_default();
        if per_client != 0 && *mine >= per_client {
            return Err(Refusal::ClientFull);
        }
        *mine += 1;
        open.total += 1;
        self.metrics.connections_open(open.total);
        Ok(Slot {
            counter: self.clone(),
            client,
        })
    }
}

/// One open connection's place in the [`Counter`].
#[derive(Debug)]
struct Slot {
    counter: Counter,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
        self.counter.metrics.connections_open(open.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(max: usize, per_client: usize) -> Counter {
        let limits = ConnectionLimits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..ConnectionLimits::default()
        };
        Counter::new(limits, Arc::new(Metrics::new()))
    }

    #[test]
    fn a_client_at_its_cap_is_refused_while_others_still_get_in() {
        let counter = counter(10, 2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let held = [counter.admit(a).unwrap(), counter.admit(a).unwrap()];
        assert_eq!(counter.admit(a).unwrap_err(), Refusal::ClientFull);
        let other = counter.admit(b).unwrap();
        drop(held);
        assert!(
            counter.admit(a).is_ok(),
            "closed connections free their slots"
        );
        drop(other);
    }

    #[test]
    fn an_ipv6_network_counts_as_one_client_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_total_cap_holds_whatever_the_addresses() {
        let counter = counter(3, 0);
        let slots: Vec<Slot> = (1..=3)
            .map(|i| counter.admit(IpAddr::from([192, 0, 2, i])).unwrap())
            .collect();
        let fourth = counter.admit("192.0.2.9".parse().unwrap());
        assert_eq!(fourth.unwrap_err(), Refusal::Full);
        drop(slots);
        let open = counter.open.lock().unwrap();
        assert_eq!((open.total, open.by_client.len()), (0, 0));
    }
}
