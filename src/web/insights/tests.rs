//! The charts, read back: every data point in the markup, bar heights in proportion to
//! their values, axes labelled.

use super::charts::*;
use super::format::*;
use crate::store::insights::{DAY_MS, DayCounts, LeadTime, Restore};

/// 2026-11-30, 00:00 UTC.
const DAY: i64 = 20_787 * DAY_MS;
const HOUR: i64 = 3_600_000;

/// The value of `name="…"` in `element`.
fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let start = element.find(&format!(" {name}=\"")).unwrap_or_else(|| {
        panic!("no {name} in {element}");
    }) + name.len()
        + 3;
    let end = element[start..].find('"').unwrap() + start;
    &element[start..end]
}

/// The opening tags of the elements of `svg` whose tag and class start with `start`, e.g.
/// `<rect class="success"`.
fn elements<'a>(svg: &'a str, start: &str) -> Vec<&'a str> {
    svg.match_indices(start)
        .map(|(at, _)| &svg[at..at + svg[at..].find('>').unwrap()])
        .collect()
}

fn number(element: &str, name: &str) -> f64 {
    attribute(element, name).parse().unwrap()
}

#[test]
fn each_day_is_a_group_with_its_counts_and_a_sentence() {
    let days = [
        DayCounts {
            day: DAY - DAY_MS,
            success: 3,
            failure: 1,
            error: 0,
        },
        DayCounts {
            day: DAY,
            success: 0,
            failure: 0,
            error: 2,
        },
    ];
    let svg = deploys_chart(&days);
    let groups = elements(&svg, "<g class=\"day\"");
    assert_eq!(groups.len(), 2);
    assert_eq!(attribute(groups[0], "data-day"), "2026-11-29");
    assert_eq!(attribute(groups[0], "data-success"), "3");
    assert_eq!(attribute(groups[0], "data-failure"), "1");
    assert_eq!(attribute(groups[1], "data-error"), "2");
    assert!(
        svg.contains("<title>2026-11-29: 4 deploys: 3 success, 1 failure, 0 error</title>"),
        "{svg}"
    );
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
}

#[test]
fn bar_heights_are_proportional_to_counts_and_stack_from_the_axis() {
    let days = [DayCounts {
        day: DAY,
        success: 3,
        failure: 1,
        error: 0,
    }];
    let svg = deploys_chart(&days);
    // Four deploys: the axis tops at 5 (1, 2, 5 × 10ⁿ), labelled.
    assert!(
        svg.contains(">5</text>") && svg.contains(">0</text>"),
        "{svg}"
    );
    let success = elements(&svg, "<rect class=\"success\"")[0];
    let failure = elements(&svg, "<rect class=\"failure\"")[0];
    let plot = HEIGHT - TOP - BOTTOM;
    assert!((number(success, "height") - plot * 3.0 / 5.0).abs() < 0.1);
    assert!((number(failure, "height") - plot / 5.0).abs() < 0.1);
    // Success sits on the axis; failure on top of it.
    let base = HEIGHT - BOTTOM;
    assert!((number(success, "y") + number(success, "height") - base).abs() < 0.1);
    assert!((number(failure, "y") + number(failure, "height") - number(success, "y")).abs() < 0.1);
    assert!(
        elements(&svg, "<rect class=\"error\"").is_empty(),
        "no empty bars"
    );
}

#[test]
fn the_days_are_labelled_under_the_axis() {
    let days: Vec<DayCounts> = (0..30)
        .map(|i| DayCounts {
            day: DAY - (29 - i) * DAY_MS,
            ..DayCounts::default()
        })
        .collect();
    let svg = deploys_chart(&days);
    let labels: Vec<&str> = svg
        .match_indices("class=\"axis x\"")
        .map(|(at, _)| {
            let text = &svg[at..];
            let start = text.find('>').unwrap() + 1;
            &text[start..text.find("</text>").unwrap()]
        })
        .collect();
    assert_eq!(labels, ["Nov 1", "Nov 16", "Nov 30"]);
}

#[test]
fn lead_time_weeks_show_median_and_p90_in_seconds() {
    let since = DAY - 29 * DAY_MS;
    let leads = [
        LeadTime {
            delivered_at: DAY + HOUR,
            millis: HOUR,
        },
        LeadTime {
            delivered_at: DAY + 2 * HOUR,
            millis: 3 * HOUR,
        },
        LeadTime {
            delivered_at: DAY + 3 * HOUR,
            millis: 2 * HOUR,
        },
    ];
    let svg = lead_time_chart(&leads, since, DAY + 12 * HOUR);
    let weeks = elements(&svg, "<g class=\"week\"");
    assert_eq!(weeks.len(), 5, "30 days: a 2-day week, then four of 7");
    assert_eq!(attribute(weeks[0], "data-week"), "2026-11-01");
    assert_eq!(attribute(weeks[0], "data-count"), "0");
    let last = weeks[4];
    assert_eq!(attribute(last, "data-week"), "2026-11-24");
    assert_eq!(attribute(last, "data-count"), "3");
    assert_eq!(attribute(last, "data-median-seconds"), "7200");
    assert_eq!(attribute(last, "data-p90-seconds"), "10800");
    assert!(svg.contains("median 2h, 90th percentile 3h"), "{svg}");
    // The axis tops at 4h; the median's bar reaches half of it.
    assert!(
        svg.contains(">4h</text>") && svg.contains(">2h</text>"),
        "{svg}"
    );
    let bar = elements(&svg, "<rect class=\"median\"")[0];
    assert!((number(bar, "height") - (HEIGHT - TOP - BOTTOM) / 2.0).abs() < 0.1);
}

#[test]
fn failure_rate_weeks_carry_failed_of_deploys() {
    let mut days: Vec<DayCounts> = (0..7)
        .map(|i| DayCounts {
            day: DAY - (6 - i) * DAY_MS,
            ..DayCounts::default()
        })
        .collect();
    days[6].success = 3;
    days[5].failure = 1;
    let svg = failure_rate_chart(&days);
    let week = elements(&svg, "<g class=\"week\"")[0];
    assert_eq!(attribute(week, "data-deploys"), "4");
    assert_eq!(attribute(week, "data-failed"), "1");
    assert_eq!(attribute(week, "data-rate"), "0.2500");
    assert!(svg.contains("1 of 4 deploys failed (25%)"), "{svg}");
    let bar = elements(&svg, "<rect class=\"rate\"")[0];
    assert!((number(bar, "height") - (HEIGHT - TOP - BOTTOM) / 4.0).abs() < 0.1);
}

#[test]
fn a_week_where_nothing_failed_is_drawn_as_zero_and_labelled_so() {
    let mut days: Vec<DayCounts> = (0..14)
        .map(|i| DayCounts {
            day: DAY - (13 - i) * DAY_MS,
            ..DayCounts::default()
        })
        .collect();
    days[2].success = 5;
    days[9].failure = 1;
    let svg = failure_rate_chart(&days);
    let weeks = svg.split("<g class=\"week\"").skip(1).collect::<Vec<_>>();
    assert_eq!(weeks.len(), 2, "{svg}");
    // The week with five successes: a bar of no height, labelled 0%.
    assert!(weeks[0].contains("data-rate=\"0.0000\""), "{svg}");
    let bar = elements(weeks[0], "<rect class=\"rate\"")[0];
    assert_eq!(number(bar, "height"), 0.0);
    assert!(weeks[0].contains(">0%</text>"), "{svg}");
    // Nothing else in the chart is as tall as the plot: no track reads as 100%.
    let plot = HEIGHT - TOP - BOTTOM;
    for rect in elements(&svg, "<rect") {
        let full = (number(rect, "height") - plot).abs() < 0.1;
        assert!(!full || rect.contains("class=\"rate\""), "{rect}");
    }
    // The week that failed entirely: a full bar, labelled 100%.
    let bar = elements(weeks[1], "<rect class=\"rate\"")[0];
    assert!((number(bar, "height") - plot).abs() < 0.1);
    assert!(weeks[1].contains(">100%</text>"), "{svg}");
}

#[test]
fn each_failure_is_a_bar_as_long_as_its_restore_and_open_ones_run_to_now() {
    let restores = [
        Restore {
            failed_at: DAY,
            restored_at: Some(DAY + 30 * 60_000),
            automatic: false,
        },
        Restore {
            failed_at: DAY + 2 * HOUR,
            restored_at: None,
            automatic: false,
        },
    ];
    let svg = restore_chart(&restores, DAY + 3 * HOUR);
    let incidents = elements(&svg, "<g class=\"incident");
    assert_eq!(incidents.len(), 2);
    assert_eq!(
        attribute(incidents[0], "data-failed-at"),
        "2026-11-30T00:00:00Z"
    );
    assert_eq!(
        attribute(incidents[0], "data-restored-at"),
        "2026-11-30T00:30:00Z"
    );
    assert_eq!(attribute(incidents[0], "data-seconds"), "1800");
    assert_eq!(attribute(incidents[1], "data-restored-at"), "");
    assert_eq!(attribute(incidents[1], "data-seconds"), "3600");
    assert!(svg.contains("still failing after 1h"), "{svg}");
    let restored = elements(&svg, "<rect class=\"restored\"")[0];
    let open = elements(&svg, "<rect class=\"open\"")[0];
    assert!((number(open, "height") - 2.0 * number(restored, "height")).abs() < 0.1);
}

#[test]
fn durations_dates_and_axes_read_well() {
    assert_eq!(short_duration(45_000), "45s");
    assert_eq!(short_duration(12 * 60_000), "12m");
    assert_eq!(short_duration(12 * 60_000 + 5_000), "12m 5s");
    assert_eq!(short_duration(3 * HOUR + 5 * 60_000), "3h 5m");
    assert_eq!(short_duration(2 * DAY_MS + 4 * HOUR), "2d 4h");
    assert_eq!(iso_day(DAY + HOUR), "2026-11-30");
    assert_eq!(iso_day(0), "1970-01-01");
    assert_eq!(iso_day(11_016 * DAY_MS), "2000-02-29");
    assert_eq!(short_day(DAY), "Nov 30");
    assert_eq!(
        [0, 1, 3, 7, 10, 11, 49, 51].map(nice_count),
        [1, 1, 5, 10, 10, 20, 50, 100]
    );
    assert_eq!(count_ticks(5), [0, 1, 2, 3, 4, 5]);
    assert_eq!(count_ticks(2), [0, 1, 2]);
    assert_eq!(count_ticks(10), [0, 5, 10]);
    assert_eq!(count_ticks(50), [0, 10, 20, 30, 40, 50]);
    assert_eq!(count_ticks(1), [0, 1]);
    assert_eq!(week_label(DAY - 6 * DAY_MS, 7), "Nov 24–30");
    assert_eq!(week_label(DAY - 30 * DAY_MS, 7), "Oct 31–Nov 6");
    assert_eq!(week_label(DAY, 1), "Nov 30");
    assert_eq!(nice_duration(3 * HOUR), 4 * HOUR);
    assert_eq!(nice_duration(1), 60_000);
    assert_eq!(percent(0.25), "25%");
    assert_eq!(percent(0.05), "5.0%");
    assert_eq!(percent(0.0), "0%");
}

#[test]
fn the_window_is_cut_into_weeks_that_end_today() {
    assert_eq!(weeks(30), [(0, 2), (2, 7), (9, 7), (16, 7), (23, 7)]);
    assert_eq!(weeks(7), [(0, 7)]);
    assert_eq!(weeks(90).len(), 13);
}
