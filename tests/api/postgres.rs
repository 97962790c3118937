//! PostgreSQL: the same flow as on SQLite, and two replicas on one database. Each test
//! gets a fresh database on a throwaway server (`deployhook_testkit::postgres`); without the
//! server binaries the tests are skipped loudly (CI installs them and makes that a failure).

use std::time::Duration;

use deployhook_testkit::postgres as cluster;
use serde_json::Value;

use crate::helpers::{
    TestApp, body_json, created_deployments, deploy_with_script, fixture, send_signed,
    spawn_app_with, summary,
};

/// A fresh database, or `None` (the tests skip) without PostgreSQL's server. The servers'
/// logs go to the test's output, shown when it fails.
fn database() -> Option<String> {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("deployhook=info")
        .try_init();
    cluster::shared().map(cluster::Cluster::database)
}

/// A replica on `database`; `github` is another replica's mock, so that both talk to one
/// GitHub. Its deploy command appends a line per run to `runs` (shared by the replicas).
async fn replica(database: &str, github: Option<&str>, runs: &std::path::Path) -> TestApp {
    let (database, github) = (database.to_owned(), github.map(str::to_owned));
    let runs = runs.to_owned();
    spawn_app_with(move |config, dir| {
        config.database = database.parse().unwrap();
        if let Some(github) = github {
            config.github.api_url = github;
        }
        deploy_with_script(
            config,
            dir,
            &format!(
                "echo \"start $DEPLOYHOOK_DEPLOYMENT_ID $$\" >> '{runs}'\nsleep 0.3\necho \"end $DEPLOYHOOK_DEPLOYMENT_ID $$\" >> '{runs}'",
                runs = runs.display()
            ),
        );
    })
    .await
}

/// The statuses GitHub received for `deployment`, once a final one is among them (up to
/// 30 s: on a loaded machine PostgreSQL's round trips add up).
async fn final_statuses(app: &TestApp, deployment: u64) -> Vec<crate::helpers::PostedStatus> {
    eventually("a final status", async || {
        let statuses: Vec<_> = app
            .statuses()
            .await
            .into_iter()
            .filter(|s| s.deployment == deployment)
            .collect();
        statuses
            .iter()
            .any(|s| !matches!(s.state.as_str(), "queued" | "in_progress"))
            .then_some(statuses)
    })
    .await
}

/// Waits until `check` holds, up to 30 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_merge_deploys_on_postgres_as_on_sqlite() {
    let Some(database) = database() else { return };
    let runs = tempfile::NamedTempFile::new().unwrap();
    let mut app = replica(&database, None, runs.path()).await;
    let merged = app
        .post_webhook("pull_request", &fixture("pull_request.closed.merged.json"))
        .await;
    assert_eq!(merged.status(), 202);
    let deployment = app
        .post_webhook("deployment", &fixture("deployment.created.json"))
        .await;
    assert_eq!(deployment.status(), 202, "{}", body_json(deployment).await);
    let statuses = final_statuses(&app, 880_001).await;
    let states: Vec<&str> = statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["queued", "in_progress", "success"], "{statuses:?}");
    app.stop().await;
    let requests = app.github_requests().await;
    assert_eq!(
        created_deployments(&requests).len(),
        1,
        "{:?}",
        summary(&requests)
    );
    let log = std::fs::read_to_string(runs.path()).unwrap();
    assert_eq!(log.lines().count(), 2, "one run, start and end: {log}");
}

#[tokio::test]
async fn a_merge_and_its_deployment_delivered_through_two_replicas_run_once() {
    let Some(database) = database() else { return };
    let runs = tempfile::NamedTempFile::new().unwrap();
    let mut a = replica(&database, None, runs.path()).await;
    let github = a.github.uri();
    let mut b = replica(&database, Some(&github), runs.path()).await;
    let (pr, deployment) = (
        fixture("pull_request.closed.merged.json"),
        fixture("deployment.created.json"),
    );
    // GitHub's redelivery (same delivery id) through A, a second hook's delivery (another
    // id) through B: one merge, one deployment.
    for (app, id, hook) in [(&a, "d-pr-1", 1), (&b, "d-pr-1", 1), (&b, "d-pr-2", 2)] {
        let sent = send_signed(&app.http, &app.url, "pull_request", &pr, id, hook)
            .await
            .unwrap();
        assert!(sent.status().is_success(), "{}", sent.status());
    }
    for (app, id) in [(&b, "d-dep-1"), (&a, "d-dep-2"), (&b, "d-dep-3")] {
        let sent = send_signed(&app.http, &app.url, "deployment", &deployment, id, 1)
            .await
            .unwrap();
        let ack: Value = sent.json().await.unwrap();
        assert!(ack["outcome"].is_string(), "{ack}");
    }
    final_statuses(&a, 880_001).await;
    // Let whichever replica leads go on for a moment: nothing more may run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.stop().await;
    a.stop().await;
    let requests = a.github_requests().await;
    assert_eq!(
        created_deployments(&requests).len(),
        1,
        "{:?}",
        summary(&requests)
    );
    let log = std::fs::read_to_string(runs.path()).unwrap();
    let starts = log.lines().filter(|l| l.starts_with("start")).count();
    assert_eq!(starts, 1, "the deploy ran once: {log}");
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() {
    let Some(database) = database() else { return };
    let runs = tempfile::NamedTempFile::new().unwrap();
    let a = replica(&database, None, runs.path()).await;
    let github = a.github.uri();
    let b = replica(&database, Some(&github), runs.path()).await;
    let role = async |app: &TestApp| -> String {
        let ready: Value = app
            .http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Leader and standby alike are ready once settled: the schema read through
        // PostgreSQL, a heartbeat recorded, the leader's workers running.
        if ready["status"] != "ready" {
            return String::new();
        }
        assert_eq!(ready["checks"]["engine"], "postgres", "{ready}");
        ready["checks"]["replica"]["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let roles = eventually("one leader and one standby, both ready", async || {
        let roles = (role(&a).await, role(&b).await);
        (roles.0 != roles.1 && !roles.0.is_empty() && !roles.1.is_empty()).then_some(roles)
    })
    .await;
    assert!(
        roles == ("leader".into(), "standby".into())
            || roles == ("standby".into(), "leader".into()),
        "{roles:?}"
    );
    // The leader goes away; the standby takes the lead and runs what is delivered to it.
    let (mut leader, standby) = if roles.0 == "leader" { (a, b) } else { (b, a) };
    leader.stop().await;
    eventually("the standby to lead", async || {
        (role(&standby).await == "leader").then_some(())
    })
    .await;
    let sent = standby
        .post_webhook("deployment", &fixture("deployment.created.json"))
        .await;
    assert_eq!(sent.status(), 202);
    eventually("the deploy to run on the new leader", async || {
        let log = std::fs::read_to_string(runs.path()).unwrap();
        log.lines().any(|l| l.starts_with("end")).then_some(())
    })
    .await;
}
