//! `POST /event_handler`, the guide's single webhook endpoint: the intake extractor checks
//! the delivery, the guide decides, and the delivery is committed with the work it sets in
//! motion before the answer goes back. Also the middleware around it: refusals counted by
//! reason and kept for the dashboard (see [`crate::store::refused`]), and every log line of
//! a delivery tagged with its ids.

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::guide::{Ack, dispatch};
use crate::metrics::Metrics;
use crate::model::{Effect, Outcome};
use crate::store::deliveries::{self, DeliveryRecord, Recorded};
use crate::store::refused::Refusal;
use crate::store::{audit, now_ms, waits};
use crate::web::AppState;
use crate::web::refusal_summary;
use crate::webhook::events::Event;
use crate::webhook::intake::{Delivery, Rejected, is_kept_header};

/// `POST /event_handler`: the guide's single webhook endpoint. The delivery and the work it
/// sets in motion are committed before the answer goes back.
pub(super) async fn event_handler(State(state): State<AppState>, delivery: Delivery) -> Response {
    let (ack, mut effect) = dispatch(
        &delivery,
        &state.environments,
        state.own_app.as_deref(),
        &state.commands.prefix,
    );
    if let Effect::Deploy(job) | Effect::AwaitApproval(job, _) = &mut effect {
        job.log_url = state.links.url(job.id);
    }
    // A person's deployment is an operator's action: its audit line goes with it.
    let audited = match (&delivery.event, &effect) {
        (Event::Deployment(event), Effect::Deploy(job) | Effect::AwaitApproval(job, _)) => {
            crate::guide::process_deployment::audited(event, job, now_ms())
        }
        _ => None,
    };
    let event_label = Metrics::event_label(&delivery.event_name);
    let record = DeliveryRecord {
        hook_id: delivery.hook_id.map_or(0, |h| h.get()),
        delivery_id: delivery.delivery_id.map_or_else(
            || format!("local-{}", uuid::Uuid::new_v4()),
            |d| d.to_string(),
        ),
        event: delivery.event_name,
        action: delivery.event.action().map(str::to_owned),
        repository: delivery.event.repository().map(str::to_owned),
        received_at: now_ms(),
        outcome: ack.outcome,
        message: ack.message.clone(),
        headers: serde_json::to_string(&delivery.headers).ok(),
    };
    // Which workers have new work: the outbox, the deployer, the gate's clock.
    let wake = match &effect {
        Effect::None => (false, false, false),
        Effect::CreateDeployment(_) => (true, false, true),
        Effect::Refuse(..) | Effect::Checks(_) => (true, false, false),
        Effect::Deploy(_) => (true, true, false),
        // The clock ends a wait for approval at its deadline.
        Effect::AwaitApproval(..) => (true, false, true),
        Effect::Promote(_) => (false, false, true),
        // The command worker has its own wake-up, below.
        Effect::Command(_) => (false, false, false),
        Effect::DeployTag(_) => (true, false, false),
        // Creations and destroys to queue, waits for checks to time.
        Effect::Preview(..) => (true, false, true),
    };
    let command = matches!(effect, Effect::Command(_));
    let delivery_id = record.delivery_id.clone();
    let poll_ms = i64::try_from(state.checks_poll.as_millis()).unwrap_or(i64::MAX / 2);
    let environments = state.environments.clone();
    let recorded = state
        .0
        .store
        .write(move |c| {
            let hold = |name: &str| crate::config::hold_of(&environments, name, record.received_at);
            let recorded = deliveries::record_with_holds(c, &record, &effect, poll_ms, hold)?;
            // Once: a redelivery records nothing new.
            if let (Recorded::New { .. }, Some(entry)) = (&recorded, &audited) {
                audit::record(c, entry)?;
            }
            Ok(recorded)
        })
        .await;
    let ack = match recorded {
        Ok(Recorded::New {
            ended,
            skipped,
            queued,
        }) => {
            for wait in &ended {
                state.metrics.wait_ended(wait.kind, wait.outcome);
            }
            let mut ack = ack;
            if let Some(queued) = queued {
                // Not "deploying": what holds it, as the delivery's record says.
                ack.message = queued;
            }
            if let Some(summary) = waits::summary(&ended) {
                ack.message = format!("{}; {summary}", ack.message);
            }
            for why in skipped {
                ack.message = format!("{}; {why}", ack.message);
            }
            if wake.0 {
                state.outbox.wake();
            }
            if wake.1 {
                state.deployer.wake();
            }
            if wake.2 {
                state.gate.wake();
            }
            if command {
                state.command_wake.notify_one();
            }
            ack
        }
        Ok(Recorded::DuplicateDelivery) => Ack::new(
            Outcome::Duplicate,
            format!("duplicate delivery {delivery_id}: already received, nothing done"),
        ),
        Ok(Recorded::AlreadyDone(message)) => Ack::new(Outcome::Ignored, message),
        Ok(Recorded::Skipped(message)) => {
            // A deployment skipped has its `inactive` status to send.
            state.outbox.wake();
            Ack::new(Outcome::Skipped, message)
        }
        Err(err) => {
            // Not acknowledged, so GitHub shows the delivery as failed and it can be
            // redelivered once the database is back.
            tracing::error!("could not record the delivery: {err}");
            let body = serde_json::json!({
                "error": "deployhook could not record this delivery; redeliver it later"
            });
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    };
    state.metrics.delivery(event_label, ack.outcome.as_str());
    // Deliveries that set work in motion are worth a line; the rest (every pull request
    // opened or pushed to, on an organisation hook) would drown it, and are in the database.
    // The answer quotes the payload (environment names, branches…): a quoted field, so that
    // it cannot pass for other fields.
    let (outcome, answer) = (ack.outcome.as_str(), ack.message.as_str());
    if ack.outcome == Outcome::Accepted {
        tracing::info!(outcome, answer, "delivery answered");
    } else {
        tracing::debug!(outcome, answer, "delivery answered");
    }
    (ack.status, Json(ack)).into_response()
}

/// Counts deliveries refused by intake, by the reason it put on the response, logs them
/// boundedly (see [`refusal_summary`]), and hands them to be kept for the dashboard — or
/// counts them dropped, when the queue to the database is full: a flood of bad requests
/// never waits on the database, nor fills the log.
pub(super) async fn count_rejections(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // Taken before the request is consumed; cheap (shared bytes), and turned into text only
    // for a refusal.
    let client = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_canonical());
    let headers: axum::http::HeaderMap = request
        .headers()
        .iter()
        .filter(|(name, _)| is_kept_header(name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let response = next.run(request).await;
    if let Some(Rejected(reason, message)) = response.extensions().get::<Rejected>() {
        state.metrics.rejected(reason);
        state.refusal_lines.refused(&refusal_summary::Refusal {
            reason,
            status: response.status().as_u16(),
            message,
            client,
        });
        let refusal = refusal(response.status(), reason, message, client, &headers);
        if !state.refusals.record(refusal) {
            state.metrics.refusal_unrecorded();
        }
    }
    response
}

/// A refusal as kept: its answer, who sent it, and GitHub's headers as sent.
fn refusal(
    status: StatusCode,
    reason: &str,
    message: &str,
    client: Option<std::net::IpAddr>,
    headers: &axum::http::HeaderMap,
) -> Refusal {
    let kept = crate::webhook::intake::kept_headers(headers);
    let named = |name: &str| kept.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    Refusal {
        received_at: now_ms(),
        status: status.as_u16(),
        reason: reason.to_owned(),
        message: message.chars().take(500).collect(),
        client: client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        event: named("x-github-event"),
        delivery_id: named("x-github-delivery"),
        hook_id: named("x-github-hook-id"),
        headers: serde_json::to_string(&kept).unwrap_or_default(),
    }
}

/// Attaches the delivery's ids and event to every log line written while handling it,
/// background work included (it runs in this span too). They are what the sender says,
/// signed or not, so they are recorded as strings: quoted and escaped in the text log
/// (`event="x\" hook=1}"`), JSON strings in the JSON log; a header cannot forge a field.
pub(super) async fn delivery_span(request: Request, next: Next) -> Response {
    let span = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                // Bounded and printable only: these reach logs before they are validated.
                .map(|v| {
                    v.chars()
                        .take(64)
                        .filter(|c| !c.is_control())
                        .collect::<String>()
                })
                .unwrap_or_default()
        };
        tracing::info_span!(
            "delivery",
            delivery = header("x-github-delivery"),
            hook = header("x-github-hook-id"),
            event = header("x-github-event"),
        )
    };
    next.run(request).instrument(span).await
}
