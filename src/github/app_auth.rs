//! Authentication as a GitHub App: the app's private key signs short-lived JWTs, and a JWT
//! buys an installation access token, which is what the REST calls then carry.
//!
//! This module owns the key and the tokens so that nothing else handles them: the key is
//! parsed once (and proven able to sign, so a wrong file fails at startup, not at the first
//! deployment), and tokens are cached per installation until shortly before they expire,
//! because GitHub rate-limits token creation and every call would otherwise pay an extra
//! round trip. None of the key, a JWT or a token is ever logged or shown by `Debug`.
//!
//! GitHub's guides: "Generating a JSON Web Token (JWT) for a GitHub App" and "Generating an
//! installation access token for a GitHub App".

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use crate::github::error::{GitHubError, error_from};

/// How far in the past a JWT's `iat` is set: GitHub advises 60 seconds, so that a clock
/// slightly ahead of GitHub's does not produce a JWT "issued in the future".
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// How far in the future a JWT's `exp` is set: GitHub rejects more than 10 minutes; one
/// minute less leaves room for a clock slightly behind GitHub's.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// How long before its `expires_at` a cached installation token is replaced. Tokens live an
/// hour; five minutes covers clock drift between us and GitHub and guarantees that a token
/// handed out outlives any request made with it.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A GitHub App's identity: its id and the private key that signs its JWTs.
pub struct AppCredentials {
    /// The numeric app id, or the client id (`Iv…`); GitHub accepts either as `iss`.
    app_id: String,
    key: EncodingKey,
}

// By hand, so that the key can never be printed.
impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// The claims GitHub reads in an app JWT.
#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

impl AppCredentials {
    /// Reads the app's RSA private key from PEM: PKCS#1 (`BEGIN RSA PRIVATE KEY`, as GitHub
    /// downloads it) or PKCS#8 (`BEGIN PRIVATE KEY`). Errors say what is wrong and never
    /// repeat the input.
    pub fn from_pem(app_id: &str, pem: &[u8]) -> anyhow::Result<Self> {
        let app_id = app_id.trim();
        anyhow::ensure!(
            !app_id.is_empty() && !app_id.contains(char::is_whitespace),
            "the GitHub App id is empty or contains spaces; use the app's numeric id or its \
             client id (Iv…), both shown on the app's settings page"
        );
        // jsonwebtoken's errors name the problem (bad framing, bad ASN.1), not the bytes.
        let key = EncodingKey::from_rsa_pem(pem).map_err(|err| {
            anyhow::anyhow!(
                "the GitHub App private key is not an RSA private key in PEM form ({err}); \
                 expected the .pem file downloaded from the app's settings \
                 (-----BEGIN RSA PRIVATE KEY-----) or its PKCS#8 form (-----BEGIN PRIVATE KEY-----)"
            )
        })?;
        let credentials = Self {
            app_id: app_id.to_owned(),
            key,
        };
        // `from_rsa_pem` only checks the PEM's framing: a public key or a damaged private key
        // passes it and fails at its first signature. Signing once here moves that to startup.
        credentials.jwt(SystemTime::now()).context(
            "the GitHub App private key cannot sign (the app's public key, or a damaged file?)",
        )?;
        Ok(credentials)
    }

    /// The app id or client id the JWTs are issued by.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// A JWT authenticating as the app, valid from a minute before `now` to nine minutes
    /// after (RS256; `iss` is the app id).
    pub fn jwt(&self, now: SystemTime) -> anyhow::Result<String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?;
        let claims = Claims {
            iat: now.saturating_sub(JWT_BACKDATE).as_secs(),
            exp: (now + JWT_LIFETIME).as_secs(),
            iss: &self.app_id,
        };
        // `Header::new` also sets `typ: JWT`.
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .context("could not sign the GitHub App JWT")
    }
}

/// A source of the current time, so tests can move it without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// An installation token and when GitHub says it expires.
struct CachedToken {
    token: SecretString,
    expires_at: SystemTime,
}

/// One installation's cache entry. Its async mutex is held across the fetch, so callers who
/// arrive meanwhile wait for that one request instead of each making their own.
type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// The body of GitHub's 201 answer; other fields (permissions, repositories) are not read.
#[derive(Deserialize)]
struct AccessTokenBody {
    token: String,
    #[serde(deserialize_with = "rfc3339")]
    expires_at: SystemTime,
}

/// Reads GitHub's `2026-11-26T16:23:14Z`; failing inside serde makes a bad timestamp a
/// [`GitHubError::Decode`] like any other unreadable answer.
fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
}

/// Installation access tokens, fetched with the app's JWT from
/// `POST {api_url}/app/installations/{installation_id}/access_tokens` and cached per
/// installation until [`REFRESH_MARGIN`] before they expire.
pub struct InstallationTokens {
    http: reqwest::Client,
    api_url: String,
    credentials: AppCredentials,
    clock: Arc<dyn Clock>,
    /// A std mutex: it is held only to find or insert a slot, never across an await.
    slots: Mutex<HashMap<u64, Slot>>,
}

// By hand, to show the configuration and nothing of the cache.
impl fmt::Debug for InstallationTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationTokens")
            .field("api_url", &self.api_url)
            .field("credentials", &self.credentials)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl InstallationTokens {
    /// `http` is expected to carry GitHub's default headers and timeouts, like the one
    /// [`crate::github::GitHubClient`] builds.
    pub fn new(
        http: reqwest::Client,
        api_url: String,
        credentials: AppCredentials,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            api_url,
            credentials,
            clock,
            slots: Mutex::default(),
        }
    }

    /// The installation's token: from the cache, or fetched. Concurrent callers for one
    /// installation share a single request; different installations don't wait on each other.
    pub async fn token(&self, installation_id: u64) -> Result<SecretString, GitHubError> {
        let slot = self.slot(installation_id);
        let mut cached = slot.lock().await;
        if let Some(current) = cached.as_ref()
            && self.clock.now() + REFRESH_MARGIN < current.expires_at
        {
            return Ok(current.token.clone());
        }
        // A failure leaves the slot empty, so the next caller asks GitHub again.
        let fetched = self.fetch(installation_id).await?;
        let token = fetched.token.clone();
        *cached = Some(fetched);
        Ok(token)
    }

    /// Forgets the installation's cached token (GitHub answered 401 with it: revoked, or the
    /// installation's permissions changed), so that the next [`Self::token`] fetches a new one.
    pub fn invalidate(&self, installation_id: u64) {
        // Removing the slot rather than emptying it needs no await: a fetch still running on
        // the old slot finishes for its own callers, and later callers start afresh.
        self.slots_map().remove(&installation_id);
    }

    fn slot(&self, installation_id: u64) -> Slot {
        Arc::clone(self.slots_map().entry(installation_id).or_default())
    }

    fn slots_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        // No code can panic while holding the lock with the map half-changed, so a poisoned
        // lock still guards a consistent map.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request for a new token, authenticated with a fresh JWT.
    async fn fetch(&self, installation_id: u64) -> Result<CachedToken, GitHubError> {
        let url = format!(
            "{}/app/installations/{installation_id}/access_tokens",
            self.api_url
        );
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.bearer()?)
            .send()
            .await
            .map_err(GitHubError::Transport)?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        let body: AccessTokenBody = response.json().await.map_err(GitHubError::Decode)?;
        tracing::info!(
            installation_id,
            expires_at = %humantime::format_rfc3339_seconds(body.expires_at),
            "fetched a GitHub App installation token"
        );
        Ok(CachedToken {
            token: SecretString::from(body.token),
            expires_at: body.expires_at,
        })
    }

    /// `Authorization: Bearer <jwt>`, marked sensitive so that it is never printed.
    /// `Bearer <JWT>`: how the App itself (not an installation) authenticates.
    pub(crate) fn bearer(&self) -> Result<HeaderValue, GitHubError> {
        // Not a GitHub answer, but a request GitHub could only have refused: reported the way
        // `GitHubClient` reports a token it cannot send.
        let refused = |message: String| GitHubError::Status {
            status: StatusCode::UNAUTHORIZED,
            message,
            retry_after: None,
        };
        let jwt = self
            .credentials
            .jwt(self.clock.now())
            .map_err(|err| refused(format!("{err:#}")))?;
        let mut value = HeaderValue::try_from(format!("Bearer {jwt}"))
            .map_err(|_| refused("the GitHub App JWT is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
