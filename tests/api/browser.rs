//! The dashboard in a real browser: headless Chromium, driven through ChromeDriver
//! (WebDriver, with `fantoccini`), signs in, finds a deployment the test made with its
//! state, follows its log link, and watches the log of a running deploy stream into the
//! page, and its end reach the tables at once. A screenshot is left in
//! `target/test-artifacts/dashboard.png`. A second test opens Insights after a scripted
//! history, checks each day's bar against it, and checks that neither page scrolls
//! sideways at 400 px; its screenshots: `insights-1280.png`, `insights-400.png`,
//! `dashboard-400.png`.
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
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub(crate) fn start() -> Self {
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

impl Driver {
    /// A headless Chromium session, its window `width` × `height`, its profile in `profile`.
    pub(crate) async fn connect(
        &self,
        profile: &Path,
        width: u32,
        height: u32,
    ) -> fantoccini::Client {
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            // Plain HTTP: ChromeDriver listens on loopback, so no TLS stack is needed.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let mut builder = ClientBuilder::new(connector);
            builder.capabilities(capabilities.as_object().unwrap().clone());
            match builder.connect(&self.url).await {
                Ok(browser) => return browser,
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver never answered: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
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
pub(crate) fn browser_available() -> bool {
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
    lock_for_an_incident(&app, ADMIN_TOKEN).await;

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 900).await;

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
        // The log's end and the tables agree: once the page says the log ended, the deploy
        // is no longer running in its tables, and its row says how it ended (without
        // waiting for the next periodic refresh).
        browser
            .wait()
            .at_most(Duration::from_secs(2))
            .for_element(Locator::Css("#live-log[data-ended]"))
            .await?;
        assert!(
            browser.find(Locator::Id("running-880078")).await.is_err(),
            "the log ended but the deploy is still listed as running"
        );
        browser.find(Locator::Id("nothing-running")).await?;
        let status = browser
            .find(Locator::Id("live-log-status"))
            .await?
            .text()
            .await?;
        assert_eq!(status, "ended");
        let row = browser
            .find(Locator::Id("deployment-880078"))
            .await?
            .text()
            .await?;
        assert!(row.contains("success") && !row.contains("running"), "{row}");
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.unwrap();
    outcome.unwrap();
}

/// Noon-ish times of the days before today (UTC midnight `today`), for the history.
pub(crate) const HOUR_MS: i64 = 60 * 60 * 1000;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// The history before today, written through the store's own functions (merges recorded,
/// jobs queued, claimed and finished at chosen times) into the database before the server
/// opens it: deliveries through the server can only happen now, and Insights is about
/// days. Per entry: days ago, the hour it finished, how it ended, and when its merge was
/// recorded (hours before), if it was merged. Finished deploys only: the server finds
/// nothing to run.
const HISTORY: [(i64, i64, &str, Option<i64>); 11] = [
    (6, 9, "success", Some(1)),
    (6, 15, "success", Some(1)),
    (5, 10, "failure", None),
    (5, 12, "success", Some(1)),
    (3, 9, "success", Some(2)),
    (3, 10, "success", Some(2)),
    (3, 11, "success", Some(2)),
    (2, 13, "error", None),
    (2, 14, "success", None),
    (1, 10, "success", Some(4)),
    (1, 16, "success", Some(4)),
];

fn write_history(database: &Path, today: i64) {
    write_history_of(database, today, &HISTORY);
}

/// [`HISTORY`]'s kind of entries, any of them: (days ago, hour, state, merged hours before).
pub(crate) type Finished = (i64, i64, &'static str, Option<i64>);

/// Writes `history` as [`write_history`] writes [`HISTORY`].
pub(crate) fn write_history_of(database: &Path, today: i64, history: &[Finished]) {
    use deployhook::model::{DeployJob, DeploymentState, Policy};
    use deployhook::store::{Store, jobs, merges};
    // Opening it once creates and migrates it; the server opens it again after.
    drop(
        Store::open(
            &database.display().to_string(),
            deployhook::model::Sync::Full,
        )
        .unwrap(),
    );
    let mut conn = rusqlite::Connection::open(database).unwrap();
    let raw = conn.transaction().unwrap();
    let tx = deployhook::store::Connection::Sqlite(&raw);
    for (n, &(days_ago, hour, state, merged_before)) in history.iter().enumerate() {
        let n = u64::try_from(n).unwrap();
        let finished = today - days_ago * DAY_MS + hour * HOUR_MS;
        let sha = format!("{:0>40}", 500 + n);
        if let Some(before) = merged_before {
            let at = finished - before * HOUR_MS;
            merges::remember(
                &tx,
                "acme/widgets",
                100 + i64::try_from(n).unwrap(),
                "production",
                &sha,
                at,
            )
            .unwrap();
        }
        let job = DeployJob {
            id: (770_000 + n).into(),
            repo: "acme/widgets".parse().unwrap(),
            environment: "production".parse().unwrap(),
            sha: sha.parse().unwrap(),
            git_ref: "main".into(),
            task: "deploy".into(),
            deploy_user: "octo-dev".into(),
            payload: "{}".into(),
            environment_url: None,
            log_url: None,
            installation: None,
        };
        jobs::enqueue(&tx, &job, "history", finished - 5 * 60_000).unwrap();
        assert_eq!(
            jobs::claim(&tx, "test", 4, |_| Policy::Queue, finished - 4 * 60_000)
                .unwrap()
                .len(),
            1
        );
        let state = match state {
            "success" => DeploymentState::Success,
            "failure" => DeploymentState::Failure,
            _ => DeploymentState::Error,
        };
        jobs::finish(&tx, &job, state, "from the scripted history", finished).unwrap();
    }
    // Their statuses are history too: nothing to send to GitHub.
    tx.execute("DELETE FROM outbox", []).unwrap();
    raw.commit().unwrap();
}

/// The day (`2026-11-30`) of a Unix millisecond.
fn iso_day(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
    humantime::format_rfc3339(at).to_string()[..10].to_owned()
}

/// `document.documentElement.scrollWidth` and `window.innerWidth`.
pub(crate) async fn widths(browser: &fantoccini::Client) -> (u64, u64) {
    let answer = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    (answer[0].as_u64().unwrap(), answer[1].as_u64().unwrap())
}

pub(crate) async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(name), &png).unwrap();
}

#[tokio::test]
async fn in_chromium_insights_chart_the_history_and_both_pages_fit_a_phone() {
    if !browser_available() {
        return;
    }
    let now = deployhook::store::now_ms();
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let app = crate::insights::insights_app_with(|dir| {
        write_history(&dir.join("deployhook.db"), today);
    })
    .await;
    // Today, through the server: a merge and its success, a failure, its restore.
    crate::insights::scripted_deploys(&app).await;
    // What each day should show: (success, failure, error).
    let mut expected: std::collections::BTreeMap<String, (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for (days_ago, _, state, _) in HISTORY {
        let day = expected
            .entry(iso_day(today - days_ago * DAY_MS))
            .or_default();
        match state {
            "success" => day.0 += 1,
            "failure" => day.1 += 1,
            _ => day.2 += 1,
        }
    }
    expected.insert(iso_day(now), (2, 1, 0));

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 1500).await;
    let outcome = async {
        browser.goto(&format!("{}/login", app.url)).await?;
        browser
            .find(Locator::Id("token"))
            .await?
            .send_keys(crate::insights::ADMIN_TOKEN)
            .await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("insights-link"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("insights-production"))
            .await?;
        assert!(browser.current_url().await?.path() == "/insights");

        // Every day of the window, as drawn, against the history.
        let days = browser
            .find_all(Locator::Css("#insights-production svg.deploys g.day"))
            .await?;
        assert_eq!(days.len(), 30);
        let mut drawn = std::collections::BTreeMap::new();
        for day in days {
            let count = |name: &'static str| {
                let day = day.clone();
                async move {
                    day.attr(name)
                        .await
                        .map(|v| v.unwrap_or_default().parse::<u64>().unwrap())
                }
            };
            let counts = (
                count("data-success").await?,
                count("data-failure").await?,
                count("data-error").await?,
            );
            let title = day.find(Locator::Css("title")).await?.html(true).await?;
            assert!(title.contains(&format!("{} success", counts.0)), "{title}");
            if counts != (0, 0, 0) {
                drawn.insert(day.attr("data-day").await?.unwrap(), counts);
            }
        }
        assert_eq!(drawn, expected);
        let tiles = browser
            .find(Locator::Css("#insights-production dl.tiles"))
            .await?;
        assert_eq!(tiles.attr("data-deploys").await?.as_deref(), Some("14"));
        assert_eq!(tiles.attr("data-failed").await?.as_deref(), Some("3"));
        assert_eq!(
            tiles.attr("data-change-failure-rate").await?.as_deref(),
            Some("0.2143")
        );
        assert_eq!(tiles.attr("data-restored").await?.as_deref(), Some("3"));
        // Restores: 2h (day 5), 1h (day 2), and today's, seconds long: the median is 1h.
        assert_eq!(
            tiles.attr("data-restore-median-seconds").await?.as_deref(),
            Some("3600")
        );
        // Lead times: today's merge (seconds), 1h ×3, 2h ×3, 4h ×2: the median (the 5th
        // of 9) is 2h, the 90th percentile (the 9th) 4h. The deploys by hand have none.
        assert_eq!(tiles.attr("data-lead-count").await?.as_deref(), Some("9"));
        assert_eq!(
            tiles.attr("data-lead-median-seconds").await?.as_deref(),
            Some("7200")
        );
        assert_eq!(
            tiles.attr("data-lead-p90-seconds").await?.as_deref(),
            Some("14400")
        );
        let staging = browser
            .find(Locator::Id("insights-staging"))
            .await?
            .text()
            .await?;
        assert!(
            staging.contains("No deploys in the last 30 days."),
            "{staging}"
        );
        screenshot(&browser, "insights-1280.png").await;
        // 90 days: three times the days, the same deploys.
        browser
            .find(Locator::LinkText("90 days"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#insights-production svg.deploys"))
            .await?;
        let days = browser
            .find_all(Locator::Css("#insights-production svg.deploys g.day"))
            .await?;
        assert_eq!(days.len(), 90);
        let tiles = browser
            .find(Locator::Css("#insights-production dl.tiles"))
            .await?;
        assert_eq!(tiles.attr("data-deploys").await?.as_deref(), Some("14"));
        screenshot(&browser, "insights-90-1280.png").await;
        browser.back().await?;

        // A phone: neither page scrolls sideways.
        browser.set_window_size(400, 1600).await?;
        browser.refresh().await?;
        let (scroll, inner) = widths(&browser).await;
        assert!(inner <= 420, "the window is phone-sized: {inner}");
        assert!(
            scroll <= inner,
            "Insights scrolls sideways at {inner}px: {scroll}"
        );
        screenshot(&browser, "insights-400.png").await;
        browser.goto(&format!("{}/", app.url)).await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("deployment-880103"))
            .await?;
        let (scroll, inner) = widths(&browser).await;
        assert!(
            scroll <= inner,
            "the dashboard scrolls sideways at {inner}px: {scroll}"
        );
        screenshot(&browser, "dashboard-400.png").await;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.unwrap();
    outcome.unwrap();
}

/// Production locked by maria for 2 h, "incident 4711: hold deploys", as after an incident.
pub(crate) async fn lock_for_an_incident(app: &crate::helpers::TestApp, admin_token: &str) {
    let locked = app
        .http
        .post(format!("{}/api/locks", app.url))
        .bearer_auth(admin_token)
        .json(
            &json!({"environment": "production", "reason": "incident 4711: hold deploys",
                      "for": "2h", "by": "maria"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), reqwest::StatusCode::CREATED);
}
