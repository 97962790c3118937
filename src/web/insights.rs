//! The Insights page at `/insights`: for each environment, over the last 30 or 90 days
//! (`?days=`), the four DORA measures — deploys per day by outcome, lead time from merge to
//! success, change failure rate, time to restore — as charts drawn here, on the server, as
//! inline SVG (no script: the page's CSP allows none inline, and none is needed).
//!
//! The chart functions are pure, from [`crate::store::insights`]'s numbers to an SVG string,
//! and put every data point in the markup twice: as `data-*` attributes for machines (the
//! tests read them) and as a `<title>` sentence for people and screen readers. They write
//! only numbers and dates they format themselves, never text from a request or a
//! repository, so nothing in them needs escaping. Behind the dashboard's sign-in.

use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::store::insights::{
    self, DAY_MS, DayCounts, EnvironmentInsights, Insights, LeadTime, Restore, percentile,
};
use crate::store::now_ms;
use crate::web::AppState;
use crate::web::dashboard::{refusal, render, unavailable};

/// The windows the page offers, in days; the first is the default.
pub const WINDOWS: [u32; 2] = [30, 90];
/// Days per bucket of the weekly charts.
const WEEK: i64 = 7;
/// Incidents the restore chart draws at most (the most recent).
const MAX_INCIDENTS: usize = 60;

/// A chart's drawing area, in SVG units; the SVG scales to its container's width.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

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
    if let Some(answer) = refusal(&state, &headers) {
        return answer;
    }
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
        .read(move |c| insights::insights(c, days, now))
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

/// `0.25` → `"25%"`; one decimal under 10%.
pub fn percent(rate: f64) -> String {
    let percent = rate * 100.0;
    if percent > 0.0 && percent < 10.0 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.0}%")
    }
}

/// A duration for people, to two units at most: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn short_duration(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// The UTC date of a Unix millisecond: `(year, month, day)` (the civil-from-days algorithm).
pub fn date(ms: i64) -> (i64, u32, u32) {
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `2026-11-30`.
pub fn iso_day(ms: i64) -> String {
    let (y, m, d) = date(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `Nov 30`, for axes.
pub fn short_day(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, m, d) = date(ms);
    format!("{} {d}", MONTHS[(m as usize).saturating_sub(1) % 12])
}

/// A week's days for an axis: `Nov 24–30`, `Oct 27–Nov 2`, or `Nov 1` for one day.
pub fn week_label(first: i64, days: usize) -> String {
    let last = first + (days.max(1) as i64 - 1) * DAY_MS;
    let (start, end) = (short_day(first), short_day(last));
    match (start == end, date(first).1 == date(last).1) {
        (true, _) => start,
        (false, true) => format!("{start}–{}", date(last).2),
        (false, false) => format!("{start}–{end}"),
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `max` (at least 1): a count axis's top.
pub fn nice_count(max: u32) -> u32 {
    let mut step = 1_u32;
    loop {
        for factor in [1, 2, 5] {
            if step.saturating_mul(factor) >= max.max(1) {
                return step.saturating_mul(factor);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The grid lines of a count axis topped at `top` (1, 2 or 5 × 10ⁿ): 0 to 5 by 1, 0 to 2
/// by 1, 0 to 10 by 5, 0 to 50 by 10…
pub fn count_ticks(top: u32) -> Vec<u32> {
    let step = match top {
        0 | 1 => 1,
        top if top.is_multiple_of(5) && power_of_ten(top / 5) => top / 5,
        top if top.is_multiple_of(2) && power_of_ten(top / 2) => top / 2,
        top => top / 2,
    };
    (0..=top / step).map(|i| i * step).collect()
}

/// Whether `n` is 1, 10, 100…
fn power_of_ten(mut n: u32) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// The smallest round duration at or above `max`: a duration axis's top, in milliseconds.
pub fn nice_duration(max: i64) -> i64 {
    const MINUTE: i64 = 60_000;
    const ROUND: [i64; 16] = [
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        20 * MINUTE,
        30 * MINUTE,
        60 * MINUTE,
        2 * 60 * MINUTE,
        4 * 60 * MINUTE,
        8 * 60 * MINUTE,
        12 * 60 * MINUTE,
        DAY_MS,
        2 * DAY_MS,
        4 * DAY_MS,
        7 * DAY_MS,
        14 * DAY_MS,
    ];
    ROUND
        .into_iter()
        .find(|&round| round >= max)
        .unwrap_or_else(|| (max + 7 * DAY_MS - 1) / (7 * DAY_MS) * 7 * DAY_MS)
}

/// The plot's height for `value` of an axis topped at `max`.
fn height(value: f64, max: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    if max <= 0.0 {
        0.0
    } else {
        (value / max * plot).clamp(0.0, plot)
    }
}

/// An `<svg>`'s opening, with its accessible name, and the horizontal grid lines with
/// their labels (`(value, label)`, value in the axis's units).
fn open_chart(out: &mut String, class: &str, label: &str, max: f64, ticks: &[(f64, String)]) {
    let _ = write!(
        out,
        r#"<svg class="chart {class}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" preserveAspectRatio="xMidYMid meet"><title>{label}</title>"#
    );
    let base = HEIGHT - BOTTOM;
    for (value, text) in ticks {
        let y = base - height(*value, max);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}"/><text class="axis y" x="{x}" y="{ty:.1}" text-anchor="end">{text}</text>"#,
            x2 = WIDTH - RIGHT,
            x = LEFT - 5.0,
            ty = y + 3.5,
        );
    }
}

/// Labels under the first, the middle and the last of `n` bars, drawn in the first `n` of
/// `slots` slots.
fn x_labels(out: &mut String, n: usize, slots: usize, label: impl Fn(usize) -> String) {
    if n == 0 {
        return;
    }
    let mut shown = vec![0, n / 2, n - 1];
    shown.dedup();
    labels_at(out, &shown, n, slots, label);
}

/// Labels under bars `shown` of `n`, drawn in the first `n` of `slots` slots: the first
/// starts at its bar's left edge, the last (in a full chart) ends at its right edge, the
/// others are centred.
fn labels_at(
    out: &mut String,
    shown: &[usize],
    n: usize,
    slots: usize,
    label: impl Fn(usize) -> String,
) {
    let slot = (WIDTH - LEFT - RIGHT) / slots.max(n) as f64;
    for &i in shown {
        let x = LEFT + slot * (i as f64 + 0.5);
        let anchor = match i {
            0 if n > 1 => "start",
            i if i == n - 1 && n > 1 && n == slots => "end",
            _ => "middle",
        };
        let x = match anchor {
            "start" => LEFT + slot * i as f64,
            "end" => LEFT + slot * (i as f64 + 1.0),
            _ => x,
        };
        let _ = write!(
            out,
            r#"<text class="axis x" x="{x:.1}" y="{y}" text-anchor="{anchor}">{text}</text>"#,
            y = HEIGHT - 6.0,
            text = label(i),
        );
    }
}

/// A bar's left edge and width in slot `i` of `n`.
fn slot(i: usize, n: usize) -> (f64, f64) {
    let slot = (WIDTH - LEFT - RIGHT) / n.max(1) as f64;
    let width = (slot * 0.72).max(1.0);
    (LEFT + slot * i as f64 + (slot - width) / 2.0, width)
}

/// Deploys per day, stacked by outcome: success at the bottom, then failure, then error.
pub fn deploys_chart(days: &[DayCounts]) -> String {
    let top = nice_count(days.iter().map(DayCounts::total).max().unwrap_or(0));
    let max = f64::from(top);
    let ticks: Vec<(f64, String)> = count_ticks(top)
        .into_iter()
        .map(|t| (f64::from(t), t.to_string()))
        .collect();
    let mut out = String::new();
    open_chart(
        &mut out,
        "deploys",
        "Deploys per day by outcome",
        max,
        &ticks,
    );
    let base = HEIGHT - BOTTOM;
    for (i, day) in days.iter().enumerate() {
        let (x, width) = slot(i, days.len());
        let _ = write!(
            out,
            r#"<g class="day" data-day="{iso}" data-success="{s}" data-failure="{f}" data-error="{e}"><title>{iso}: {total} deploys: {s} success, {f} failure, {e} error</title>"#,
            iso = iso_day(day.day),
            s = day.success,
            f = day.failure,
            e = day.error,
            total = day.total(),
        );
        let mut bottom = base;
        for (class, count) in [
            ("success", day.success),
            ("failure", day.failure),
            ("error", day.error),
        ] {
            if count == 0 {
                continue;
            }
            let h = height(f64::from(count), max);
            bottom -= h;
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{x:.1}" y="{bottom:.1}" width="{width:.1}" height="{h:.1}"/>"#
            );
        }
        out.push_str("</g>");
    }
    x_labels(&mut out, days.len(), days.len(), |i| short_day(days[i].day));
    out.push_str("</svg>");
    out
}

/// The window cut into weeks that end with its last day (the first may be shorter):
/// `(first day, days)` as indexes into the window's days.
pub fn weeks(days: usize) -> Vec<(usize, usize)> {
    let week = usize::try_from(WEEK).unwrap_or(7);
    let mut out = Vec::new();
    let mut end = days;
    while end > 0 {
        let start = end.saturating_sub(week);
        out.push((start, end - start));
        end = start;
    }
    out.reverse();
    out
}

/// Lead time per week: a bar to the median, a whisker to the 90th percentile.
pub fn lead_time_chart(lead_times: &[LeadTime], since: i64, until: i64) -> String {
    let days = usize::try_from((until - since).div_euclid(DAY_MS) + 1).unwrap_or(0);
    let weeks = weeks(days);
    let stats: Vec<(i64, usize, Option<i64>, Option<i64>)> = weeks
        .iter()
        .map(|&(first, length)| {
            let start = since + first as i64 * DAY_MS;
            let end = start + length as i64 * DAY_MS;
            let mut values: Vec<i64> = lead_times
                .iter()
                .filter(|l| l.delivered_at >= start && l.delivered_at < end)
                .map(|l| l.millis)
                .collect();
            values.sort_unstable();
            (
                start,
                values.len(),
                percentile(&values, 50),
                percentile(&values, 90),
            )
        })
        .collect();
    let top = nice_duration(stats.iter().filter_map(|s| s.3).max().unwrap_or(0).max(1));
    let max = top as f64;
    let ticks = [
        (0.0, "0".to_owned()),
        (max / 2.0, short_duration(top / 2)),
        (max, short_duration(top)),
    ];
    let mut out = String::new();
    open_chart(
        &mut out,
        "lead-time",
        "Lead time from merge to success, per week: median (bar) and 90th percentile (whisker)",
        max,
        &ticks,
    );
    let base = HEIGHT - BOTTOM;
    for (i, (start, count, median, p90)) in stats.iter().enumerate() {
        let (x, width) = slot(i, stats.len());
        let (Some(median), Some(p90)) = (median, p90) else {
            let _ = write!(
                out,
                r#"<g class="week" data-week="{iso}" data-count="0"><title>week of {iso}: no merge reached this environment</title></g>"#,
                iso = iso_day(*start),
            );
            continue;
        };
        let (h, w) = (height(*median as f64, max), height(*p90 as f64, max));
        let middle = x + width / 2.0;
        let _ = write!(
            out,
            r#"<g class="week" data-week="{iso}" data-count="{count}" data-median-seconds="{ms}" data-p90-seconds="{ps}"><title>week of {iso}: {count} changes, median {m}, 90th percentile {p}</title><rect class="median" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/><line class="p90" x1="{middle:.1}" x2="{middle:.1}" y1="{y:.1}" y2="{wy:.1}"/><line class="p90" x1="{l:.1}" x2="{r:.1}" y1="{wy:.1}" y2="{wy:.1}"/></g>"#,
            iso = iso_day(*start),
            ms = median / 1000,
            ps = p90 / 1000,
            m = short_duration(*median),
            p = short_duration(*p90),
            y = base - h,
            wy = base - w,
            l = middle - width / 4.0,
            r = middle + width / 4.0,
        );
    }
    x_labels(&mut out, stats.len(), stats.len(), |i| {
        let (first, length) = weeks[i];
        week_label(since + first as i64 * DAY_MS, length)
    });
    out.push_str("</svg>");
    out
}

/// Change failure rate per week: the share of deploys that failed or errored.
pub fn failure_rate_chart(days: &[DayCounts]) -> String {
    let weeks = weeks(days.len());
    let mut out = String::new();
    let ticks = [
        (0.0, "0%".to_owned()),
        (50.0, "50%".to_owned()),
        (100.0, "100%".to_owned()),
    ];
    open_chart(
        &mut out,
        "failure-rate",
        "Change failure rate per week: deploys that failed or errored, of all deploys",
        100.0,
        &ticks,
    );
    let base = HEIGHT - BOTTOM;
    for (i, &(first, length)) in weeks.iter().enumerate() {
        let week = &days[first..first + length];
        let deploys: u32 = week.iter().map(DayCounts::total).sum();
        let failed: u32 = week.iter().map(|d| d.failure + d.error).sum();
        let iso = iso_day(week[0].day);
        if deploys == 0 {
            let _ = write!(
                out,
                r#"<g class="week" data-week="{iso}" data-deploys="0" data-failed="0"><title>week of {iso}: no deploys</title></g>"#
            );
            continue;
        }
        let rate = f64::from(failed) / f64::from(deploys);
        let (x, width) = slot(i, weeks.len());
        let h = height(rate * 100.0, 100.0);
        let _ = write!(
            out,
            r#"<g class="week" data-week="{iso}" data-deploys="{deploys}" data-failed="{failed}" data-rate="{rate:.4}"><title>week of {iso}: {failed} of {deploys} deploys failed ({p})</title><rect class="rate" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/><rect class="track" x="{x:.1}" y="{TOP}" width="{width:.1}" height="{t:.1}"/></g>"#,
            p = percent(rate),
            y = base - h,
            t = base - TOP - h,
        );
    }
    x_labels(&mut out, weeks.len(), weeks.len(), |i| {
        let (first, length) = weeks[i];
        week_label(days[first].day, length)
    });
    out.push_str("</svg>");
    out
}

/// Time to restore, one bar per failure streak in order (the most recent
/// [`MAX_INCIDENTS`]); a streak not yet restored is drawn open, up to `now`.
pub fn restore_chart(restores: &[Restore], now: i64) -> String {
    let shown = &restores[restores.len().saturating_sub(MAX_INCIDENTS)..];
    let longest = shown
        .iter()
        .map(|r| r.restored_at.unwrap_or(now) - r.failed_at)
        .max()
        .unwrap_or(0);
    let top = nice_duration(longest.max(1));
    let max = top as f64;
    let ticks = [
        (0.0, "0".to_owned()),
        (max / 2.0, short_duration(top / 2)),
        (max, short_duration(top)),
    ];
    let mut out = String::new();
    open_chart(
        &mut out,
        "restore",
        "Time to restore: from a failed deploy to the next success, per failure",
        max,
        &ticks,
    );
    let base = HEIGHT - BOTTOM;
    // Bars no wider than a day's would be: one incident is not a wall of red.
    let slots = shown.len().max(12);
    for (i, restore) in shown.iter().enumerate() {
        let (x, width) = slot(i, slots);
        let took = restore.restored_at.unwrap_or(now) - restore.failed_at;
        let h = height(took as f64, max).max(1.5);
        let failed = humantime::format_rfc3339_seconds(std_time(restore.failed_at));
        let (class, restored, says) = match restore.restored_at {
            Some(at) => (
                "restored",
                humantime::format_rfc3339_seconds(std_time(at)).to_string(),
                format!("restored after {}", short_duration(took)),
            ),
            None => (
                "open",
                String::new(),
                format!("still failing after {}", short_duration(took)),
            ),
        };
        let _ = write!(
            out,
            r#"<g class="incident {class}" data-failed-at="{failed}" data-restored-at="{restored}" data-seconds="{s}"><title>failed {day}, {says}</title><rect class="{class}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/></g>"#,
            s = took / 1000,
            day = iso_day(restore.failed_at),
            y = base - h,
        );
    }
    // The first and the last failure's day; not the middle one, which would touch them.
    let labelled: Vec<usize> = match shown.len() {
        0 => vec![],
        1 | 2 => vec![0],
        n => vec![0, n - 1],
    };
    labels_at(&mut out, &labelled, shown.len(), slots, |i| {
        short_day(shown[i].failed_at)
    });
    out.push_str("</svg>");
    out
}

fn std_time(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests;
