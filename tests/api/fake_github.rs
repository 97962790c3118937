//! A stateful fake of GitHub's Deployments API on wiremock: it remembers the deployments
//! it creates and lists them back, so a test can count what GitHub really ended up with
//! across server restarts and retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A deployment the fake created.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedDeployment {
    pub id: u64,
    pub repository: String,
    pub sha: String,
    pub environment: String,
    pub pull_request: Option<u64>,
    /// The payload deployhook asked for, which GitHub hands back in the deployment's events.
    pub payload: Value,
}

/// The fake's memory, shared with the test.
#[derive(Debug, Clone, Default)]
pub struct FakeGitHub {
    created: Arc<Mutex<Vec<CreatedDeployment>>>,
    next_id: Arc<AtomicU64>,
}

impl FakeGitHub {
    /// Mounts create, list and status endpoints on `server`.
    pub async fn mount(server: &MockServer) -> Self {
        let fake = Self {
            created: Arc::default(),
            next_id: Arc::new(AtomicU64::new(880_001)),
        };
        Mock::given(method("POST"))
            .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
            .respond_with(Create(fake.clone()))
            .with_priority(5)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments$"))
            .respond_with(List(fake.clone()))
            .with_priority(5)
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/repos/[^/]+/[^/]+/deployments/\d+/statuses$"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .with_priority(5)
            .mount(server)
            .await;
        fake
    }

    pub fn created(&self) -> Vec<CreatedDeployment> {
        self.created.lock().unwrap().clone()
    }

    /// How many deployments were created for pull request `number`.
    pub fn created_for(&self, number: u64) -> usize {
        self.created()
            .iter()
            .filter(|d| d.pull_request == Some(number))
            .count()
    }
}

struct Create(FakeGitHub);

impl Respond for Create {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let id = self.0.next_id.fetch_add(1, Ordering::SeqCst);
        let repository = request
            .url
            .path()
            .split('/')
            .skip(2)
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        self.0.created.lock().unwrap().push(CreatedDeployment {
            id,
            repository,
            sha: body["ref"].as_str().unwrap().to_owned(),
            environment: body["environment"].as_str().unwrap().to_owned(),
            pull_request: body["payload"]["pull_request"].as_u64(),
            payload: body["payload"].clone(),
        });
        ResponseTemplate::new(201).set_body_json(json!({"id": id, "sha": body["ref"]}))
    }
}

struct List(FakeGitHub);

impl Respond for List {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let (sha, environment) = (query("sha"), query("environment"));
        let listed: Vec<Value> = self
            .0
            .created()
            .into_iter()
            .filter(|d| sha.as_ref().is_none_or(|s| *s == d.sha))
            .filter(|d| environment.as_ref().is_none_or(|e| *e == d.environment))
            .map(|d| json!({"id": d.id, "sha": d.sha, "payload": {"pull_request": d.pull_request}}))
            .collect();
        ResponseTemplate::new(200).set_body_json(listed)
    }
}
