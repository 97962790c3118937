//! The charts, as SVG strings: pure functions from [`crate::store::insights`]'s numbers.
//! Each puts every data point in the markup twice: as `data-*` attributes for machines (the
//! tests read them) and as a `<title>` sentence for people and screen readers. They write
//! only numbers and dates they format themselves, never text from a request or a
//! repository, so nothing in them needs escaping.

use std::fmt::Write as _;

use super::format::{
    count_ticks, iso_day, nice_count, nice_duration, percent, short_day, short_duration, week_label,
};
use crate::store::insights::{DAY_MS, DayCounts, LeadTime, Restore, percentile};

/// Days per bucket of the weekly charts.
const WEEK: i64 = 7;
/// Incidents the restore chart draws at most (the most recent).
const MAX_INCIDENTS: usize = 60;

/// A chart's drawing area, in SVG units; the SVG scales to its container's width.
pub(super) const WIDTH: f64 = 480.0;
pub(super) const HEIGHT: f64 = 170.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
pub(super) const TOP: f64 = 10.0;
pub(super) const BOTTOM: f64 = 22.0;

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
/// their labels (`(value, label)`, value in the axis's units). A group, not an image:
/// an image's parts are hidden from screen readers, and each data point is an image of
/// its own, named by its `<title>`.
fn open_chart(out: &mut String, class: &str, label: &str, max: f64, ticks: &[(f64, String)]) {
    let _ = write!(
        out,
        r#"<svg class="chart {class}" viewBox="0 0 {WIDTH} {HEIGHT}" role="group" aria-label="{label}" preserveAspectRatio="xMidYMid meet"><title>{label}</title>"#
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
            r#"<g class="day" data-day="{iso}" data-success="{s}" data-failure="{f}" data-error="{e}" role="img"><title>{iso}: {total} deploys: {s} success, {f} failure, {e} error</title>"#,
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
    let (max, ticks) = duration_axis(top);
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
                r#"<g class="week" data-week="{iso}" data-count="0" role="img"><title>week of {iso}: no merge reached this environment</title></g>"#,
                iso = iso_day(*start),
            );
            continue;
        };
        let (h, w) = (height(*median as f64, max), height(*p90 as f64, max));
        let middle = x + width / 2.0;
        let _ = write!(
            out,
            r#"<g class="week" data-week="{iso}" data-count="{count}" data-median-seconds="{ms}" data-p90-seconds="{ps}" role="img"><title>week of {iso}: {count} changes, median {m}, 90th percentile {p}</title><rect class="median" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/><line class="p90" x1="{middle:.1}" x2="{middle:.1}" y1="{y:.1}" y2="{wy:.1}"/><line class="p90" x1="{l:.1}" x2="{r:.1}" y1="{wy:.1}" y2="{wy:.1}"/></g>"#,
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
                r#"<g class="week" data-week="{iso}" data-deploys="0" data-failed="0" role="img"><title>week of {iso}: no deploys</title></g>"#
            );
            continue;
        }
        let rate = f64::from(failed) / f64::from(deploys);
        let (x, width) = slot(i, weeks.len());
        let h = height(rate * 100.0, 100.0);
        // The rate written over its bar: a week where nothing failed has no bar to see, and
        // must read as 0 %, not as a gap. (A full-height grey track behind each bar read as
        // 100 % when the bar was empty.)
        let _ = write!(
            out,
            r#"<g class="week" data-week="{iso}" data-deploys="{deploys}" data-failed="{failed}" data-rate="{rate:.4}" role="img"><title>week of {iso}: {failed} of {deploys} deploys failed ({p})</title><rect class="rate" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/><text class="value" x="{cx:.1}" y="{ty:.1}" text-anchor="middle">{p}</text></g>"#,
            p = percent(rate),
            y = base - h,
            cx = x + width / 2.0,
            ty = (base - h - 4.0).max(TOP + 8.0),
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
    let (max, ticks) = duration_axis(top);
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
            r#"<g class="incident {class}" data-failed-at="{failed}" data-restored-at="{restored}" data-seconds="{s}" role="img"><title>failed {day}, {says}</title><rect class="{class}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"/></g>"#,
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

/// A duration axis up to `top` milliseconds: its height and its ticks at 0, half and top.
fn duration_axis(top: i64) -> (f64, [(f64, String); 3]) {
    let max = top as f64;
    let ticks = [
        (0.0, "0".to_owned()),
        (max / 2.0, short_duration(top / 2)),
        (max, short_duration(top)),
    ];
    (max, ticks)
}
