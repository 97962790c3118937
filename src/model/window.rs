//! Deploy windows and freezes: when an environment takes which deployments. A
//! [`Schedule`] is an environment's time zone, its weekly windows (none: always open) and
//! its dated freezes; [`Schedule::hold_at`] says what holds deployments at an instant, and
//! until when, and [`Schedule::next_change`] when that answer next changes (the deploy
//! worker wakes then). [`Clearance`] is what a deployment is, read from its payload, and
//! [`Hold::lets_through`] the one rule saying which pass: a window holds only automatic
//! deploys, a freeze everything but forced deploys and rollbacks.
//!
//! Windows are read on the wall clock of their zone: on a spring-forward day a window
//! 01:30–03:00 closes when the clock jumps from 02:00 to 03:00; on a fall-back day a time
//! that happens twice is inside the window both times. Pure: every answer is for the
//! instant it is given, so tests inject the clock.

use jiff::civil::DateTime;
use jiff::tz::{Disambiguation, TimeZone};
use jiff::{Timestamp, Zoned};

/// How far ahead [`Schedule::next_change`] looks for a window's edge: a week, with room for
/// a daylight-saving change and the day in progress.
const HORIZON_DAYS: i64 = 9;
/// Minutes in a day: a window may end at `24:00`.
pub const DAY_MINUTES: u16 = 24 * 60;

/// One environment's windows and freezes, in its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub zone: TimeZone,
    /// Empty: the environment is always open (but for freezes).
    pub windows: Vec<Window>,
    pub freezes: Vec<Freeze>,
}

/// A weekly window: on these days, from `from` until `until` (minutes since midnight on the
/// wall clock; `from` < `until`, so a window never crosses midnight — two windows do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    pub from: u16,
    pub until: u16,
}

/// A dated freeze: from `from` (inclusive) until `until` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub from: Timestamp,
    pub until: Timestamp,
    pub reason: String,
}

/// What holds an environment's deployments now.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// Outside every window: automatic deploys wait. `opens`: when the next window opens
    /// (`None` only if none opens within a week, which a valid schedule never says).
    Closed { opens: Option<Zoned> },
    /// In a freeze: everything but forced deploys and rollbacks waits, until `until` (the
    /// end of freezes that follow one another without a gap).
    Frozen { until: Zoned, reason: String },
}

/// What a deployment is, for windows and freezes, from the least to the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Clearance {
    /// deployhook deploys it by itself: a merge, a promotion, a preview, a tag or release.
    Automatic,
    /// A person asked for it: a `.deploy` comment, a deployment made by hand.
    Deliberate,
    /// Forced (`"force": true`) or a rollback: only a lock may hold it.
    Urgent,
}

impl Clearance {
    /// Reads a deployment's payload (JSON text). A comment command is deliberate even when
    /// it names its pull request; any other payload naming a pull request, a merge, a
    /// promotion, a preview or a tag is automatic. Otherwise a payload naming who asked for
    /// it (`deploy_user`, as `deployhook deploy` and the API write) is deliberate, and any
    /// other — another tool's pipeline, a payload that is not JSON — automatic: when in
    /// doubt a window holds it, the safe side for a production environment.
    pub fn of(payload: &str) -> Self {
        let Ok(payload) = serde_json::from_str::<serde_json::Value>(payload) else {
            return Self::Automatic;
        };
        let set = |key: &str| payload.get(key).is_some_and(|v| !v.is_null());
        let yes = |key: &str| payload.get(key) == Some(&serde_json::Value::Bool(true));
        if yes("force") || yes("rollback") {
            Self::Urgent
        } else if set("command") {
            Self::Deliberate
        } else if [
            "pull_request",
            "merged_at",
            "promoted_from",
            "preview",
            "tag",
        ]
        .iter()
        .any(|key| set(key))
        {
            Self::Automatic
        } else if payload
            .get("deploy_user")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|who| !who.trim().is_empty())
        {
            Self::Deliberate
        } else {
            Self::Automatic
        }
    }

    /// As stored in `jobs.clearance`.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Automatic => 0,
            Self::Deliberate => 1,
            Self::Urgent => 2,
        }
    }

    /// From `jobs.clearance`; an unknown value reads as automatic (held the most).
    pub fn from_i64(value: i64) -> Self {
        match value {
            2 => Self::Urgent,
            1 => Self::Deliberate,
            _ => Self::Automatic,
        }
    }
}

impl Hold {
    /// The rule, in one place: whether a deployment of `clearance` starts despite this hold.
    pub fn lets_through(&self, clearance: Clearance) -> bool {
        clearance >= self.least_passing()
    }

    /// The least clearance that passes this hold.
    pub fn least_passing(&self) -> Clearance {
        match self {
            Self::Closed { .. } => Clearance::Deliberate,
            Self::Frozen { .. } => Clearance::Urgent,
        }
    }

    /// Why a deployment waits, for every place that shows it: `waits for the deploy window
    /// (opens Mon 09:00 Europe/Paris)`, `frozen until 2027-01-04 09:00 Europe/Paris: holidays`.
    pub fn sentence(&self) -> String {
        match self {
            Self::Closed { opens: Some(opens) } => format!(
                "waits for the deploy window (opens {} {})",
                opens.strftime("%a %H:%M"),
                zone_name(opens.time_zone())
            ),
            Self::Closed { opens: None } => "waits for the deploy window".to_owned(),
            Self::Frozen { until, reason } => format!(
                "frozen until {} {}: {reason}",
                until.strftime("%Y-%m-%d %H:%M"),
                zone_name(until.time_zone())
            ),
        }
    }
}

/// The zone's IANA name, or its offset for a fixed one.
pub fn zone_name(zone: &TimeZone) -> String {
    zone.iana_name().map_or_else(
        || zone.to_offset(Timestamp::now()).to_string(),
        str::to_owned,
    )
}

impl Schedule {
    /// Always open, in UTC.
    pub fn open() -> Self {
        Self {
            zone: TimeZone::UTC,
            windows: vec![],
            freezes: vec![],
        }
    }

    /// Whether neither windows nor freezes are configured.
    pub fn is_open(&self) -> bool {
        self.windows.is_empty() && self.freezes.is_empty()
    }

    /// What holds deployments at `now`: a freeze first (it holds more), else being outside
    /// every window; `None` when the environment takes every deployment.
    pub fn hold_at(&self, now: Timestamp) -> Option<Hold> {
        if let Some(until) = self.frozen_until(now) {
            let reason = self
                .freezes
                .iter()
                .find(|f| f.from <= now && now < f.until)
                .map_or_else(String::new, |f| f.reason.clone());
            return Some(Hold::Frozen {
                until: until.to_zoned(self.zone.clone()),
                reason,
            });
        }
        if self.in_window(now) {
            return None;
        }
        let opens = self
            .window_edges(now)
            .into_iter()
            .find(|&t| self.in_window(t))
            .map(|t| t.to_zoned(self.zone.clone()));
        Some(Hold::Closed { opens })
    }

    /// The next instant after `now` at which [`Schedule::hold_at`] says something else
    /// (a window opens or closes, a freeze starts or ends); `None` when nothing changes
    /// within a week.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        // What `hold_at` says, without working out when a window opens.
        let state = |t: Timestamp| match self.frozen_until(t) {
            Some(until) => (Some(until), true),
            None => (None, self.in_window(t)),
        };
        let here = state(now);
        let mut edges = self.window_edges(now);
        edges.extend(
            self.freezes
                .iter()
                .flat_map(|f| [f.from, f.until])
                .filter(|&t| t > now),
        );
        edges.sort();
        edges.into_iter().find(|&t| state(t) != here)
    }

    /// The end of the freeze (or run of freezes without a gap) holding `now`.
    fn frozen_until(&self, now: Timestamp) -> Option<Timestamp> {
        let mut until = self
            .freezes
            .iter()
            .filter(|f| f.from <= now && now < f.until)
            .map(|f| f.until)
            .max()?;
        // A freeze starting as (or before) another ends continues it.
        while let Some(later) = self
            .freezes
            .iter()
            .filter(|f| f.from <= until && f.until > until)
            .map(|f| f.until)
            .max()
        {
            until = later;
        }
        Some(until)
    }

    /// Whether a window (on the zone's wall clock) holds `at`; always, without windows.
    fn in_window(&self, at: Timestamp) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let local = at.to_zoned(self.zone.clone());
        let day = usize::from(local.weekday().to_monday_zero_offset().unsigned_abs());
        let minute =
            u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
        self.windows
            .iter()
            .any(|w| w.days[day] && w.from <= minute && minute < w.until)
    }

    /// Every instant within the horizon after `now` at which the wall clock may cross a
    /// window's edge: each edge's time on each day (both instants of a time the clock
    /// shows twice), each midnight, and each change of the zone's offset (a jump over an
    /// edge). Sorted; a superset of the instants where being in a window changes.
    fn window_edges(&self, now: Timestamp) -> Vec<Timestamp> {
        if self.windows.is_empty() {
            return vec![];
        }
        let mut minutes: Vec<u16> = self
            .windows
            .iter()
            .flat_map(|w| [w.from, w.until % DAY_MINUTES])
            .chain([0])
            .collect();
        minutes.sort_unstable();
        minutes.dedup();
        let today = now.to_zoned(self.zone.clone()).date();
        let mut edges = Vec::new();
        for offset in -1..HORIZON_DAYS {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            for &minute in &minutes {
                let Ok(time) = jiff::civil::Time::new(
                    i8::try_from(minute / 60).unwrap_or(0),
                    i8::try_from(minute % 60).unwrap_or(0),
                    0,
                    0,
                ) else {
                    continue;
                };
                let local = DateTime::from_parts(date, time);
                for how in [Disambiguation::Earlier, Disambiguation::Later] {
                    if let Ok(zoned) = self.zone.to_ambiguous_zoned(local).disambiguate(how) {
                        edges.push(zoned.timestamp());
                    }
                }
            }
        }
        let end = now
            .checked_add(jiff::SignedDuration::from_hours(24 * HORIZON_DAYS))
            .unwrap_or(Timestamp::MAX);
        edges.extend(
            self.zone
                .following(now)
                .map(|t| t.timestamp())
                .take_while(|&t| t <= end),
        );
        edges.retain(|&t| t > now);
        edges.sort();
        edges.dedup();
        edges
    }
}

/// Unix milliseconds (the store's times) as an instant.
pub fn instant(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

/// Parses a day list: `mon-fri`, `sat,sun`, `mon,wed-fri`, `daily`, case-insensitive.
pub fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    let trimmed = text.trim().to_ascii_lowercase();
    if trimmed == "daily" || trimmed == "every day" {
        return Ok([true; 7]);
    }
    for part in trimmed.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (day_index(a.trim(), text)?, day_index(b.trim(), text)?),
            None => (day_index(part, text)?, day_index(part, text)?),
        };
        if first > last {
            return Err(format!(
                "days {text:?}: {part} runs backwards; a range runs from mon to sun (write \
                 \"fri-sun\" or \"sat,sun,mon\")"
            ));
        }
        days[first..=last].iter_mut().for_each(|d| *d = true);
    }
    Ok(days)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(name: &str, whole: &str) -> Result<usize, String> {
    let short = name.get(..3).unwrap_or(name);
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    DAY_NAMES
        .iter()
        .position(|d| *d == short)
        .filter(|&i| name == DAY_NAMES[i] || name == full[i])
        .ok_or_else(|| {
            format!(
                "days {whole:?}: {name:?} is not a day; use mon, tue, wed, thu, fri, sat, sun, \
                 ranges like \"mon-fri\", lists like \"sat,sun\", or \"daily\""
            )
        })
}

/// The days of `days` as written back: `mon-fri`, `sat,sun`, `daily`.
pub fn days_text(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "daily".to_owned();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if days[i] {
            let start = i;
            while i + 1 < 7 && days[i + 1] {
                i += 1;
            }
            parts.push(if i > start + 1 {
                format!("{}-{}", DAY_NAMES[start], DAY_NAMES[i])
            } else if i == start + 1 {
                format!("{},{}", DAY_NAMES[start], DAY_NAMES[i])
            } else {
                DAY_NAMES[start].to_owned()
            });
        }
        i += 1;
    }
    parts.join(",")
}

/// Parses `09:00` (or `24:00` for the end of the day) into minutes since midnight.
pub fn parse_minute(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time of day: expected HH:MM, like \"09:00\"");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `HH:MM` of minutes since midnight.
pub fn minute_text(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Parses a freeze's edge: a local time in `zone` (`2026-12-21 00:00`; a date alone is its
/// midnight) or an instant with an explicit offset (`2026-12-21T00:00+01:00`). A local time the clock skips is read
/// as the moment after the jump; one it shows twice, as its first.
pub fn parse_instant(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(instant) = text.parse::<Timestamp>() {
        return Ok(instant);
    }
    let bad = |e: jiff::Error| {
        format!(
            "{text:?} is not a date and time: expected \"2026-12-21 09:00\" (in the \
             environment's timezone) or with an offset, \"2026-12-21T09:00+01:00\" ({e})"
        )
    };
    // A time zone annotation a civil reading would drop: the environment's zone is the one.
    if text.contains('[') {
        return Err(format!(
            "{text:?} is not a date and time: expected \"2026-12-21 09:00\" (in the \
             environment's timezone) or with an offset, \"2026-12-21T09:00+01:00\""
        ));
    }
    let local: DateTime = text.parse().map_err(bad)?;
    zone.to_ambiguous_zoned(local)
        .disambiguate(Disambiguation::Compatible)
        .map(|z| z.timestamp())
        .map_err(bad)
}

#[cfg(test)]
mod tests;
