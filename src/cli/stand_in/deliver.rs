//! The stand-in's webhook deliveries: what GitHub sends a repository's webhook after a
//! deployment or a status is created — the JSON body, `X-GitHub-Event`, a fresh
//! `X-GitHub-Delivery`, and `X-Hub-Signature-256` over the exact bytes — posted a moment
//! after the answer, one at a time in the order they were made (a `deployment_status`
//! never overtakes its `deployment`), each tried again a few times while the server is not
//! up yet. Each attempt prints one line.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

use crate::cli::terminal::outln;
use crate::webhook::signature;

/// How long after its answer GitHub's delivery comes, give or take: the server has
/// answered the create before the event arrives.
const MOMENT: Duration = Duration::from_millis(200);
/// Attempts per delivery; waits between them double from [`FIRST_WAIT`] (0.5 + 1 + 2 + 4 +
/// 8 s: a server starting up has 15 s to begin listening).
const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// Bound on one attempt; a healthy server answers in milliseconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries waiting at most; past it a new one is dropped, and said.
const QUEUE: usize = 1_000;
/// The hook the deliveries come from, as `X-GitHub-Hook-ID` names it.
const HOOK_ID: &str = "1";

/// One webhook to deliver.
#[derive(Debug)]
pub struct Delivery {
    /// `deployment` or `deployment_status`.
    pub event: &'static str,
    /// What it is about, for the printed line: `deployment 3`, `status success of deployment 3`.
    pub about: String,
    pub body: serde_json::Value,
}

/// Hands deliveries to the one task that sends them, in order.
#[derive(Debug, Clone)]
pub struct Deliverer {
    queue: mpsc::Sender<Delivery>,
}

impl Deliverer {
    /// Starts the sending task: deliveries go to `target`, signed with `secret` if any.
    pub fn start(target: String, secret: Option<SecretString>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "GitHub-Hookshot/deployhook-stand-in-",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(ATTEMPT_TIMEOUT)
            .build()?;
        let (queue, mut deliveries) = mpsc::channel::<Delivery>(QUEUE);
        tokio::spawn(async move {
            while let Some(delivery) = deliveries.recv().await {
                tokio::time::sleep(MOMENT).await;
                deliver(&client, &target, secret.as_ref(), delivery).await;
            }
        });
        Ok(Self { queue })
    }

    /// Queues `delivery` behind those before it.
    pub fn send(&self, delivery: Delivery) {
        if let Err(err) = self.queue.try_send(delivery) {
            let about = match &err {
                mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => {
                    d.about.clone()
                }
            };
            outln!("stand-in: {about}: webhook dropped ({QUEUE} deliveries already wait)");
        }
    }
}

/// Posts one delivery, trying again while the server cannot be reached or fails (5xx).
async fn deliver(
    client: &reqwest::Client,
    target: &str,
    secret: Option<&SecretString>,
    delivery: Delivery,
) {
    let body = delivery.body.to_string().into_bytes();
    let id = uuid::Uuid::new_v4().to_string();
    let repository_id = delivery.body["repository"]["id"].to_string();
    let mut wait = FIRST_WAIT;
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .post(target)
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", delivery.event)
            .header("X-GitHub-Delivery", &id)
            .header("X-GitHub-Hook-ID", HOOK_ID)
            .header("X-GitHub-Hook-Installation-Target-Type", "repository")
            .header("X-GitHub-Hook-Installation-Target-ID", &repository_id);
        if let Some(secret) = secret {
            request = request.header(
                "X-Hub-Signature-256",
                signature::sign(secret.expose_secret().as_bytes(), &body),
            );
        }
        let what = format!("{} webhook ({})", delivery.event, delivery.about);
        let retry = match request.body(body.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                let answer = response.text().await.unwrap_or_default();
                let answer = crate::model::text::description(answer.trim());
                outln!("stand-in: → {what} delivered to {target}: {status} {answer}");
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    outln!(
                        "stand-in:   (the server refused the signature: give the stand-in the \
                         server's GITHUB_WEBHOOK_SECRET, or --secret)"
                    );
                }
                status.is_server_error()
            }
            Err(err) => {
                let cause = crate::github::error::cause(&err);
                outln!("stand-in: → {what} not delivered to {target}: {cause}");
                true
            }
        };
        if !retry {
            return;
        }
        if attempt == ATTEMPTS {
            outln!("stand-in:   gave up after {ATTEMPTS} attempts (delivery {id})");
            return;
        }
        outln!(
            "stand-in:   trying again in {} (attempt {} of {ATTEMPTS})",
            humantime::format_duration(wait),
            attempt + 1
        );
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}
