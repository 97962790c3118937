//! Signed deliveries as GitHub sends them, built once and sent again and again, and the
//! one way a benchmark sends one and times its answer.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use deployhook::webhook::signature::sign;
use reqwest::header::HeaderValue;

use super::SECRET;

/// How long one request may take before it counts as failed: a benchmark never hangs on a
/// server that stopped answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a delivery's JSON is sent: as the body, or form-encoded in a `payload` field.
#[derive(Clone, Copy, PartialEq)]
pub enum Encoding {
    Json,
    Form,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Form => "form",
        }
    }
}

/// A signed delivery: cheap to clone (its body and signature are shared), so every request
/// of a run sends the same one.
#[derive(Clone)]
pub struct Delivery {
    event: &'static str,
    content_type: &'static str,
    body: Bytes,
    signature: HeaderValue,
}

impl Delivery {
    /// An `event` delivery of `json`, sent as JSON.
    pub fn json(event: &'static str, json: &serde_json::Value) -> Self {
        Self::signed(event, "application/json", json.to_string().into_bytes())
    }

    /// An `event` delivery of the JSON text `json`, sent with `encoding`.
    pub fn encoded(event: &'static str, json: &[u8], encoding: Encoding) -> Self {
        match encoding {
            Encoding::Json => Self::signed(event, "application/json", json.to_vec()),
            Encoding::Form => {
                let text = std::str::from_utf8(json).expect("UTF-8 JSON");
                let form = serde_urlencoded::to_string([("payload", text)]).expect("a form");
                Self::signed(
                    event,
                    "application/x-www-form-urlencoded",
                    form.into_bytes(),
                )
            }
        }
    }

    fn signed(event: &'static str, content_type: &'static str, body: Vec<u8>) -> Self {
        let signature = sign(SECRET.as_bytes(), &body);
        Self {
            event,
            content_type,
            body: Bytes::from(body),
            signature: HeaderValue::from_str(&signature).expect("a hex signature"),
        }
    }

    /// The request that delivers this as delivery `id` of hook 1 to `url`.
    pub fn post(&self, client: &reqwest::Client, url: &str, id: &str) -> reqwest::RequestBuilder {
        client
            .post(url)
            .header("Content-Type", self.content_type)
            .header("X-GitHub-Event", self.event)
            .header("X-GitHub-Delivery", id)
            .header("X-GitHub-Hook-ID", "1")
            .header("X-Hub-Signature-256", self.signature.clone())
            .body(self.body.clone())
            .timeout(REQUEST_TIMEOUT)
    }
}

/// Sends `delivery` as `id`; how long until its answer was read, if it was a 2xx.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    delivery: &Delivery,
    id: &str,
) -> Option<Duration> {
    let sent = Instant::now();
    let response = delivery.post(client, url, id).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    // The answer is read to its end, so that its connection is free for the next request.
    let _ = response.bytes().await;
    Some(sent.elapsed())
}

/// A payload from `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
