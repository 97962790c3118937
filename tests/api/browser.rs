//! The dashboard in a real browser: headless Chromium, driven through ChromeDriver
//! (WebDriver, with `fantoccini`), signs in, finds a deployment the test made with its
//! state, follows its log link, and watches the log of a running deploy stream into the
//! page. A screenshot is left in `target/test-artifacts/dashboard.png`.
//!
//! Chromium and ChromeDriver come from Debian (`apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the test is skipped with a loud message — unless
//! `DEPLOYHOOK_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes their absence a failure.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use deployhook::model::Required;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{WAIT, created_deployments, deploy_with_script, fixture_json, spawn_app_with};

/// The merge commit of `pull_request.closed.merged.json`.
const MERGE_SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";

const ADMIN_TOKEN: &str = "browser-admin-token-0123456789";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// ChromeDriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the browser is here; without it, skip loudly or fail when it is required.
fn browser_available() -> bool {
    let present = Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists();
    if !present {
        let required = std::env::var("DEPLOYHOOK_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "DEPLOYHOOK_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing"
        );
        eprintln!(
            "\n*** SKIPPED the browser test: {CHROMIUM} or {CHROMEDRIVER} is missing. \
             Install them with `apt-get install chromium chromium-driver`. ***\n"
        );
    }
    present
}

#[tokio::test]
async fn in_chromium_an_admin_signs_in_sees_the_deployment_opens_its_log_and_watches_a_live_one() {
    if !browser_available() {
        return;
    }
    let app = spawn_app_with(|config, dir| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        // Runs until the test creates `release`.
        let body = format!(
            "echo \"step one of $DEPLOYHOOK_DEPLOYMENT_ID\"\ntouch '{0}/started'\n\
             while [ ! -f '{0}/release' ]; do sleep 0.05; done\necho 'all done'",
            dir.display()
        );
        deploy_with_script(config, dir, &body);
        // Merges wait for two checks: one passes below, the other stays pending.
        config.environments[0].checks = Some(Required::Named(vec!["test".into(), "lint".into()]));
    })
    .await;
    // A merge whose checks are half done: `test` passed, `lint` still runs.
    let runs = json!({"total_count": 2, "check_runs": [
        {"id": 7001, "name": "test", "status": "completed", "conclusion": "success",
         "html_url": "https://github.com/acme/widgets/runs/7001"},
        {"id": 7002, "name": "lint", "status": "in_progress", "conclusion": null,
         "html_url": "https://github.com/acme/widgets/runs/7002"},
    ]});
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/acme/widgets/commits/{MERGE_SHA}/check-runs"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(runs))
        .mount(&app.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/acme/widgets/commits/{MERGE_SHA}/check-suites"
        )))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"total_count": 0, "check_suites": []})),
        )
        .mount(&app.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/acme/widgets/commits/{MERGE_SHA}/status"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"state": "pending", "total_count": 0, "statuses": []})),
        )
        .mount(&app.github)
        .await;
    app.post_webhook(
        "pull_request",
        fixture_json("pull_request.closed.merged.json")
            .to_string()
            .as_bytes(),
    )
    .await;
    let release = app.dir.path().join("release");
    std::fs::write(&release, "").unwrap();
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(880_077);
    app.post_webhook("deployment", deployment.to_string().as_bytes())
        .await;
    app.wait_for_final_status(880_077).await;
    std::fs::remove_file(&release).unwrap();
    std::fs::remove_file(app.dir.path().join("started")).unwrap();

    // Production is locked, as after an incident: the page says so, with who and why.
    let locked = app
        .http
        .post(format!("{}/api/locks", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"environment": "production", "reason": "incident 4711: hold deploys",
                      "for": "2h", "by": "maria"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), reqwest::StatusCode::CREATED);

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let deadline = Instant::now() + WAIT;
    let browser = loop {
        // Plain HTTP: ChromeDriver listens on loopback, so no TLS stack is needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities.as_object().unwrap().clone());
        match builder.connect(&driver.url).await {
            Ok(browser) => break browser,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "chromedriver never answered: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let outcome = async {
        browser.goto(&format!("{}/", app.url)).await?;
        assert!(
            browser.current_url().await?.path().ends_with("/login"),
            "the dashboard sends strangers to the login page"
        );
        browser
            .find(Locator::Id("token"))
            .await?
            .send_keys(ADMIN_TOKEN)
            .await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        let row = browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("deployment-880077"))
            .await?;
        let text = row.text().await?;
        assert!(text.contains("success"), "{text}");
        assert!(text.contains("acme/widgets"), "{text}");

        // The merge waits, and the page says for what: `test` passed, `lint` pending.
        let deadline = Instant::now() + WAIT;
        let wait = loop {
            if let Ok(table) = browser.find(Locator::Id("waiting-for-checks")).await {
                let text = table.text().await?;
                if text.contains("lint") {
                    break text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the wait for checks never showed"
            );
            browser.refresh().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let cells: Vec<String> = {
            let row = browser
                .find(Locator::Css("#waiting-for-checks tr.wait"))
                .await?;
            let mut cells = Vec::new();
            for cell in row.find_all(Locator::Css("td")).await? {
                cells.push(cell.text().await?);
            }
            cells
        };
        assert_eq!(cells[2], &MERGE_SHA[..7], "{wait}");
        assert_eq!(cells[3], "#42", "{wait}");
        assert_eq!(cells[5], "test", "passed: {wait}");
        assert_eq!(cells[6], "lint", "pending: {wait}");
        let lock = browser
            .find(Locator::Id("lock-production"))
            .await?
            .text()
            .await?;
        assert!(
            lock.contains("incident 4711: hold deploys") && lock.contains("maria"),
            "{lock}"
        );

        let png = browser.screenshot().await?;
        let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("dashboard.png"), &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        assert!(
            created_deployments(&app.github.received_requests().await.unwrap()).is_empty(),
            "nothing is deployed while `lint` runs"
        );

        // The lock's Unlock button (a form with the session's token) lifts it.
        browser
            .find(Locator::Css("#lock-production button"))
            .await?
            .click()
            .await?;
        let deadline = Instant::now() + WAIT;
        while browser.find(Locator::Id("lock-production")).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the Unlock button did not unlock"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            browser.goto(&format!("{}/", app.url)).await?;
        }

        let row = browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("deployment-880077"))
            .await?;
        row.find(Locator::Css("a.log-link")).await?.click().await?;
        let body = browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("body"))
            .await?
            .text()
            .await?;
        assert!(
            browser.current_url().await?.path() == "/deployments/880077/log",
            "the log link opens the log"
        );
        assert!(body.contains("success: deployed in"), "{body}");

        // A deploy running when the page loads: its log streams into the page.
        deployment["deployment"]["id"] = json!(880_078);
        app.post_webhook("deployment", deployment.to_string().as_bytes())
            .await;
        let started = app.dir.path().join("started");
        let deadline = Instant::now() + WAIT;
        while !started.exists() {
            assert!(Instant::now() < deadline, "the second deploy never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        browser.goto(&format!("{}/", app.url)).await?;
        let live_log = browser.find(Locator::Id("live-log")).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let text = live_log.text().await?;
            if text.contains("step one of 880078") {
                assert!(!text.contains("all done"), "{text}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the live log never showed: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::write(&release, "").unwrap();
        let deadline = Instant::now() + WAIT;
        while !live_log.text().await?.contains("success: deployed in") {
            assert!(
                Instant::now() < deadline,
                "the live log did not follow the deploy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.unwrap();
    outcome.unwrap();
}
