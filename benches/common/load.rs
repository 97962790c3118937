//! The two ways the benchmarks load a server: a closed loop (keep-alive connections, each
//! sending its next request once the last is answered: as fast as the server goes) and an
//! open loop (requests at a steady pace whatever the answers do: the pace of a webhook's
//! sender).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{Interval, MissedTickBehavior};

use super::delivery::{Delivery, send};

/// One request of a closed loop: the delivery id it was sent as, and how long its answer
/// took when it was a 2xx.
pub struct Answer {
    pub id: String,
    pub latency: Option<Duration>,
}

/// A client holding one HTTP/1 keep-alive connection: a closed loop's connection.
pub fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .expect("a client")
}

/// Sends over `connections` keep-alive connections, each one request after the other, what
/// `next(connection, n)` gives for its `n`th request, until it gives nothing. Every
/// request's answer, connection after connection.
pub async fn closed_loop<F>(url: &str, connections: usize, next: F) -> Vec<Answer>
where
    F: Fn(usize, u64) -> Option<(String, Delivery)> + Send + Sync + 'static,
{
    let next = Arc::new(next);
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (url, next) = (url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = keep_alive_client();
            let mut answers = Vec::new();
            let mut n = 0;
            while let Some((id, delivery)) = next(connection, n) {
                n += 1;
                let latency = send(&client, &url, &delivery, &id).await;
                answers.push(Answer { id, latency });
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("a connection"));
    }
    answers
}

/// One request of an open loop: when its tick sent it, and how long its answer took when
/// it was a 2xx.
pub struct Paced {
    pub at: Instant,
    pub latency: Option<Duration>,
}

/// A ticker `per_second` times a second that, after a stall, goes on at that pace rather
/// than catching up in a burst.
pub fn pace(per_second: u64) -> Interval {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Sends, one at each tick of `ticker`, what `next(n)` gives for n = 0, 1, … until it gives
/// nothing, each request on a task of its own so that a slow answer holds back none after
/// it. Every request's fate, in the order sent.
pub async fn steady(
    url: &str,
    mut ticker: Interval,
    mut next: impl FnMut(u64) -> Option<(String, Delivery)>,
) -> Vec<Paced> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    let mut n = 0;
    while let Some((id, delivery)) = next(n) {
        n += 1;
        ticker.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        let at = Instant::now();
        let task = tokio::spawn(async move { send(&client, &url, &delivery, &id).await });
        tasks.push((at, task));
    }
    let mut sent = Vec::new();
    for (at, task) in tasks {
        let latency = task.await.expect("a send");
        sent.push(Paced { at, latency });
    }
    sent
}
