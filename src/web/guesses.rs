//! Wrong guesses of an operator's token (the admin token, the metrics token), limited per
//! client address, never for the whole server: a stranger's wrong guesses use up only the
//! stranger's own allowance, so the admin, from any other address, is never refused because
//! of them. An IPv4 address counts alone, an IPv6 one by its /64 (a host usually has the
//! whole /64), as the connection caps count them (`listener`); behind a trusted proxy, the
//! address it forwarded for (`client`).
//!
//! Each address may guess [`BURST`] times at once, then once per [`REFILL`]: at most 10 a
//! minute, about 5.3 million a year. Against a token of `config::MIN_TOKEN_CHARS`
//! random characters or more, that is hopeless, from any number of addresses (the README
//! gives the figures). A try is taken before the token is compared, so an address over its
//! limit learns nothing, not even from the right token; a right token gives its try back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::model::ClientKey;

/// Guesses an address may make at once.
pub const BURST: u32 = 10;
/// How long an address waits for each further guess.
pub const REFILL: Duration = Duration::from_secs(6);
/// Addresses remembered at once. Past it, the address nearest to a full allowance again is
/// forgotten first: refusing new addresses instead would lock everyone out.
const MAX_ADDRESSES: usize = 10_000;
/// At most one log line per secret in this long; the metric counts every guess.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What became of a presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Right,
    Wrong,
    /// Not compared: the address has no guess left. It may guess again after this long.
    Limited(Duration),
}

/// The limit for one secret.
#[derive(Debug)]
pub struct GuessLimit {
    /// Which token, as the metric and the log name it: `admin` or `metrics`.
    secret: &'static str,
    /// Per address: when its allowance is whole again (a "virtual scheduling" bucket:
    /// each guess pushes this [`REFILL`] further, and a guess is refused when it would lie
    /// more than [`BURST`] refills ahead). Addresses whose time has passed are as new.
    addresses: Mutex<HashMap<ClientKey, Instant>>,
    metrics: Arc<Metrics>,
    logged: Mutex<Logged>,
}

/// Refusals since the last log line.
#[derive(Debug, Default)]
struct Logged {
    at: Option<Instant>,
    wrong: u64,
    limited: u64,
}

impl GuessLimit {
    pub fn new(secret: &'static str, metrics: Arc<Metrics>) -> Self {
        Self {
            secret,
            addresses: Mutex::default(),
            metrics,
            logged: Mutex::default(),
        }
    }

    /// Takes one of `client`'s guesses and runs `matches` (the constant-time comparison)
    /// with it; a right token gives the guess back.
    pub fn check(&self, client: IpAddr, matches: impl FnOnce() -> bool) -> Verdict {
        self.check_at(client, Instant::now(), matches)
    }

    /// [`GuessLimit::check`] at `now`.
    fn check_at(&self, client: IpAddr, now: Instant, matches: impl FnOnce() -> bool) -> Verdict {
        let key = ClientKey::of(client);
        if let Err(wait) = self.take(key, now) {
            self.metrics.token_guess(self.secret, "limited");
            self.log(client, Verdict::Limited(wait));
            return Verdict::Limited(wait);
        }
        if matches() {
            self.give_back(key, now);
            return Verdict::Right;
        }
        self.metrics.token_guess(self.secret, "wrong");
        self.log(client, Verdict::Wrong);
        Verdict::Wrong
    }

    fn take(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if !addresses.contains_key(&key) && addresses.len() >= MAX_ADDRESSES {
            forget_one(&mut addresses, now);
        }
        let whole_at = addresses.entry(key).or_insert(now);
        let next = (*whole_at).max(now) + REFILL;
        let ahead = next - now;
        if ahead > REFILL * BURST {
            return Err(ahead - REFILL * BURST);
        }
        *whole_at = next;
        Ok(())
    }

    fn give_back(&self, key: ClientKey, now: Instant) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(whole_at) = addresses.get_mut(&key) {
            *whole_at = whole_at.checked_sub(REFILL).unwrap_or(now).max(now);
        }
    }

    /// One line per [`LOG_INTERVAL`] at most, so that guessing cannot flood the log.
    fn log(&self, client: IpAddr, verdict: Verdict) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        match verdict {
            Verdict::Limited(_) => logged.limited += 1,
            _ => logged.wrong += 1,
        }
        if logged.at.is_some_and(|at| at.elapsed() < LOG_INTERVAL) {
            return;
        }
        tracing::warn!(
            %client,
            wrong = logged.wrong,
            limited = logged.limited,
            "wrong {} tokens: {} checked and {} refused unchecked (addresses over their limit) \
             since the last such line, the latest from {client}",
            self.secret,
            logged.wrong,
            logged.limited
        );
        *logged = Logged {
            at: Some(Instant::now()),
            ..Logged::default()
        };
    }
}

/// Makes room for one more address: forgets those whose allowance is whole again, else the
/// one nearest to it.
fn forget_one(addresses: &mut HashMap<ClientKey, Instant>, now: Instant) {
    addresses.retain(|_, whole_at| *whole_at > now);
    if addresses.len() < MAX_ADDRESSES {
        return;
    }
    if let Some(nearest) = addresses.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
        addresses.remove(&nearest);
    }
}

#[cfg(test)]
mod tests;
