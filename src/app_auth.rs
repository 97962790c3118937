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

use crate::github::{GitHubError, error_from};

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
            .map_err(|err| GitHubError::Transport(err.without_url()))?;
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
mod tests {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::{DecodingKey, TokenData, Validation};
    use rsa::RsaPrivateKey;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
    use rsa::pkcs8::EncodePrivateKey;
    use secrecy::ExposeSecret;
    use serde_json::json;
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    use super::*;

    const APP_ID: &str = "123456";
    /// The tests' "now", and the expiry GitHub's fake gives every token: an hour later.
    const START: &str = "2026-11-26T15:23:14Z";
    const EXPIRES_AT: &str = "2026-11-26T16:23:14Z";

    struct TestKey {
        private: RsaPrivateKey,
        pkcs1_pem: String,
        public_pem: String,
    }

    fn generate_key() -> TestKey {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        TestKey {
            pkcs1_pem: private.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: private
                .to_public_key()
                .to_pkcs1_pem(LineEnding::LF)
                .unwrap(),
            private,
        }
    }

    /// The app's key, generated once per test binary.
    fn app_key() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(generate_key)
    }

    /// Some other app's key.
    fn other_key() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(generate_key)
    }

    fn credentials() -> AppCredentials {
        AppCredentials::from_pem(APP_ID, app_key().pkcs1_pem.as_bytes()).unwrap()
    }

    fn time(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    fn unix(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[derive(Debug, Deserialize)]
    struct ReadClaims {
        iat: u64,
        exp: u64,
        iss: String,
    }

    fn verify(jwt: &str, public_pem: &str) -> jsonwebtoken::errors::Result<TokenData<ReadClaims>> {
        let mut validation = Validation::new(Algorithm::RS256);
        // The tests' clock is fixed, so "expired" is judged by the asserts, not by today.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[APP_ID]);
        let key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
        jsonwebtoken::decode(jwt, &key, &validation)
    }

    /// A clock that only moves when told to.
    #[derive(Debug)]
    struct ManualClock(Mutex<SystemTime>);

    impl ManualClock {
        fn starting_at(start: SystemTime) -> Arc<Self> {
            Arc::new(Self(Mutex::new(start)))
        }

        fn set(&self, to: SystemTime) {
            *self.0.lock().unwrap() = to;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// GitHub's token endpoint: each answer is a new token, `ghs_<installation>_<n>`.
    #[derive(Default)]
    struct IssueTokens(AtomicUsize);

    impl Respond for IssueTokens {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            let installation = request.url.path().split('/').nth(3).unwrap_or("none");
            ResponseTemplate::new(201).set_body_json(json!({
                "token": format!("ghs_{installation}_{n}"),
                "expires_at": EXPIRES_AT,
                "permissions": {"deployments": "write"},
                "repository_selection": "all"
            }))
        }
    }

    fn token_endpoint() -> wiremock::MockBuilder {
        Mock::given(method("POST")).and(path_regex(r"^/app/installations/\d+/access_tokens$"))
    }

    async fn github_issuing_tokens() -> MockServer {
        let server = MockServer::start().await;
        token_endpoint()
            .respond_with(IssueTokens::default())
            .mount(&server)
            .await;
        server
    }

    /// A client with the defaults `GitHubClient::new` sets.
    fn github_http() -> reqwest::Client {
        crate::github::http_client().unwrap()
    }

    fn tokens_from(api_url: String, clock: Arc<ManualClock>) -> InstallationTokens {
        InstallationTokens::new(github_http(), api_url, credentials(), clock)
    }

    async fn requests_to(server: &MockServer) -> Vec<Request> {
        server.received_requests().await.unwrap()
    }

    fn exposed(token: SecretString) -> String {
        token.expose_secret().to_owned()
    }

    #[test]
    fn jwt_is_signed_rs256_by_the_app_key_with_the_claims_github_asks_for() {
        let now = time(START);
        let jwt = credentials().jwt(now).unwrap();

        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let claims = verify(&jwt, &app_key().public_pem).unwrap().claims;
        assert!(
            claims.iat <= unix(now) - 60,
            "iat {} not backdated",
            claims.iat
        );
        assert!(claims.exp > unix(now), "exp {} already past", claims.exp);
        assert!(
            claims.exp <= unix(now) + 600,
            "exp {} beyond 10 min",
            claims.exp
        );
        assert_eq!(claims.iss, APP_ID);
    }

    #[test]
    fn jwt_does_not_verify_with_another_key() {
        let jwt = credentials().jwt(time(START)).unwrap();

        assert!(verify(&jwt, &other_key().public_pem).is_err());
    }

    #[test]
    fn from_pem_accepts_pkcs8_as_well_as_github_s_pkcs1() {
        let pkcs8 = app_key().private.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));

        let credentials = AppCredentials::from_pem(APP_ID, pkcs8.as_bytes()).unwrap();

        assert_eq!(credentials.app_id(), APP_ID);
        let jwt = credentials.jwt(time(START)).unwrap();
        assert!(verify(&jwt, &app_key().public_pem).is_ok());
    }

    #[test]
    fn from_pem_rejects_what_is_not_a_private_key_without_repeating_it() {
        let pem = &app_key().pkcs1_pem;
        let lines: Vec<&str> = pem.lines().collect();
        // Line 3 lies inside the modulus: still valid base64 and DER, but no longer a key.
        let mut damaged = lines.clone();
        let filler = "A".repeat(lines[3].len());
        damaged[3] = &filler;
        let damaged = damaged.join("\n");
        let framed_garbage =
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LXNhdWNl\n-----END RSA PRIVATE KEY-----\n";
        let public = app_key().public_pem.as_str();

        for (input, distinctive) in [
            ("hunter2-is-not-a-key", "hunter2"),
            (framed_garbage, "c2VjcmV0LXNhdWNl"),
            (damaged.as_str(), lines[10]),
            (public, public.lines().nth(2).unwrap()),
        ] {
            let message = match AppCredentials::from_pem(APP_ID, input.as_bytes()) {
                Ok(_) => panic!("accepted {distinctive:?}"),
                Err(err) => format!("{err:#}"),
            };
            assert!(message.contains("private key"), "{message}");
            assert!(!message.contains(distinctive), "{message}");
        }
    }

    #[test]
    fn from_pem_rejects_an_empty_app_id() {
        let err = AppCredentials::from_pem(" ", app_key().pkcs1_pem.as_bytes()).unwrap_err();

        assert!(err.to_string().contains("GitHub App id is empty"), "{err}");
    }

    #[tokio::test]
    async fn debug_output_shows_neither_the_key_nor_a_token() {
        let server = github_issuing_tokens().await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));
        let token = exposed(tokens.token(7).await.unwrap());

        assert_eq!(
            format!("{:?}", credentials()),
            format!(r#"AppCredentials {{ app_id: "{APP_ID}", key: "[REDACTED]" }}"#)
        );
        let debug = format!("{tokens:?}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
        let key_line = app_key().pkcs1_pem.lines().nth(5).unwrap();
        for secret in ["PRIVATE KEY", key_line, token.as_str()] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[tokio::test]
    async fn a_token_is_fetched_once_with_the_app_jwt_then_served_from_the_cache() {
        let server = github_issuing_tokens().await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));

        let first = exposed(tokens.token(7).await.unwrap());
        let second = exposed(tokens.token(7).await.unwrap());

        assert_eq!(first, "ghs_7_1");
        assert_eq!(second, "ghs_7_1");
        let requests = requests_to(&server).await;
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url.path(), "/app/installations/7/access_tokens");
        let authorization = requests[0].headers["authorization"].to_str().unwrap();
        let jwt = authorization.strip_prefix("Bearer ").unwrap();
        let claims = verify(jwt, &app_key().public_pem).unwrap().claims;
        assert_eq!(
            claims.iat,
            unix(time(START)) - 60,
            "JWT not made at the clock's now"
        );
    }

    #[tokio::test]
    async fn concurrent_callers_for_one_installation_share_one_request() {
        let server = MockServer::start().await;
        // The delay keeps the first request open while the second caller arrives.
        token_endpoint()
            .respond_with(DelayedIssue(
                Duration::from_millis(200),
                IssueTokens::default(),
            ))
            .mount(&server)
            .await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));

        let (a, b) = tokio::join!(tokens.token(7), tokens.token(7));

        assert_eq!(exposed(a.unwrap()), "ghs_7_1");
        assert_eq!(exposed(b.unwrap()), "ghs_7_1");
        assert_eq!(requests_to(&server).await.len(), 1);
    }

    /// [`IssueTokens`], answering after a delay.
    struct DelayedIssue(Duration, IssueTokens);

    impl Respond for DelayedIssue {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            self.1.respond(request).set_delay(self.0)
        }
    }

    #[tokio::test]
    async fn each_installation_gets_its_own_token_and_request() {
        let server = github_issuing_tokens().await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));

        let seven = exposed(tokens.token(7).await.unwrap());
        let eight = exposed(tokens.token(8).await.unwrap());

        assert_eq!(seven, "ghs_7_1");
        assert_eq!(eight, "ghs_8_2");
        let paths: Vec<String> = requests_to(&server)
            .await
            .iter()
            .map(|r| r.url.path().to_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "/app/installations/7/access_tokens",
                "/app/installations/8/access_tokens"
            ]
        );
    }

    #[tokio::test]
    async fn a_slow_installation_does_not_hold_up_another() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/app/installations/1/access_tokens"))
            .respond_with(DelayedIssue(Duration::from_secs(5), IssueTokens::default()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/app/installations/2/access_tokens"))
            .respond_with(IssueTokens::default())
            .mount(&server)
            .await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));

        // `biased`: the slow installation starts its fetch first.
        let fast = tokio::select! {
            biased;
            _ = tokens.token(1) => panic!("installation 2 waited for installation 1"),
            fast = tokens.token(2) => fast,
        };

        assert_eq!(exposed(fast.unwrap()), "ghs_2_1");
    }

    #[tokio::test]
    async fn a_token_is_fetched_again_once_within_the_refresh_margin_of_its_expiry() {
        let server = github_issuing_tokens().await;
        let clock = ManualClock::starting_at(time(START));
        let tokens = tokens_from(server.uri(), clock.clone());
        let refresh_at = time(EXPIRES_AT) - REFRESH_MARGIN;
        assert_eq!(exposed(tokens.token(7).await.unwrap()), "ghs_7_1");

        clock.set(refresh_at - Duration::from_secs(1));
        let before_margin = exposed(tokens.token(7).await.unwrap());
        clock.set(refresh_at);
        let within_margin = exposed(tokens.token(7).await.unwrap());

        assert_eq!(before_margin, "ghs_7_1");
        assert_eq!(within_margin, "ghs_7_2");
        assert_eq!(requests_to(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn invalidate_makes_the_next_call_fetch_a_new_token_for_that_installation_only() {
        let server = github_issuing_tokens().await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));
        tokens.token(7).await.unwrap();
        tokens.token(8).await.unwrap();

        tokens.invalidate(7);

        assert_eq!(exposed(tokens.token(7).await.unwrap()), "ghs_7_3");
        assert_eq!(exposed(tokens.token(8).await.unwrap()), "ghs_8_2");
        assert_eq!(requests_to(&server).await.len(), 3);
    }

    #[tokio::test]
    async fn a_401_from_the_token_endpoint_keeps_github_s_message_and_is_not_cached() {
        let server = MockServer::start().await;
        token_endpoint()
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "message": "A JSON web token could not be decoded",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401"
            })))
            .mount(&server)
            .await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));

        let first = tokens.token(7).await;
        let second = tokens.token(7).await;

        match first {
            Err(GitHubError::Status {
                status, message, ..
            }) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                assert_eq!(message, "A JSON web token could not be decoded");
            }
            other => panic!("expected a 401 status error, got {other:?}"),
        }
        assert!(second.is_err());
        assert_eq!(requests_to(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn an_unreadable_expiry_is_a_decode_error() {
        let server = MockServer::start().await;
        token_endpoint()
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "token": "ghs_unused",
                "expires_at": "in an hour"
            })))
            .mount(&server)
            .await;
        let tokens = tokens_from(server.uri(), ManualClock::starting_at(time(START)));

        let result = tokens.token(7).await;

        assert!(matches!(result, Err(GitHubError::Decode(_))), "{result:?}");
    }

    #[tokio::test]
    async fn an_unreachable_github_is_a_transport_error() {
        // Port 1 (tcpmux) is closed on any machine that runs these tests.
        let tokens = tokens_from(
            "http://127.0.0.1:1".to_owned(),
            ManualClock::starting_at(time(START)),
        );

        let result = tokens.token(7).await;

        assert!(
            matches!(result, Err(GitHubError::Transport(_))),
            "{result:?}"
        );
    }
}
