//! Tests of GitHub App authentication: JWTs checked with the App's public key, tokens
//! cached and refreshed, and nothing secret in `Debug`. Longer than most files because
//! each test builds its own RSA key and mock GitHub.

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
    crate::github::client::http_client().unwrap()
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
