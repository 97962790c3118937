//! Connections, before any route sees them: the accept loop that faces the internet. Every
//! connection gets a deadline for its request headers, which also closes it once it has
//! sat idle that long after a response (hyper starts the same timer then); the number of
//! open connections is capped, in all and per client address, so that no client can take
//! the file descriptors and memory that GitHub's deliveries need. At the total cap a new
//! connection takes the place of an idle one (see [`super::connections`]); one past a cap
//! with none idle is answered `503` at once and closed, and the others never notice it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::connections::{Answering, Connections, Refusal, Tracker};
use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
use crate::model::ClientKey;

/// After an accept error (out of file descriptors, say), how long to wait before accepting
/// again: retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often at most a refused or shed connection is logged; the metrics count every one.
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
    let open = Connections::new(limits, metrics.clone());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut refusals = Notices::default();
    let mut sheddings = Notices::default();
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
        let slot = match open.admit(ClientKey::of(peer.ip())) {
            Ok((slot, shed)) => {
                if let Some(shed) = shed {
                    sheddings.log(
                        shed,
                        "closing idle connections to make room (max_connections)",
                    );
                }
                slot
            }
            Err(refusal) => {
                metrics.connection_refused(refusal.reason());
                refusals.log(ClientKey::of(peer.ip()), refusal.notice());
                refuse(&stream, refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tracker = slot.tracker();
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            serve_request(router.clone(), &tracker, peer, request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            tokio::select! {
                ended = connection => if let Err(err) = ended {
                    // A client that went away or was too slow: routine on the internet.
                    tracing::debug!(%peer, "connection ended: {err}");
                },
                () = slot.shed.cancelled() => {
                    tracing::debug!(%peer, "idle connection closed to make room for another");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
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

/// Serves one request of a connection, marked busy from its headers to its answer's last
/// byte so that it is never shed meanwhile.
fn serve_request(
    router: Router,
    tracker: &Tracker,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> impl Future<Output = Result<Response, Infallible>> + use<> {
    let busy = tracker.busy();
    async move {
        let Some(busy) = busy else {
            // Shed just as its request came: the connection is closing.
            return Ok(closing());
        };
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router.oneshot(request).await?;
        Ok(response.map(|body| axum::body::Body::new(Answering::new(body, busy))))
    }
}

/// The answer to a request that came on a connection just shed.
fn closing() -> Response {
    use axum::http::{StatusCode, header};
    let headers = [(header::CONNECTION, "close"), (header::RETRY_AFTER, "1")];
    let message = "deployhook has too many open connections; try again\n";
    (StatusCode::SERVICE_UNAVAILABLE, headers, message).into_response()
}

/// Logs refused or shed connections, at most once per [`REFUSAL_LOG_INTERVAL`], so that a
/// flood of them cannot flood the log too.
#[derive(Debug, Default)]
struct Notices {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Notices {
    fn log(&mut self, client: ClientKey, what: &str) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            %client,
            count = self.unlogged,
            "{what}: {} since the last such line",
            self.unlogged
        );
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}
