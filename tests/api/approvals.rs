//! Approvals, end to end: a signed `deployment` event into an environment with
//! `approvals = 1` makes the real server tell GitHub `pending`, "waiting for approval by
//! …", and a notification receiver `approval_requested`, and run nothing; approved (through
//! the store, between two runs of the server: the approve endpoint is the web layer's) it
//! runs after the restart; not approved in time, it ends `failure`.

use std::path::Path;
use std::time::Duration;

use deployhook::config::{Config, NotifyConfig, NotifyKind};
use deployhook::model::{ApprovalRule, DeploymentId, Grantee};
use deployhook::store::{Store, approvals, now_ms};
use deployhook::web::Application;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    PostedStatus, WAIT, assert_ack, fixture_json, mount_github_defaults, send_signed, statuses,
    test_config, write_script,
};

/// The fixture's deployment.
const DEPLOYMENT: u64 = 880_001;

/// A server that can be stopped and started again on the same database and fake GitHub.
struct Setup {
    github: MockServer,
    receiver: MockServer,
    dir: tempfile::TempDir,
    timeout: Duration,
}

/// One run of the server.
struct Running {
    url: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Setup {
    async fn new(timeout: Duration) -> Self {
        let github = MockServer::start().await;
        mount_github_defaults(&github).await;
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&receiver)
            .await;
        let dir = tempfile::tempdir().unwrap();
        Self {
            github,
            receiver,
            dir,
            timeout,
        }
    }

    fn ran(&self) -> bool {
        self.dir.path().join("deployed").exists()
    }

    fn config(&self) -> Config {
        let dir = self.dir.path();
        let marker = dir.join("deployed");
        let script = write_script(dir, "deploy.sh", &format!("touch '{}'", marker.display()));
        let mut config = test_config(&self.github, vec![script.display().to_string()], dir);
        config.environments[0].approval = Some(ApprovalRule {
            reviewers: vec![
                Grantee::parse("octocat").unwrap(),
                Grantee::parse("@acme/sre").unwrap(),
            ],
            timeout: self.timeout,
            ..ApprovalRule::new(1)
        });
        let url = format!("{}/hooks/deployhook", self.receiver.uri());
        config.notify = vec![NotifyConfig::new(NotifyKind::Webhook, "TEST_HOOK_URL", url)];
        config
    }

    async fn start(&self) -> Running {
        let app = Application::build(self.config()).await.unwrap();
        let url = format!("http://{}", app.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Running { url, stop, server }
    }

    fn database(&self) -> std::path::PathBuf {
        self.dir.path().join("deployhook.db")
    }

    /// The statuses GitHub received for the deployment once `done` holds for them.
    async fn wait_for_statuses(
        &self,
        what: &str,
        done: impl Fn(&[PostedStatus]) -> bool,
    ) -> Vec<PostedStatus> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let requests = self.github.received_requests().await.unwrap_or_default();
            let told = statuses(&requests);
            if done(&told) {
                return told;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; statuses: {told:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events the receiver got once one is `event`, in order.
    async fn wait_for_event(&self, event: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let received: Vec<Request> = self.receiver.received_requests().await.unwrap();
            let bodies: Vec<Value> = received
                .iter()
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect();
            if bodies.iter().any(|b| b["event"] == event) {
                return bodies;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {event}; received: {bodies:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Running {
    /// Sends the fixture's deployment event, signed, as a new delivery; its answer.
    async fn deploy(&self) -> Value {
        let event = fixture_json("deployment.created.json");
        let response = send_signed(
            &reqwest::Client::new(),
            &self.url,
            "deployment",
            event.to_string().as_bytes(),
            &uuid::Uuid::new_v4().to_string(),
            470_000_001,
        )
        .await
        .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(WAIT * 3, self.server)
            .await
            .expect("the server did not stop in time")
            .unwrap()
            .unwrap();
    }
}

fn states(told: &[PostedStatus]) -> Vec<&str> {
    told.iter()
        .filter(|s| s.deployment == DEPLOYMENT)
        .map(|s| s.state.as_str())
        .collect()
}

/// The job's state in the database, read beside the server.
fn job_state(database: &Path) -> String {
    crate::helpers::open_database(database)
        .query_row(
            "SELECT state FROM jobs WHERE deployment_id = ?1",
            [DEPLOYMENT as i64],
            |row| row.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn a_deployment_waits_for_its_approval_and_runs_once_approved_even_across_a_restart() {
    let setup = Setup::new(Duration::from_secs(3600)).await;
    let server = setup.start().await;
    let ack = server.deploy().await;
    assert_ack(
        &ack,
        "accepted",
        "deployment 880001 of acme/widgets@6f1e3c9 to production: waiting for approval by \
         octocat, @acme/sre",
    );
    let told = setup.wait_for_statuses("pending", |s| !s.is_empty()).await;
    assert_eq!(states(&told), ["pending"]);
    assert_eq!(
        told[0].description,
        "waiting for approval by octocat, @acme/sre"
    );
    assert_eq!(told[0].log_url, None, "nothing ran: no log yet");
    let events = setup.wait_for_event("approval_requested").await;
    let asked = &events[0];
    assert_eq!(asked["who"], "octo-dev", "{asked}");
    assert_eq!(asked["deployment"], DEPLOYMENT);
    let description = asked["description"].as_str().unwrap();
    assert!(
        description.starts_with("waiting for approval by octocat, @acme/sre, until 20"),
        "{description}"
    );
    // The deploy worker looked and found nothing to run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!setup.ran(), "the deploy command ran without an approval");
    assert_eq!(job_state(&setup.database()), "approval");
    server.stop().await;

    // Between two runs, as the approve endpoint would do it in one.
    let path = setup.database();
    let store = Store::open(path.to_str().unwrap(), deployhook::model::Sync::Full).unwrap();
    let own = store
        .write(|c| approvals::approve(c, DeploymentId::from(DEPLOYMENT), "octo-dev", now_ms()))
        .await
        .unwrap();
    assert!(own.is_err(), "the author may not approve: {own:?}");
    let approved = store
        .write(|c| approvals::approve(c, DeploymentId::from(DEPLOYMENT), "octocat", now_ms()))
        .await
        .unwrap()
        .unwrap();
    assert!(approved.queued);
    store.close().await.unwrap();
    drop(store);

    let server = setup.start().await;
    let told = setup
        .wait_for_statuses("success", |s| states(s).contains(&"success"))
        .await;
    assert_eq!(
        states(&told),
        ["pending", "queued", "in_progress", "success"]
    );
    assert_eq!(told[1].description, "approved by octocat");
    assert!(setup.ran());
    let events = setup.wait_for_event("deploy_succeeded").await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["approval_requested", "deploy_started", "deploy_succeeded"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_deployment_not_approved_in_time_ends_as_a_failure_and_never_runs() {
    let setup = Setup::new(Duration::from_secs(1)).await;
    let server = setup.start().await;
    server.deploy().await;
    let told = setup
        .wait_for_statuses("failure", |s| states(s).contains(&"failure"))
        .await;
    assert_eq!(states(&told), ["pending", "failure"]);
    assert_eq!(
        told[1].description,
        "no approval within 1s (needed 1, had 0)"
    );
    assert_eq!(told[1].log_url, None);
    let events = setup.wait_for_event("deploy_failed").await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["approval_requested", "deploy_failed"]);
    assert_eq!(events[1]["description"], told[1].description);
    assert!(!setup.ran());
    assert_eq!(job_state(&setup.database()), "finished");
    // A second delivery of the same deployment changes nothing.
    let again = server.deploy().await;
    assert_ack(&again, "ignored", "880001");
    server.stop().await;
    assert!(!setup.ran());
}
