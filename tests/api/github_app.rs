//! deployhook as a GitHub App, and GitHub's rate limits: installation tokens fetched with a
//! JWT and reused, refreshed once on a 401; rate-limited calls wait as long as GitHub asks;
//! a missing permission is given up with a hint.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deployhook::config::{GitHubAuth, GitHubConfig};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{
    TestApp, WAIT, created_deployments, fixture_json, open_database, spawn_app_with,
};

const APP_ID: &str = "123456";
const INSTALLATION: u64 = 4242;
const TOKENS_PATH: &str = "/app/installations/4242/access_tokens";
const ADMIN_TOKEN: &str = "app-tests-admin-token-0123456789";

/// A 2048-bit key made once per test run: (private PKCS#1 PEM, public PEM).
fn app_key() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let private = key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        let public = rsa::RsaPublicKey::from(&key)
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (private, public)
    })
}

fn in_an_hour() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600)).to_string()
}

/// The server as a GitHub App, its token endpoint handing out `tokens` in turn.
async fn spawn_app_as_github_app(tokens: &[&str]) -> TestApp {
    let app = spawn_app_with(|config, _| {
        config.github = GitHubConfig {
            api_url: config.github.api_url.clone(),
            auth: GitHubAuth::App {
                app_id: APP_ID.into(),
                private_key: app_key().0.clone().into(),
            },
        };
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
    })
    .await;
    for (i, token) in tokens.iter().enumerate() {
        let mock = Mock::given(method("POST"))
            .and(path(TOKENS_PATH))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"token": token, "expires_at": in_an_hour()})),
            )
            .with_priority(u8::try_from(i + 1).unwrap());
        let mock = if i + 1 < tokens.len() {
            mock.up_to_n_times(1)
        } else {
            mock
        };
        mock.mount(&app.github).await;
    }
    app
}

/// Posts a merged pull request as the App's webhook delivers it.
async fn merge_through_app(app: &TestApp) {
    let merged = from_installation("pull_request.closed.merged.json");
    app.post_webhook("pull_request", &merged).await;
}

/// A payload of the App's webhook: it names the installation.
fn from_installation(fixture: &str) -> Vec<u8> {
    let mut event = fixture_json(fixture);
    event["installation"] =
        json!({"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="});
    event.to_string().into_bytes()
}

fn authorization(request: &Request) -> String {
    request.headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// `METHOD /path  Bearer <what>`, naming the kind of credential rather than printing it.
fn flow(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let auth = authorization(r);
            let credential = match auth.strip_prefix("Bearer ") {
                Some(t) if t.starts_with("eyJ") => "JWT".to_owned(),
                Some(t) => t.to_owned(),
                None => auth.clone(),
            };
            format!("{} {}  Bearer {credential}", r.method, r.url.path())
        })
        .collect()
}

#[tokio::test]
async fn as_an_app_a_merge_deploys_with_one_installation_token_fetched_by_a_verified_jwt() {
    let app = spawn_app_as_github_app(&["ghs_installation_token_1"]).await;
    merge_through_app(&app).await;
    app.wait_for_github("the deployment", |r| !created_deployments(r).is_empty())
        .await;
    // GitHub then sends the deployment, made through deployhook's own App.
    let mut deployment: Value =
        serde_json::from_slice(&from_installation("deployment.created.json")).unwrap();
    deployment["deployment"]["performed_via_github_app"] =
        json!({"id": 123_456, "slug": "deployhook-acme", "name": "deployhook (acme)"});
    app.post_webhook("deployment", deployment.to_string().as_bytes())
        .await;
    app.wait_for_final_status(880_001).await;

    let requests = app.github_requests().await;
    assert_eq!(
        flow(&requests),
        [
            "POST /app/installations/4242/access_tokens  Bearer JWT",
            "POST /repos/acme/widgets/deployments  Bearer ghs_installation_token_1",
            "POST /repos/acme/widgets/deployments/880001/statuses  Bearer ghs_installation_token_1",
            "POST /repos/acme/widgets/deployments/880001/statuses  Bearer ghs_installation_token_1",
            "POST /repos/acme/widgets/deployments/880001/statuses  Bearer ghs_installation_token_1",
        ],
        "two deliveries of one installation share one token"
    );

    let jwt = authorization(&requests[0]);
    let jwt = jwt.strip_prefix("Bearer ").unwrap();
    let public = DecodingKey::from_rsa_pem(app_key().1.as_bytes()).unwrap();
    let decoded = jsonwebtoken::decode::<Value>(jwt, &public, &Validation::new(Algorithm::RS256))
        .expect("the JWT verifies with the App's public key");
    assert_eq!(decoded.header.alg, Algorithm::RS256);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (iat, exp) = (
        decoded.claims["iat"].as_u64().unwrap(),
        decoded.claims["exp"].as_u64().unwrap(),
    );
    assert!(iat <= now - 60 && iat + 120 > now, "iat {iat}, now {now}");
    assert!(exp <= now + 600 && exp > now, "exp {exp}, now {now}");
    assert_eq!(decoded.claims["iss"], APP_ID);
}

#[tokio::test]
async fn a_refused_installation_token_is_replaced_once_and_the_call_retried() {
    let app = spawn_app_as_github_app(&["ghs_revoked", "ghs_fresh"]).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/deployments$"))
        .and(header("authorization", "Bearer ghs_revoked"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials", "status": "401"
        })))
        .with_priority(1)
        .mount(&app.github)
        .await;
    merge_through_app(&app).await;
    let requests = app
        .wait_for_github("the deployment", |r| {
            created_deployments(r)
                .iter()
                .any(|d| authorization(d) == "Bearer ghs_fresh")
        })
        .await;
    assert_eq!(
        flow(&requests),
        [
            "POST /app/installations/4242/access_tokens  Bearer JWT",
            "POST /repos/acme/widgets/deployments  Bearer ghs_revoked",
            "POST /app/installations/4242/access_tokens  Bearer JWT",
            "POST /repos/acme/widgets/deployments  Bearer ghs_fresh",
        ]
    );
}

/// Answers with `first` once, then 201, noting when each request came.
struct ThenCreated {
    first: ResponseTemplate,
    seen: Arc<Mutex<Vec<(Instant, SystemTime)>>>,
}

impl Respond for ThenCreated {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push((Instant::now(), SystemTime::now()));
        if seen.len() == 1 {
            self.first.clone()
        } else {
            ResponseTemplate::new(201).set_body_json(json!({"id": 880_001}))
        }
    }
}

/// Posts a merged pull request to a server whose first create-deployment call is answered
/// with `first`; returns when each create-deployment request arrived, once the deployment
/// was created and a moment more went by without another attempt.
async fn create_deployment_after(first: ResponseTemplate) -> Vec<(Instant, SystemTime)> {
    let app = spawn_app_with(|_, _| {}).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path_regex(r"/deployments$"))
        .respond_with(ThenCreated {
            first,
            seen: seen.clone(),
        })
        .with_priority(1)
        .mount(&app.github)
        .await;
    app.post_webhook(
        "pull_request",
        &crate::helpers::fixture("pull_request.closed.merged.json"),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn a_403_with_retry_after_is_retried_once_after_that_long() {
    let limited = ResponseTemplate::new(403)
        .insert_header("retry-after", "2")
        .set_body_json(json!({"message": "You have exceeded a secondary rate limit."}));
    let seen = create_deployment_after(limited).await;
    assert_eq!(seen.len(), 2, "retried exactly once");
    let waited = seen[1].0 - seen[0].0;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
}

#[tokio::test]
async fn an_exhausted_rate_limit_waits_until_its_reset() {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let exhausted = ResponseTemplate::new(403)
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", reset.to_string().as_str())
        .set_body_json(json!({"message": "API rate limit exceeded for installation ID 4242."}));
    let seen = create_deployment_after(exhausted).await;
    assert_eq!(seen.len(), 2, "retried exactly once");
    let retried_at = seen[1].1.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(
        retried_at >= reset,
        "retried at {retried_at}, reset at {reset}"
    );
}

#[tokio::test]
async fn a_secondary_rate_limit_without_a_wait_backs_off_before_retrying() {
    // The test configuration's first secondary backoff is 300 ms (GitHub's advice: 60 s).
    let limited = ResponseTemplate::new(429)
        .set_body_json(json!({"message": "You have exceeded a secondary rate limit."}));
    let seen = create_deployment_after(limited).await;
    assert_eq!(seen.len(), 2);
    let waited = seen[1].0 - seen[0].0;
    assert!(
        waited >= Duration::from_millis(300),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_403_without_rate_limit_headers_is_not_retried_and_names_the_missing_permission() {
    let app = spawn_app_as_github_app(&["ghs_installation_token_1"]).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/deployments$"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
        })))
        .with_priority(1)
        .mount(&app.github)
        .await;
    merge_through_app(&app).await;
    let database = app.dir.path().join("deployhook.db");
    let deadline = Instant::now() + WAIT;
    let error: String = loop {
        let failed = open_database(&database)
            .query_row(
                "SELECT last_error FROM outbox WHERE state = 'failed'",
                [],
                |row| row.get(0),
            )
            .ok();
        if let Some(error) = failed {
            break error;
        }
        assert!(Instant::now() < deadline, "the call was never given up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        error.contains("Resource not accessible by integration"),
        "{error}"
    );
    assert!(
        error.contains("the App lacks a permission: give it Deployments: read and write"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts = created_deployments(&app.github_requests().await).len();
    assert_eq!(attempts, 1, "a missing permission is not retried");

    // The operator sees it on the dashboard too.
    let session = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/", &session).await;
    assert!(
        page.contains("Calls given up (GitHub, notifications)"),
        "{page}"
    );
    assert!(page.contains("the App lacks a permission"), "{page}");
}

#[tokio::test]
async fn a_delivery_without_an_installation_uses_the_apps_installation_on_the_repository() {
    let app = spawn_app_as_github_app(&["ghs_installation_token_1"]).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/installation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": INSTALLATION})))
        .mount(&app.github)
        .await;
    // A repository webhook's delivery: no `installation` in the payload.
    app.post_webhook(
        "pull_request",
        &crate::helpers::fixture("pull_request.closed.merged.json"),
    )
    .await;
    let requests = app
        .wait_for_github("the deployment", |r| !created_deployments(r).is_empty())
        .await;
    assert_eq!(
        flow(&requests),
        [
            "GET /repos/acme/widgets/installation  Bearer JWT",
            "POST /app/installations/4242/access_tokens  Bearer JWT",
            "POST /repos/acme/widgets/deployments  Bearer ghs_installation_token_1",
        ]
    );
}
