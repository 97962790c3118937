//! When an environment's deployments may start: `timezone` (an IANA name, default UTC),
//! `windows` (weekly, `{ days = "mon-fri", from = "09:00", until = "16:00" }`; none: always
//! open) and `freezes` (dated, `{ from = "2026-12-21 00:00", until = "2027-01-04 09:00",
//! reason = "holidays" }`, local times in `timezone` or with an offset), checked strictly
//! and built into a [`Schedule`]. What they hold is [`crate::model::window`]'s rule.

use serde::Deserialize;

use super::FileEnvironment;
use super::validate::Invalid;
use crate::model::window::{
    DAY_MINUTES, Freeze, Window, days_text, minute_text, parse_days, parse_instant, parse_minute,
};
use crate::model::{Environment, Schedule};

/// The longest reason a freeze may give: it goes into statuses of at most 140 characters.
const MAX_REASON: usize = 80;

/// One entry of `windows`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWindow {
    days: String,
    from: String,
    until: String,
}

/// One entry of `freezes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFreeze {
    from: String,
    until: String,
    reason: String,
}

/// The environment's schedule, checked.
pub(super) fn schedule(file: &FileEnvironment, name: &Environment) -> Result<Schedule, Invalid> {
    let zone = match &file.timezone {
        None => jiff::tz::TimeZone::UTC,
        Some(text) => jiff::tz::TimeZone::get(text.get_ref().trim()).map_err(|_| {
            (
                text.span(),
                format!(
                    "environment {name}: timezone {:?} is not a time zone known to this \
                     system's tz database: use an IANA name like \"Europe/Paris\" or \"UTC\"",
                    text.get_ref()
                ),
            )
        })?,
    };
    let mut windows = Vec::new();
    for entry in file.windows.iter().flatten() {
        let at = |e: String| (entry.span(), format!("environment {name}: windows: {e}"));
        let w = entry.get_ref();
        let window = Window {
            days: parse_days(&w.days).map_err(at)?,
            from: parse_minute(&w.from).map_err(at)?,
            until: parse_minute(&w.until).map_err(at)?,
        };
        if window.from >= DAY_MINUTES || window.until <= window.from {
            return Err(at(format!(
                "from {} until {}: a window ends after it starts, on the same day (for one \
                 across midnight write two: until = \"24:00\", then from = \"00:00\" on the \
                 next days)",
                w.from, w.until
            )));
        }
        windows.push(window);
    }
    let mut freezes = Vec::new();
    for entry in file.freezes.iter().flatten() {
        let at = |e: String| (entry.span(), format!("environment {name}: freezes: {e}"));
        let f = entry.get_ref();
        let freeze = Freeze {
            from: parse_instant(&f.from, &zone).map_err(at)?,
            until: parse_instant(&f.until, &zone).map_err(at)?,
            reason: f.reason.trim().to_owned(),
        };
        if freeze.until <= freeze.from {
            return Err(at(format!(
                "until {:?} is not after from {:?}",
                f.until, f.from
            )));
        }
        if freeze.reason.is_empty() || freeze.reason.chars().count() > MAX_REASON {
            return Err(at(format!(
                "a freeze gives its reason in 1 to {MAX_REASON} characters: it is shown to \
                 whoever waits"
            )));
        }
        freezes.push(freeze);
    }
    Ok(Schedule {
        zone,
        windows,
        freezes,
    })
}

/// The schedule in `check-config`'s words: `; deploys automatically mon-fri 09:00–16:00
/// Europe/Paris; frozen 2026-12-21 00:00 – 2027-01-04 09:00 (holidays)`; empty when open.
pub fn summary(schedule: &Schedule) -> String {
    let zone = crate::model::window::zone_name(&schedule.zone);
    let mut text = String::new();
    if !schedule.windows.is_empty() {
        let windows: Vec<String> = schedule
            .windows
            .iter()
            .map(|w| {
                format!(
                    "{} {}–{}",
                    days_text(&w.days),
                    minute_text(w.from),
                    minute_text(w.until)
                )
            })
            .collect();
        text += &format!("; deploys automatically only {} {zone}", windows.join(", "));
    }
    for freeze in &schedule.freezes {
        let local = |t: jiff::Timestamp| {
            t.to_zoned(schedule.zone.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        };
        text += &format!(
            "; frozen {} – {} {zone} ({})",
            local(freeze.from),
            local(freeze.until),
            freeze.reason
        );
    }
    text
}
