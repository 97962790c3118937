//! The starts and ends of freezes told to the notification receivers: the leader's clock
//! looks at each environment's freezes on every tick and at each edge, and records an
//! edge that passed (within the last hour: a server started after a long stop does not
//! tell of freezes long over) with its notification, once ([`crate::store::freezes`]). A
//! freeze that follows another without a gap is one freeze to the reader: its join is not
//! told.

use crate::config::EnvironmentConfig;
use crate::model::window::instant;
use crate::model::{Hold, Notification};

/// How long after it passed an edge is still told.
pub(super) const ANNOUNCE_WITHIN_MS: i64 = 60 * 60 * 1000;

/// An edge to tell: the environment, the freeze (from, until), `"start"` or `"end"`, and
/// what to send.
pub(super) type Edge = (String, (i64, i64), &'static str, Notification);

/// The edges passed within [`ANNOUNCE_WITHIN_MS`] before `now`, told or not yet.
pub(super) fn passed(environments: &[EnvironmentConfig], now: i64) -> Vec<Edge> {
    let mut edges = Vec::new();
    for environment in environments {
        let schedule = &environment.schedule;
        let frozen = |at: i64| matches!(schedule.hold_at(instant(at)), Some(Hold::Frozen { .. }));
        for freeze in &schedule.freezes {
            let (from, until) = (freeze.from.as_millisecond(), freeze.until.as_millisecond());
            let recent = |at: i64| at <= now && now - at < ANNOUNCE_WITHIN_MS;
            let name = environment.name.to_string();
            if recent(from) && now < until && !frozen(from - 1) {
                let hold = schedule.hold_at(instant(from));
                let description = hold.map_or_else(String::new, |h| h.sentence());
                let told = Notification::freeze(&environment.name, true, description, now);
                edges.push((name.clone(), (from, until), "start", told));
            }
            if recent(until) && !frozen(until) {
                let mut description = "held deploys run again".to_owned();
                if let Some(hold) = schedule.hold_at(instant(now)) {
                    description = format!("freeze over; {}", hold.sentence());
                }
                let told = Notification::freeze(&environment.name, false, description, now);
                edges.push((name, (from, until), "end", told));
            }
        }
    }
    edges
}

/// The next start or end of a freeze after `now`, in Unix milliseconds.
pub(super) fn next_edge(environments: &[EnvironmentConfig], now: i64) -> Option<i64> {
    environments
        .iter()
        .flat_map(|e| &e.schedule.freezes)
        .flat_map(|f| [f.from.as_millisecond(), f.until.as_millisecond()])
        .filter(|&at| at > now)
        .min()
}
