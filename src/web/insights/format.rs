//! Numbers, durations and dates for people and for the charts' axes: `25%`, `3h 5m`,
//! `2026-11-30`, `Nov 24–30`, and the round values an axis tops at.

use crate::store::insights::DAY_MS;

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

/// `2026-11-30 14:05 UTC`, for a table row.
pub fn day_and_time(ms: i64) -> String {
    let minutes = ms.rem_euclid(DAY_MS) / 60_000;
    format!(
        "{} {:02}:{:02} UTC",
        iso_day(ms),
        minutes / 60,
        minutes % 60
    )
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
