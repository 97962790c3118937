//! The Insights page at `/insights`: for each environment, over the last 30 or 90 days
//! (`?days=`), the four DORA measures — deploys per day by outcome, lead time from merge to
//! success, change failure rate, time to restore — as charts drawn here, on the server, as
//! inline SVG (no script: the page's CSP allows none inline, and none is needed).
//!
//! This file has the page: its route (behind the dashboard's sign-in), the window, what each
//! environment shows. The drawing is in `charts`, the numbers and dates for people in
//! `format`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::store::insights::{self, EnvironmentInsights, Insights, percentile};
use crate::store::now_ms;
use crate::web::AppState;
use crate::web::dashboard::{render, unavailable};

mod charts;
mod format;

pub use charts::{deploys_chart, failure_rate_chart, lead_time_chart, restore_chart};
pub use format::{percent, short_duration};

/// The windows the page offers, in days; the first is the default.
pub const WINDOWS: [u32; 2] = [30, 90];
/// The page's route.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/insights", get(page))
}

#[derive(serde::Deserialize)]
struct Window {
    days: Option<String>,
}

#[derive(Template)]
#[template(path = "insights.html")]
struct InsightsPage {
    days: u32,
    windows: [u32; 2],
    environments: Vec<EnvironmentView>,
    truncated: bool,
}

/// One environment's measures, ready to show.
struct EnvironmentView {
    name: String,
    deploys: u32,
    failed: u32,
    /// `"25%"`, or `"–"` without deploys.
    failure_rate: String,
    /// The rate as a fraction with 4 decimals, for machines; empty without deploys.
    failure_rate_value: String,
    lead_count: usize,
    /// `(for people, seconds for machines)`; `("–", "")` without a value.
    lead_median: (String, String),
    lead_p90: (String, String),
    restored: usize,
    still_failing: usize,
    restore_median: (String, String),
    deploys_chart: String,
    lead_chart: String,
    failure_chart: String,
    restore_chart: String,
    /// Restores done by a failed verification's own rollback.
    automatic_restores: usize,
    verification_failed: u32,
    verification_failures: Vec<VerificationFailureView>,
}

/// A failed verification, ready to show.
struct VerificationFailureView {
    at: String,
    repository: String,
    short_sha: String,
    description: String,
}

impl EnvironmentView {
    fn new(of: &EnvironmentInsights, since: i64, until: i64) -> Self {
        let leads = of.lead_time_values();
        let restores = of.restore_times();
        let rate = of.change_failure_rate();
        Self {
            name: of.environment.clone(),
            deploys: of.deploys(),
            failed: of.failed(),
            failure_rate: rate.map_or_else(|| "–".to_owned(), percent),
            failure_rate_value: rate.map_or_else(String::new, |r| format!("{r:.4}")),
            lead_count: leads.len(),
            lead_median: shown(percentile(&leads, 50)),
            lead_p90: shown(percentile(&leads, 90)),
            restored: restores.len(),
            still_failing: of.restores.len() - restores.len(),
            restore_median: shown(percentile(&restores, 50)),
            deploys_chart: deploys_chart(&of.days),
            lead_chart: lead_time_chart(&of.lead_times, since, until),
            failure_chart: failure_rate_chart(&of.days),
            restore_chart: restore_chart(&of.restores, until),
            automatic_restores: of.automatic_restores(),
            verification_failed: of.verification_failed,
            verification_failures: of
                .verification_failures
                .iter()
                .map(|f| VerificationFailureView {
                    at: format::day_and_time(f.finished_at),
                    repository: f.repository.clone(),
                    short_sha: f.sha.chars().take(7).collect(),
                    description: f.description.clone(),
                })
                .collect(),
        }
    }
}

/// A duration for people and its seconds for a `data-` attribute; `("–", "")` for none.
fn shown(value: Option<i64>) -> (String, String) {
    value.map_or_else(
        || ("–".to_owned(), String::new()),
        |ms| (short_duration(ms), (ms / 1000).to_string()),
    )
}

async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(window): Query<Window>,
) -> Response {
    let sight = match crate::web::people::page_sight(&state, &headers).await {
        Ok(sight) => sight,
        Err(answer) => return answer,
    };
    let days = match window.days.as_deref() {
        None | Some("") => WINDOWS[0],
        Some(text) => match text.parse::<u32>() {
            Ok(days) if WINDOWS.contains(&days) => days,
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "days: 30 or 90 (the last 30 or 90 days)\n",
                )
                    .into_response();
            }
        },
    };
    let now = now_ms();
    let read = state
        .store
        .read(move |c| insights::insights_of(c, days, now, |repo| sight.can_read(repo)))
        .await;
    let insights = match read {
        Ok(insights) => insights,
        Err(err) => return unavailable(&err),
    };
    render(&InsightsPage {
        days,
        windows: WINDOWS,
        environments: environment_views(&state, &insights),
        truncated: insights.truncated,
    })
}

/// The configured environments in their order, then any others that deployed in the
/// window (an environment since removed from the configuration).
fn environment_views(state: &AppState, insights: &Insights) -> Vec<EnvironmentView> {
    let mut names: Vec<String> = state
        .environments
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    for found in &insights.environments {
        if !names.contains(&found.environment) {
            names.push(found.environment.clone());
        }
    }
    names
        .iter()
        .map(|name| EnvironmentView::new(&insights.of(name), insights.since, insights.until))
        .collect()
}

#[cfg(test)]
mod tests;
