//! Notifications, sent: the [`Notifier`] knows the receivers (`[[notify]]`), says which of
//! them an event is for, and sends one message to one receiver — a Slack incoming webhook
//! or a generic webhook ([`message`]) — in one attempt with short timeouts. Queuing,
//! retrying and giving up are the outbox's ([`crate::github::outbox_worker`]); errors say
//! whether a retry can help ([`NotifyError`]). Nothing here can delay or fail a deploy:
//! deploys only queue events, in the store.
//!
//! May use: `config`, `webhook` (the signature), `model`.

pub mod error;
pub mod message;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;

use crate::config::{Config, NotifyConfig, NotifyKind};
use crate::model::Notification;
use crate::webhook::signature::sign;

pub use error::NotifyError;

/// Bound on connecting to a receiver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one attempt, connection to last byte of the answer. A chat webhook answers in
/// milliseconds; one that takes longer is retried later rather than waited for.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The header carrying the generic webhook's signature.
pub const SIGNATURE_HEADER: &str = "X-Deployhook-Signature-256";
/// The header naming the generic webhook's event.
pub const EVENT_HEADER: &str = "X-Deployhook-Event";
/// The header carrying an event's delivery id: the same for every attempt, so that a
/// receiver can drop a message it already has.
pub const DELIVERY_HEADER: &str = "X-Deployhook-Delivery";

/// Sends notifications. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    http: reqwest::Client,
    receivers: Arc<[NotifyConfig]>,
    /// GitHub's web address, for links to commits and pull requests.
    github_web: String,
}

impl Notifier {
    /// The receivers of `config.notify`, linking to `config.github`'s web address.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Self::new(&config.notify, config.github.web_url())
    }

    pub fn new(receivers: &[NotifyConfig], github_web: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("deployhook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(SEND_TIMEOUT)
            // A receiver's URL is configured: a redirect is a mistake to fix, not to follow
            // (with the body, and perhaps to another host).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            receivers: receivers.into(),
            github_web: github_web.trim_end_matches('/').to_owned(),
        })
    }

    /// The receivers `event` is for (their [`NotifyConfig::receiver`] ids), each once.
    pub fn receivers_for(&self, event: &Notification) -> Vec<String> {
        let mut chosen: Vec<String> = Vec::new();
        for receiver in self.receivers.iter().filter(|r| r.wants(event)) {
            let id = receiver.receiver();
            if !chosen.contains(&id) {
                chosen.push(id);
            }
        }
        chosen
    }

    /// One attempt at sending `event` to `receiver`. `delivery` identifies the event
    /// across attempts.
    pub async fn send(
        &self,
        receiver: &str,
        delivery: &str,
        event: &Notification,
    ) -> Result<(), NotifyError> {
        let Some(config) = self.receivers.iter().find(|r| r.receiver() == receiver) else {
            return Err(NotifyError::Unconfigured);
        };
        let body = match config.kind {
            NotifyKind::Slack => message::slack_body(event, &self.github_web).to_string(),
            NotifyKind::Webhook => {
                serde_json::to_string(&message::WebhookBody::new(event, &self.github_web))
                    .map_err(|e| NotifyError::Transport(e.to_string()))?
            }
        };
        let mut request = self
            .http
            .post(config.url.expose_secret())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if config.kind == NotifyKind::Webhook {
            request = request
                .header(EVENT_HEADER, event.event.as_str())
                .header(DELIVERY_HEADER, delivery);
            if let Some(secret) = &config.secret {
                let signature = sign(secret.expose_secret().as_bytes(), body.as_bytes());
                request = request.header(SIGNATURE_HEADER, signature);
            }
        }
        let response = request.body(body).send().await.map_err(NotifyError::from)?;
        error::checked(response).await
    }

    /// How a receiver is named in logs and on the dashboard: `slack SLACK_WEBHOOK_URL`.
    pub fn describe(receiver: &str) -> String {
        receiver.replacen(':', " ", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Environment, NotificationKind};

    #[test]
    fn an_event_goes_to_each_receiver_that_chose_it_once() {
        let production = Environment::parse("production").unwrap();
        let staging = Environment::parse("staging").unwrap();
        let failures = NotifyConfig {
            events: vec![NotificationKind::Locked],
            environments: Some(vec![production.clone()]),
            ..NotifyConfig::new(NotifyKind::Slack, "OPS", "https://chat.example/a")
        };
        let everything = NotifyConfig::new(NotifyKind::Slack, "OPS", "https://chat.example/a");
        let audit = NotifyConfig {
            environments: Some(vec![staging.clone()]),
            ..NotifyConfig::new(NotifyKind::Webhook, "AUDIT", "https://audit.example/")
        };
        let notifier =
            Notifier::new(&[failures, everything, audit], "https://github.com".into()).unwrap();
        let lock = Notification::locked(&production, "alice", "why", None, 0);
        assert_eq!(notifier.receivers_for(&lock), ["slack:OPS"]);
        let lock = Notification::locked(&staging, "alice", "why", None, 0);
        assert_eq!(
            notifier.receivers_for(&lock),
            ["slack:OPS", "webhook:AUDIT"]
        );
        let unlock = Notification::unlocked(&production, "alice", 0);
        assert_eq!(notifier.receivers_for(&unlock), ["slack:OPS"]);
        assert!(!format!("{notifier:?}").contains("chat.example"));
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_retried_and_its_url_never_shown() {
        // Port 1 on the loopback: nothing listens, the connection is refused at once.
        let url = "http://127.0.0.1:1/services/T0/B0/credential";
        let notifier = Notifier::new(
            &[NotifyConfig::new(NotifyKind::Slack, "CHAT_URL", url)],
            "https://github.com".into(),
        )
        .unwrap();
        let production = Environment::parse("production").unwrap();
        let lock = Notification::locked(&production, "alice", "why", None, 0);
        let err = notifier
            .send("slack:CHAT_URL", "d", &lock)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("credential"), "{shown}");
        let err = notifier.send("slack:GONE", "d", &lock).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }
}
