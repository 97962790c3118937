//! Bounded logging of refusals: the first refusal after a quiet spell is logged at once, in
//! full (what a team setting up a webhook wants to see); the ones after it are counted and
//! summarised, at most one line every [`SUMMARY_PERIOD`], with their count per reason and
//! the addresses that sent the most. A flood of bad requests cannot fill the disk through
//! the log: eight connections of bad signatures wrote 8.6 GB of log an hour when every
//! refusal had its own line. The counts take bounded memory ([`TRACKED_CLIENTS`] addresses
//! per reason); `/metrics` still counts every refusal, exactly.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the refusals counted since the last line are summarised; also how long with
/// no refusal makes the next one the first of a quiet spell, logged in full.
pub const SUMMARY_PERIOD: Duration = Duration::from_secs(1);
/// Addresses counted per reason at most. Past it, the least counted one makes room (the
/// "space-saving" count: any address that sent more than 1/[`TRACKED_CLIENTS`] of the
/// refusals is among those kept, with a count that may include up to the evicted one's).
pub const TRACKED_CLIENTS: usize = 32;
/// Addresses named per reason on a summary line.
const TOP_SHOWN: usize = 3;

/// What is refused, as a summary line names it: `delivery`, `deliveries`.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub one: &'static str,
    pub many: &'static str,
}

/// Refused webhook deliveries.
pub const DELIVERIES: Subject = Subject {
    one: "delivery",
    many: "deliveries",
};

/// One refusal, as the request path hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// A fixed label (`bad_signature`): the same as the metrics'.
    pub reason: &'static str,
    pub status: u16,
    /// What the client was told; may quote what it sent, so it is logged as a quoted field.
    pub message: &'a str,
    pub client: Option<IpAddr>,
}

/// Where refusals are logged, boundedly. Shared by the request path and the task that
/// writes the summaries ([`RefusalSummary::start`]).
#[derive(Debug)]
pub struct RefusalSummary {
    subject: Subject,
    window: Mutex<Window>,
}

impl RefusalSummary {
    /// A summary of refused `subject`s, with the task that writes its lines once every
    /// [`SUMMARY_PERIOD`]; the task ends when the summary is dropped.
    pub fn start(subject: Subject) -> Arc<Self> {
        let summary = Arc::new(Self {
            subject,
            window: Mutex::new(Window::default()),
        });
        let weak = Arc::downgrade(&summary);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SUMMARY_PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await; // the first tick is at once
            loop {
                every.tick().await;
                let Some(summary) = weak.upgrade() else {
                    return;
                };
                summary.flush(Instant::now());
            }
        });
        summary
    }

    /// Logs `refusal` in full if it is the first of a quiet spell, or counts it for the
    /// next summary line.
    pub fn refused(&self, refusal: &Refusal<'_>) {
        let first = self
            .window()
            .note(refusal.reason, refusal.client, Instant::now());
        if first {
            tracing::warn!(
                status = refusal.status,
                reason = refusal.reason,
                client = %ShownClient(refusal.client.map(client_key)),
                error = refusal.message,
                "{} refused",
                self.subject.one
            );
        }
    }

    /// Writes the summary of the refusals counted since the last one, if any.
    fn flush(&self, now: Instant) {
        let Some(summary) = self.window().take(now) else {
            return;
        };
        tracing::warn!(refused = summary.total, "{}", summary.line(self.subject));
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for RefusalSummary {
    /// The counts of the last moments before a shutdown are written too.
    fn drop(&mut self) {
        self.flush(Instant::now());
    }
}

/// The refusals since the last summary line. Pure: the clock is passed in.
#[derive(Debug, Default)]
struct Window {
    /// Whether a refusal was seen within the last [`SUMMARY_PERIOD`] or so: the next one
    /// is then counted, not logged in full.
    busy: bool,
    /// The latest refusal seen.
    last: Option<Instant>,
    /// Since when the refusals below were counted.
    since: Option<Instant>,
    total: u64,
    /// One per reason seen; reasons are fixed labels, so this stays a handful long.
    reasons: Vec<ReasonCount>,
}

impl Window {
    /// Counts a refusal at `now`; `true` when it is the first of a quiet spell, to be
    /// logged in full (and then not counted in the next summary).
    fn note(&mut self, reason: &'static str, client: Option<IpAddr>, now: Instant) -> bool {
        self.last = Some(now);
        if !self.busy {
            self.busy = true;
            self.since = Some(now);
            return true;
        }
        self.total += 1;
        let at = match self.reasons.iter().position(|r| r.reason == reason) {
            Some(at) => at,
            None => {
                self.reasons.push(ReasonCount {
                    reason,
                    count: 0,
                    top: TopClients::default(),
                });
                self.reasons.len() - 1
            }
        };
        let counted = &mut self.reasons[at];
        counted.count += 1;
        counted.top.add(client.map(client_key));
        false
    }

    /// The summary of what was counted since the last one, if anything was; the next
    /// refusal is logged in full again once a whole [`SUMMARY_PERIOD`] passed without one.
    fn take(&mut self, now: Instant) -> Option<Summary> {
        if self.total == 0 {
            if self
                .last
                .is_none_or(|last| now.duration_since(last) >= SUMMARY_PERIOD)
            {
                self.busy = false;
            }
            return None;
        }
        let since = self.since.unwrap_or(now);
        let mut reasons = std::mem::take(&mut self.reasons);
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(b.reason)));
        let summary = Summary {
            total: std::mem::take(&mut self.total),
            over: now.duration_since(since),
            reasons,
        };
        self.since = Some(now);
        Some(summary)
    }
}

/// The refusals of one reason since the last summary.
#[derive(Debug)]
struct ReasonCount {
    reason: &'static str,
    count: u64,
    top: TopClients,
}

/// The addresses that sent the most refusals of one reason, in bounded memory: at most
/// [`TRACKED_CLIENTS`] are counted; a new one past that takes the place of the least
/// counted, inheriting its count as a possible overcount (the space-saving algorithm).
#[derive(Debug, Default)]
struct TopClients {
    counted: Vec<ClientCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientCount {
    client: Option<IpAddr>,
    /// Refusals counted for it, possibly including up to `overcount` of others'.
    count: u64,
    overcount: u64,
}

impl TopClients {
    fn add(&mut self, client: Option<IpAddr>) {
        if let Some(known) = self.counted.iter_mut().find(|c| c.client == client) {
            known.count += 1;
        } else if self.counted.len() < TRACKED_CLIENTS {
            self.counted.push(ClientCount {
                client,
                count: 1,
                overcount: 0,
            });
        } else if let Some(least) = self.counted.iter_mut().min_by_key(|c| c.count) {
            *least = ClientCount {
                client,
                count: least.count + 1,
                overcount: least.count,
            };
        }
    }

    /// The most counted, most first.
    fn top(&self, n: usize) -> Vec<ClientCount> {
        let mut counted = self.counted.clone();
        counted.sort_by_key(|c| std::cmp::Reverse(c.count));
        counted.truncate(n);
        counted
    }
}

/// What one summary line says.
#[derive(Debug)]
struct Summary {
    total: u64,
    over: Duration,
    /// Most refused first.
    reasons: Vec<ReasonCount>,
}

impl Summary {
    /// `refused 41,233 deliveries in the last 1.0 s: bad signature ×41,200 (top: 127.0.0.1
    /// ×40,000, ::1 ×1,200), too large ×33 (top: …)`.
    fn line(&self, subject: Subject) -> String {
        use std::fmt::Write;
        let noun = if self.total == 1 {
            subject.one
        } else {
            subject.many
        };
        let mut line = format!(
            "refused {} {noun} in the last {:.1} s: ",
            Grouped(self.total),
            self.over.as_secs_f64()
        );
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            let _ = write!(
                line,
                "{} ×{} (top: ",
                reason.reason.replace('_', " "),
                Grouped(reason.count)
            );
            for (j, client) in reason.top.top(TOP_SHOWN).iter().enumerate() {
                if j > 0 {
                    line.push_str(", ");
                }
                let _ = write!(line, "{} ×", ShownClient(client.client));
                // An overcounted address is sure of the rest only.
                if client.overcount > 0 {
                    line.push('≥');
                }
                let _ = write!(line, "{}", Grouped(client.count - client.overcount));
            }
            line.push(')');
        }
        line
    }
}

/// Who a refusal is counted against: the address, or its /64 for IPv6, where one host
/// commonly holds the whole network (as the connection caps count it).
fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        other => other,
    }
}

/// An address as counted: IPv6 networks with their `/64`.
struct ShownClient(Option<IpAddr>);

impl fmt::Display for ShownClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unknown"),
            Some(IpAddr::V6(v6)) if !v6.is_loopback() => write!(f, "{v6}/64"),
            Some(address) => write!(f, "{address}"),
        }
    }
}

/// A count with thousands separated: `41,233`.
struct Grouped(u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(digit);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests;
