//! The server faces the internet: slow, idle and too many connections must not keep a
//! signed delivery from being answered promptly, and must not stay open for ever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use deployhook::config::ConnectionLimits;
use deployhook::webhook::signature::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::helpers::{SECRET, TestApp, fixture, spawn_app_with};

/// What a GitHub delivery may take here at the most, whatever the other clients do.
const PROMPT: Duration = Duration::from_secs(1);

fn addr(app: &TestApp) -> SocketAddr {
    app.url.trim_start_matches("http://").parse().unwrap()
}

/// Connects to the server from `source` (any address of the loopback range).
async fn connect_from(app: &TestApp, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr(app)).await.unwrap()
}

/// Sends `head`, then `trickle` one byte a second for `seconds` (stopping early if the
/// server closes the connection): a slow client.
fn slow_client(
    app: &TestApp,
    head: String,
    trickle: u8,
    seconds: u64,
) -> impl Future<Output = ()> + Send + 'static {
    let addr = addr(app);
    async move {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return;
        };
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(&[trickle]).await.is_err() {
                return;
            }
        }
    }
}

/// A signed `ping`, timed.
async fn timed_ping(app: &TestApp) -> Duration {
    let started = Instant::now();
    let response = app.post_webhook("ping", &fixture("ping.json")).await;
    assert_eq!(response.status(), 200);
    started.elapsed()
}

/// Whether the server closed `stream` within `within` (it reads EOF, or a reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // a response; keep reading until the close
        }
    }
}

/// Reads what the server sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut text)).await;
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn signed_deliveries_stay_prompt_while_slow_and_idle_clients_hold_connections() {
    let app = spawn_app_with(|config, _| {
        // One address plays every client here, so the per-client cap is lifted: this is
        // about deadlines and the body budget, not that cap.
        config.connections.max_connections_per_client = 0;
    })
    .await;
    let mut attackers = JoinSet::new();
    for _ in 0..50 {
        // Declares GitHub's largest body, signs it wrongly, then sends a byte a second.
        let head = "POST /event_handler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    X-GitHub-Event: ping\r\nX-Hub-Signature-256: sha256=00\r\n\
                    Content-Length: 26214400\r\n\r\n{"
            .to_owned();
        attackers.spawn(slow_client(&app, head, b' ', 15));
        // Headers a byte a second, never finished.
        attackers.spawn(slow_client(
            &app,
            "POST /event_handler HTTP/1.1\r\n".into(),
            b'X',
            15,
        ));
        // Connects and says nothing.
        attackers.spawn(idle_client(&app));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..6 {
        slowest = slowest.max(timed_ping(&app).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        slowest < PROMPT,
        "a signed ping took {slowest:?} beside 150 slow and idle connections"
    );
    attackers.abort_all();
}

/// Connects and says nothing, for 15 s or until the server closes the connection.
fn idle_client(app: &TestApp) -> impl Future<Output = ()> + Send + 'static {
    let addr = addr(app);
    async move {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let _ = closed_within(&mut stream, Duration::from_secs(15)).await;
        }
    }
}

#[tokio::test]
async fn idle_connections_and_unfinished_headers_are_closed_after_the_header_timeout() {
    let app = spawn_app_with(|config, _| {
        config.connections.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut idle = TcpStream::connect(addr(&app)).await.unwrap();
    let mut unfinished = TcpStream::connect(addr(&app)).await.unwrap();
    unfinished
        .write_all(b"POST /event_handler HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A connection that made a request and then sits idle.
    let mut after_request = TcpStream::connect(addr(&app)).await.unwrap();
    after_request
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for (what, stream) in [
        ("an idle connection", &mut idle),
        ("a connection whose headers never end", &mut unfinished),
        (
            "a kept-alive connection after its request",
            &mut after_request,
        ),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "{what} was still open 5 s after a 1 s header timeout"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_when_none_is_idle_and_the_others_go_on() {
    let app = spawn_app_with(|config, _| {
        config.connections = ConnectionLimits {
            max_connections: 10,
            max_connections_per_client: 0,
            header_timeout: Duration::from_secs(30),
            ..ConnectionLimits::default()
        };
    })
    .await;
    // Ten signed deliveries with all but the last byte of their bodies sent: busy, so none
    // is closed to make room.
    let body = fixture("ping.json");
    let head = format!(
        "POST /event_handler HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: ping\r\n\
         X-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(SECRET.as_bytes(), &body),
        body.len()
    );
    let mut busy = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..body.len() - 1]).await.unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(addr(&app)).await.unwrap();
    let answer = read_to_close(&mut refused).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("too many open connections"),
        "{answer:?}"
    );
    // The deliveries in flight go on.
    for stream in &mut busy {
        stream.write_all(&body[body.len() - 1..]).await.unwrap();
        let answer = read_to_close(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    drop(busy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = app.get_text(&format!("{}/metrics", app.url)).await;
    assert!(
        metrics.contains("deployhook_connections_refused_total{reason=\"max_connections\"} 1")
            && metrics.contains("deployhook_connections_shed_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_address_at_its_cap_is_refused_while_another_address_gets_in() {
    let app = spawn_app_with(|config, _| {
        config.connections.max_connections_per_client = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&app, "127.0.0.7").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect_from(&app, "127.0.0.7").await;
    let answer = read_to_close(&mut fourth).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("from your address"),
        "{answer:?}"
    );
    let mut other = connect_from(&app, "127.0.0.8").await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut other).await.starts_with("HTTP/1.1 200"));
}
