//! Webhook intake: the one extractor every delivery passes before a handler runs. It bounds
//! the body, checks the content type, verifies the signature over the exact bytes received,
//! reads GitHub's headers and parses the payload into an [`Event`]. Every rejection is an
//! [`IntakeError`] whose response says what was wrong and how to fix it. The body's bytes
//! are taken from the [`BodyBudget`] as they arrive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::model::{ClientKey, DeliveryId, HookId};
use crate::webhook::budget::{BodyBudget, BodyLimits, Reservation};
use crate::webhook::events::Event;
use crate::webhook::signature::{SignatureError, WebhookSecrets};

/// GitHub caps webhook payloads at 25 MiB; nothing larger can be a real delivery.
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;

/// The longest event name accepted; GitHub's longest is about 40 characters.
const MAX_EVENT_NAME: usize = 64;

/// Bound on reading one body, from its first byte to its last: GitHub itself gives up on an
/// answer after 10 s, and a sender trickling bytes must not hold its connection longer.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What intake needs from the server's state.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// `None`: signatures are not checked (`--insecure-skip-signature`).
    secrets: Option<WebhookSecrets>,
    /// What the bodies being read may hold: unauthenticated senders could otherwise make
    /// the server buffer any number of 25 MiB bodies before their signatures are checked.
    body_budget: Arc<BodyBudget>,
}

impl IntakeConfig {
    pub fn new(secrets: Option<WebhookSecrets>, body_limits: BodyLimits) -> Self {
        Self {
            secrets,
            body_budget: BodyBudget::new(body_limits),
        }
    }
}

/// A verified, parsed delivery. Handlers never see its raw bytes.
#[derive(Debug)]
pub struct Delivery {
    pub event_name: String,
    pub delivery_id: Option<DeliveryId>,
    pub hook_id: Option<HookId>,
    pub event: Event,
    /// GitHub's headers worth showing on the delivery's page (see [`kept_headers`]).
    pub headers: Vec<(String, String)>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(
        "unsupported Content-Type {0:?}: send application/json, or \
         application/x-www-form-urlencoded with the JSON in the `payload` field"
    )]
    UnsupportedContentType(String),
    #[error("missing X-GitHub-Event header: say which event this payload is")]
    MissingEvent,
    #[error("invalid {header} header: {reason}")]
    InvalidHeader {
        header: &'static str,
        reason: String,
    },
    #[error(
        "missing X-Hub-Signature-256 header: set a secret on the GitHub webhook, \
         the same one as GITHUB_WEBHOOK_SECRET"
    )]
    MissingSignature,
    #[error(transparent)]
    BadSignature(#[from] SignatureError),
    #[error("body larger than GitHub's 25 MiB webhook limit")]
    TooLarge,
    #[error("body larger than the {0} bytes this server reads for one client at once")]
    OverBudget(usize),
    #[error("the body did not arrive within 10 seconds")]
    BodyTimeout,
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("form body has no `payload` field holding the JSON")]
    MissingPayloadField,
    #[error("malformed JSON: {0}")]
    MalformedJson(serde_json::Error),
    #[error("the {event} payload lacks what deployhook reads: {source}")]
    UnexpectedShape {
        event: String,
        source: serde_json::Error,
    },
}

/// Put on a refusal's response, so the server can count refusals by reason (the first
/// field) and record them with what the client was told (the second).
#[derive(Debug, Clone)]
pub struct Rejected(pub &'static str, pub String);

/// The longest header value kept for a delivery's page; the rest is cut.
const MAX_KEPT_VALUE: usize = 200;
/// Headers kept at most: GitHub sends about eight worth keeping.
const MAX_KEPT_HEADERS: usize = 16;

/// Whether header `name` (lowercase) is kept for a delivery's page: GitHub's own
/// (`X-GitHub-*`) and the few that say what was sent. Never a signature (`X-Hub-Signature*`
/// is not `X-GitHub-*`), a cookie or an authorization.
pub fn is_kept_header(name: &str) -> bool {
    name.starts_with("x-github-")
        || matches!(name, "user-agent" | "content-type" | "content-length")
}

/// The headers of `headers` kept for a delivery's page (see [`is_kept_header`]), each value
/// bounded and stripped of control characters: they come from anyone until the signature is
/// checked.
pub fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| is_kept_header(name.as_str()))
        .take(MAX_KEPT_HEADERS)
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = value
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_KEPT_VALUE)
                .collect();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

impl IntakeError {
    /// A short, fixed name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedContentType(_) => "content_type",
            Self::MissingEvent => "missing_event",
            Self::InvalidHeader { .. } => "invalid_header",
            Self::MissingSignature => "missing_signature",
            Self::BadSignature(_) => "bad_signature",
            Self::TooLarge => "too_large",
            Self::OverBudget(_) => "over_budget",
            Self::BodyTimeout => "body_timeout",
            Self::BodyRead(_) => "body_read",
            Self::MissingPayloadField => "missing_payload_field",
            Self::MalformedJson(_) => "malformed_json",
            Self::UnexpectedShape { .. } => "unexpected_shape",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MissingSignature | Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::TooLarge | Self::OverBudget(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MissingEvent
            | Self::InvalidHeader { .. }
            | Self::BodyRead(_)
            | Self::MissingPayloadField
            | Self::MalformedJson(_)
            | Self::UnexpectedShape { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = self.to_string();
        // Logged by the server, boundedly (a flood of refusals must not fill the log): it
        // reads the reason and message from the response's `Rejected`.
        let mut response =
            (status, axum::Json(serde_json::json!({ "error": &error }))).into_response();
        response
            .extensions_mut()
            .insert(Rejected(self.reason(), error));
        response
    }
}

/// The two encodings GitHub can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
}

impl<S> FromRequest<S> for Delivery
where
    S: Send + Sync,
    Arc<IntakeConfig>: FromRef<S>,
{
    type Rejection = IntakeError;

    async fn from_request(request: Request, state: &S) -> Result<Self, IntakeError> {
        let config = Arc::<IntakeConfig>::from_ref(state);
        let headers = request.headers();
        if content_length(headers).is_some_and(|len| len > MAX_WEBHOOK_BODY) {
            return Err(IntakeError::TooLarge);
        }
        let encoding = encoding(headers)?;
        let event_name = event_name(headers)?;
        let delivery_id = parse_header(headers, "X-GitHub-Delivery", DeliveryId::parse)?;
        let hook_id = parse_header(headers, "X-GitHub-Hook-ID", str::parse::<HookId>)?;
        let signature = header(headers, "x-hub-signature-256")?;
        let kept = kept_headers(headers);
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| ClientKey::of(peer.ip()));

        let reservation = config.body_budget.reserve(client);
        let (body, _reserved) = read_body(request.into_body(), reservation).await?;
        if let Some(secrets) = &config.secrets {
            let signature = signature.ok_or(IntakeError::MissingSignature)?;
            secrets.verify(&body, &signature)?;
        }
        let event = match encoding {
            Encoding::Json => parse_event(&event_name, &body)?,
            Encoding::Form => parse_event(&event_name, form_payload(&body)?.as_bytes())?,
        };
        Ok(Self {
            event_name,
            delivery_id,
            hook_id,
            event,
            headers: kept,
        })
    }
}

/// Reads the whole body within [`BODY_READ_TIMEOUT`], growing `reserved` for its bytes as
/// they arrive; it holds them until dropped.
async fn read_body(
    body: axum::body::Body,
    mut reserved: Reservation,
) -> Result<(Vec<u8>, Reservation), IntakeError> {
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    let mut body = body;
    let mut bytes = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| IntakeError::BodyTimeout)?;
        let Some(frame) = frame else {
            return Ok((bytes, reserved));
        };
        let Ok(data) = frame.map_err(body_error)?.into_data() else {
            continue; // trailers
        };
        let len = bytes.len() + data.len();
        if len > MAX_WEBHOOK_BODY {
            return Err(IntakeError::TooLarge);
        }
        // The buffer grows by doubling: room is taken for what it will hold, not only for
        // the bytes in it, so the budget bounds the memory really used.
        let capacity = if len > bytes.capacity() {
            len.max(bytes.capacity() * 2).min(MAX_WEBHOOK_BODY)
        } else {
            bytes.capacity()
        };
        tokio::time::timeout_at(deadline, reserved.grow_to(capacity))
            .await
            .map_err(|_| IntakeError::BodyTimeout)?
            .map_err(|never| IntakeError::OverBudget(never.limit))?;
        bytes.reserve_exact(capacity - bytes.len());
        bytes.extend_from_slice(&data);
    }
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads `Content-Type`, ignoring parameters such as `charset`.
fn encoding(headers: &HeaderMap) -> Result<Encoding, IntakeError> {
    let value = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mime = value.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Encoding::Form)
    } else {
        Err(IntakeError::UnsupportedContentType(value))
    }
}

/// A header's value as text; `None` when absent.
fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, IntakeError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| IntakeError::InvalidHeader {
                    header: name,
                    reason: "not visible ASCII".into(),
                })
        })
        .transpose()
}

/// `X-GitHub-Event`: GitHub's event names are short snake_case words; anything else
/// (empty, 64 KB, other characters) is refused rather than recorded.
fn event_name(headers: &HeaderMap) -> Result<String, IntakeError> {
    let name = header(headers, "x-github-event")?
        .filter(|n| !n.trim().is_empty())
        .ok_or(IntakeError::MissingEvent)?;
    let valid = name.len() <= MAX_EVENT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(IntakeError::InvalidHeader {
            header: "X-GitHub-Event",
            reason: format!(
                "expected an event name of at most {MAX_EVENT_NAME} lowercase letters, digits \
                 and '_', such as pull_request"
            ),
        });
    }
    Ok(name)
}

fn parse_header<T, E: ToString>(
    headers: &HeaderMap,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, IntakeError> {
    header(headers, name)?
        .map(|v| {
            parse(&v).map_err(|e| IntakeError::InvalidHeader {
                header: name,
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn body_error(err: axum::Error) -> IntakeError {
    // `to_bytes` reports an exceeded limit as an error whose source is `LengthLimitError`.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return IntakeError::TooLarge;
        }
        source = e.source();
    }
    IntakeError::BodyRead(err.to_string())
}

/// The `payload` field of a form-encoded body.
fn form_payload(body: &[u8]) -> Result<String, IntakeError> {
    #[derive(Deserialize)]
    struct Form {
        payload: Option<String>,
    }
    let form: Form = serde_urlencoded::from_bytes(body)
        .map_err(|e| IntakeError::BodyRead(format!("malformed form body: {e}")))?;
    form.payload.ok_or(IntakeError::MissingPayloadField)
}

/// Parses the payload; a syntax error and a payload of the wrong shape are told apart,
/// both with the position serde_json reports.
fn parse_event(event: &str, json: &[u8]) -> Result<Event, IntakeError> {
    Event::parse(event, json).map_err(|source| {
        if source.is_syntax() || source.is_eof() {
            IntakeError::MalformedJson(source)
        } else {
            IntakeError::UnexpectedShape {
                event: event.to_owned(),
                source,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers_with(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn only_githubs_headers_are_kept_never_a_signature_or_a_cookie() {
        let mut headers = headers_with("application/json");
        for (name, value) in [
            ("x-github-event", "push"),
            ("x-hub-signature-256", "sha256=secret"),
            ("x-hub-signature", "sha1=secret"),
            ("authorization", "Bearer t"),
            ("cookie", "s=1"),
            ("user-agent", "GitHub-Hookshot/abc"),
        ] {
            headers.insert(
                axum::http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut names: Vec<String> = kept_headers(&headers).into_iter().map(|h| h.0).collect();
        names.sort();
        assert_eq!(names, ["content-type", "user-agent", "x-github-event"]);
    }

    #[test]
    fn json_with_a_charset_and_form_encoding_are_accepted() {
        assert_eq!(
            encoding(&headers_with("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            encoding(&headers_with("Application/JSON")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            encoding(&headers_with("application/x-www-form-urlencoded")).unwrap(),
            Encoding::Form
        );
    }

    #[test]
    fn other_content_types_are_refused_naming_the_accepted_ones() {
        let err = encoding(&headers_with("text/plain")).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let message = err.to_string();
        assert!(message.contains("application/json") && message.contains("x-www-form-urlencoded"));
        assert!(encoding(&HeaderMap::new()).is_err());
    }

    #[test]
    fn the_form_payload_field_is_url_decoded() {
        let body = b"payload=%7B%22zen%22%3A%22a+b%22%7D&other=1";
        assert_eq!(form_payload(body).unwrap(), r#"{"zen":"a b"}"#);
    }

    #[test]
    fn a_form_without_payload_is_refused() {
        let err = form_payload(b"zen=1").unwrap_err();
        assert!(matches!(err, IntakeError::MissingPayloadField));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        let err = parse_event("pull_request", b"{\n  \"action\": closed\n}").unwrap_err();
        assert!(matches!(err, IntakeError::MalformedJson(_)));
        assert!(err.to_string().contains("line 2 column 13"), "{err}");
    }

    #[test]
    fn a_well_formed_payload_of_the_wrong_shape_names_the_event_and_field() {
        let err = parse_event("pull_request", br#"{"action":"closed"}"#).unwrap_err();
        assert!(matches!(err, IntakeError::UnexpectedShape { .. }));
        let message = err.to_string();
        assert!(
            message.contains("pull_request") && message.contains("missing field"),
            "{message}"
        );
    }
}
