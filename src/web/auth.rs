//! Operators' access: the sessions behind the dashboard and the comparison of a presented
//! admin token with the configured one. A sign-in (with GitHub, or with the admin token)
//! sets an HTTP-only, same-site cookie holding an expiry, a random session id, who signed in
//! and how, and their HMAC (never a token), so a leaked cookie expires, no one can turn
//! theirs into another person's, and a new admin token invalidates every session; signing
//! out revokes the session's id for good (kept in the database until it would have expired
//! anyway).
//! Comparisons run in constant time. Sign-in and sign-out refuse cross-site requests, and
//! wrong tokens — at the sign-in and the admin API alike — are limited per client address
//! (`guesses`), never for the whole server, so that no stranger can lock the admin out;
//! the token's required length is what makes guessing hopeless.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::deploy::log::LogKey;
use crate::metrics::Metrics;
use crate::model::people::valid_login;
use crate::model::{Actor, Via};
use crate::web::guesses::{GuessLimit, Verdict};

/// How long a login lasts.
const SESSION: Duration = Duration::from_secs(12 * 60 * 60);
/// The session cookie's name.
pub(super) const COOKIE: &str = "deployhook_session";
/// How many `deployhook_session` cookies of a request are tried: a browser may hold a stale
/// one beside the current one (another path, a sibling domain), but not dozens.
const MAX_SESSION_COOKIES: usize = 8;

/// Checks sessions and the admin token.
#[derive(Clone)]
pub struct AdminAuth {
    /// Derived from the admin token and the database's key: changing either ends sessions.
    key: [u8; 32],
    /// The admin token's own MAC under `key`, to compare a login against in constant time;
    /// `None` without an admin token (GitHub sign-in only).
    expected: Option<Vec<u8>>,
    secure_cookie: bool,
    /// Sessions signed out before they expired: id → expiry (Unix seconds).
    revoked: Arc<Mutex<HashMap<String, u64>>>,
    /// Wrong tokens, per client address: the sign-in's and the admin API's.
    guesses: Arc<GuessLimit>,
}

/// A valid session, from its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// Unix seconds.
    pub expires: u64,
    /// Who signed in: a GitHub login, or `admin` for the admin token.
    pub actor: Actor,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth([REDACTED])")
    }
}

impl AdminAuth {
    pub fn new(
        database_key: &LogKey,
        token: Option<&SecretString>,
        public_url: Option<&str>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"deployhook session v2\0");
        digest.update(database_key.bytes());
        if let Some(token) = token {
            digest.update(token.expose_secret().as_bytes());
        }
        let key: [u8; 32] = digest.finalize().into();
        let expected = token.map(|t| mac(&key, b"token", t.expose_secret().as_bytes()));
        Self {
            key,
            expected,
            secure_cookie: public_url.is_some_and(|u| u.starts_with("https://")),
            revoked: Arc::default(),
            guesses: Arc::new(GuessLimit::new("admin", metrics)),
        }
    }

    /// This, knowing the sessions signed out before (from the database).
    pub fn with_revoked(self, revoked: impl IntoIterator<Item = (String, u64)>) -> Self {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(revoked);
        self
    }

    /// Whether `given` is the admin token, from `client`: one of its address's guesses is
    /// taken first (see [`crate::web::guesses`]).
    pub(super) fn check_token(&self, client: IpAddr, given: &str) -> Verdict {
        self.guesses.check(client, || self.token_matches(given))
    }

    /// Ends `session` for good.
    pub(super) fn revoke(&self, session: &Session, now: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, expires| *expires > now);
        revoked.insert(session.id.clone(), session.expires);
    }

    fn token_matches(&self, given: &str) -> bool {
        let Some(expected) = &self.expected else {
            return false;
        };
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        check.update(b"token\0");
        check.update(given.as_bytes());
        check.verify_slice(expected).is_ok()
    }

    /// Whether an admin token is configured.
    pub fn has_token(&self) -> bool {
        self.expected.is_some()
    }

    /// A new session's cookie, for `actor` (a GitHub login, or the admin token's `admin`).
    pub(crate) fn cookie(&self, now: u64, actor: &Actor) -> String {
        let expires = now + SESSION.as_secs();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let login = if valid_login(&actor.login) {
            actor.login.as_str()
        } else {
            "admin"
        };
        let signed = format!("{expires}.{id}.{}.{login}", actor.via.as_str());
        let tag = hex::encode(mac(&self.key, b"session", signed.as_bytes()));
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{COOKIE}={signed}.{tag}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION.as_secs()
        )
    }

    /// The request's session: the first of its (first [`MAX_SESSION_COOKIES`]) session
    /// cookies that is genuine, unexpired and not signed out. Not only the first cookie: a
    /// stale one sent before the current one must not sign the admin out.
    pub(crate) fn session(&self, headers: &HeaderMap, now: u64) -> Option<Session> {
        cookie_values(headers, COOKIE)
            .take(MAX_SESSION_COOKIES)
            .find_map(|value| self.valid_session(value, now))
    }

    /// The session of one cookie's `value`, if it is genuine, unexpired and not signed out.
    fn valid_session(&self, value: &str, now: u64) -> Option<Session> {
        let (signed, tag) = value.rsplit_once('.')?;
        let mut parts = signed.split('.');
        let (expires, id, via, login) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_login(login) {
            return None;
        }
        let via = Via::parse(via).filter(|v| matches!(v, Via::GitHub | Via::AdminToken))?;
        let (at, tag) = (expires.parse::<u64>().ok()?, hex::decode(tag).ok()?);
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        check.update(b"session\0");
        check.update(signed.as_bytes());
        if at <= now || check.verify_slice(&tag).is_err() {
            return None;
        }
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        if revoked.contains_key(id) {
            return None;
        }
        Some(Session {
            id: id.to_owned(),
            expires: at,
            actor: Actor::person(login, via),
        })
    }

    /// The token the dashboard's forms carry for `session`: a form posted from another
    /// site cannot know it. (The session cookie is `SameSite=Strict` and cross-site posts
    /// are refused by their headers already; this holds where a browser sends neither.)
    pub(super) fn form_token(&self, session: &Session) -> String {
        hex::encode(mac(&self.key, b"form", session.id.as_bytes()))
    }

    /// Whether `given` is `session`'s form token, compared in constant time.
    pub(super) fn form_token_valid(&self, session: &Session, given: &str) -> bool {
        let Ok(given) = hex::decode(given) else {
            return false;
        };
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        check.update(b"form\0");
        check.update(session.id.as_bytes());
        check.verify_slice(&given).is_ok()
    }

    pub(super) fn session_valid(&self, headers: &HeaderMap, now: u64) -> bool {
        self.session(headers, now).is_some()
    }
}

fn mac(key: &[u8], purpose: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key size");
    mac.update(purpose);
    mac.update(b"\0");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `given` is `expected`, compared in constant time (through their MACs, so
/// neither their contents nor their lengths show in the timing).
pub fn same_secret(given: &str, expected: &str) -> bool {
    let key = b"deployhook constant-time comparison";
    let mut check = Hmac::<Sha256>::new_from_slice(key).expect("any key size");
    check.update(given.as_bytes());
    let mut reference = Hmac::<Sha256>::new_from_slice(key).expect("any key size");
    reference.update(expected.as_bytes());
    check
        .verify_slice(&reference.finalize().into_bytes())
        .is_ok()
}

/// The values of the cookies named `name`, in the order sent, over every `Cookie` header.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a request comes from another site, by what browsers say of it: `Sec-Fetch-Site`
/// (every current browser), else an `Origin` that is not this server's. A request with
/// neither (curl, an old browser) is not a browser's cross-site form post.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text("origin") else {
        return false;
    };
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    match (origin_host, text("host")) {
        (Some(origin_host), Some(host)) => !origin_host.eq_ignore_ascii_case(host),
        _ => true, // `Origin: null`, or no Host to compare with
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
