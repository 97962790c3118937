//! Operators' access: the admin session behind the dashboard and the comparison of a
//! presented token with the configured one. A login sets an HTTP-only, same-site cookie
//! holding an expiry and its HMAC (never the token), so a leaked cookie expires and a new
//! admin token invalidates every session. Comparisons run in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::deploy::log::LogKey;

/// How long a login lasts.
const SESSION: Duration = Duration::from_secs(12 * 60 * 60);
/// The session cookie's name.
pub(super) const COOKIE: &str = "deployhook_session";

/// Checks admin sessions.
#[derive(Clone)]
pub struct AdminAuth {
    /// Derived from the admin token and the database's key: changing either ends sessions.
    key: [u8; 32],
    /// The token's own MAC under `key`, to compare a login against in constant time.
    expected: Vec<u8>,
    secure_cookie: bool,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth([REDACTED])")
    }
}

impl AdminAuth {
    pub fn new(database_key: &LogKey, token: &SecretString, public_url: Option<&str>) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"deployhook admin session v1\0");
        digest.update(database_key.bytes());
        digest.update(token.expose_secret().as_bytes());
        let key: [u8; 32] = digest.finalize().into();
        let expected = mac(&key, b"token", token.expose_secret().as_bytes());
        Self {
            key,
            expected,
            secure_cookie: public_url.is_some_and(|u| u.starts_with("https://")),
        }
    }

    pub(super) fn token_matches(&self, given: &str) -> bool {
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        check.update(b"token\0");
        check.update(given.as_bytes());
        check.verify_slice(&self.expected).is_ok()
    }

    pub(super) fn cookie(&self, now: u64) -> String {
        let expires = now + SESSION.as_secs();
        let tag = hex::encode(mac(&self.key, b"session", expires.to_string().as_bytes()));
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{COOKIE}={expires}.{tag}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION.as_secs()
        )
    }

    pub(super) fn session_valid(&self, headers: &HeaderMap, now: u64) -> bool {
        let Some(value) = cookie_value(headers, COOKIE) else {
            return false;
        };
        let Some((expires, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(at), Ok(tag)) = (expires.parse::<u64>(), hex::decode(tag)) else {
            return false;
        };
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        check.update(b"session\0");
        check.update(expires.as_bytes());
        at > now && check.verify_slice(&tag).is_ok()
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

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
