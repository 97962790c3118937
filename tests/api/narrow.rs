//! Every page at phone width and the dashboard after a busy day, in headless Chromium: a
//! production with ten deploys (each followed by GitHub's three `deployment_status`
//! deliveries), a lock, a deployment the lock holds, and a merge waiting for its checks. At
//! 400 px no page scrolls sideways (sign-in, dashboard, a log, a delivery, the deliveries
//! list, Insights, the audit log), the Waiting-for-checks table shows its Pending column and the Queued
//! table what holds each deployment (Running and Queued stack as cards), and at 1280 px the dashboard's height
//! does not grow with routine deliveries. Screenshots of each page at both widths are left
//! in `target/test-artifacts/narrow/` (the README's come from there).

use std::path::Path;

use fantoccini::{Client, Locator};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use deployhook::config::EnvironmentConfig;
use deployhook::model::{Environment, Required};

use crate::browser::{
    DAY_MS, Driver, Finished, browser_available, lock_for_an_incident, widths, write_history_of,
};
use crate::helpers::{TestApp, WAIT, deploy_with_script, fixture_json, spawn_app_with};

const ADMIN_TOKEN: &str = "narrow-admin-token-0123456789";
/// The merge commit of `pull_request.closed.merged.json`.
const MERGE_SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
/// Deploys run through the server today.
const DEPLOYS: u64 = 10;
/// The first of their deployment ids.
const FIRST: u64 = 880_201;

/// Earlier weeks, for Insights: one with a failure, and weeks where nothing failed (0 %).
const HISTORY: [Finished; 6] = [
    (3, 10, "success", Some(2)),
    (4, 11, "success", Some(3)),
    (9, 9, "failure", None),
    (9, 14, "success", Some(1)),
    (17, 10, "success", Some(5)),
    (18, 15, "success", Some(2)),
];

/// The server: production waits for `test` and `lint` (GitHub says `lint` still runs),
/// staging never deploys; the history above is in the database.
async fn busy_app() -> TestApp {
    let today = deployhook::store::now_ms().div_euclid(DAY_MS) * DAY_MS;
    let app = spawn_app_with(|config, dir| {
        write_history_of(&dir.join("deployhook.db"), today, &HISTORY);
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        deploy_with_script(
            config,
            dir,
            "echo \"deploying $DEPLOYHOOK_SHA\"\necho 'migrations: none'\necho done",
        );
        config.environments[0].checks = Some(Required::Named(vec!["test".into(), "lint".into()]));
        let command = config.environments[0].command.clone();
        let staging = Environment::parse("staging").unwrap();
        config
            .environments
            .push(EnvironmentConfig::new(staging, command));
    })
    .await;
    let runs = json!({"total_count": 2, "check_runs": [
        {"id": 7001, "name": "test", "status": "completed", "conclusion": "success",
         "html_url": "https://github.com/acme/widgets/runs/7001"},
        {"id": 7002, "name": "lint", "status": "in_progress", "conclusion": null,
         "html_url": "https://github.com/acme/widgets/runs/7002"},
    ]});
    let commit = format!("/repos/acme/widgets/commits/{MERGE_SHA}");
    for (tail, body) in [
        ("check-runs", runs),
        (
            "check-suites",
            json!({"total_count": 0, "check_suites": []}),
        ),
        (
            "status",
            json!({"state": "pending", "total_count": 0, "statuses": []}),
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("{commit}/{tail}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&app.github)
            .await;
    }
    app
}

/// GitHub's echo of a status deployhook posted: a routine delivery, recorded.
async fn status_delivery(app: &TestApp, deployment: u64, state: &str) {
    let mut body = fixture_json("deployment_status.created.success.json");
    body["deployment"]["id"] = json!(deployment);
    body["deployment_status"]["state"] = json!(state);
    let answer = app
        .post_webhook("deployment_status", body.to_string().as_bytes())
        .await;
    assert!(answer.status().is_success());
}

/// Ten deploys to production, each echoed by GitHub's three statuses; then a merge that
/// waits for `lint`, a lock, and a deployment the lock holds.
async fn busy_day(app: &TestApp) {
    for n in 0..DEPLOYS {
        let id = FIRST + n;
        let mut deployment = fixture_json("deployment.created.json");
        deployment["deployment"]["id"] = json!(id);
        // Commits that look like commits, for the screenshots.
        let sha = format!(
            "{:08x}{:032x}",
            (n + 1).wrapping_mul(0x9e37_79b1) & 0xffff_ffff,
            n
        );
        deployment["deployment"]["sha"] = json!(sha);
        deployment["deployment"]["ref"] = json!(sha);
        app.post_webhook("deployment", deployment.to_string().as_bytes())
            .await;
        app.wait_for_final_status(id).await;
        for state in ["queued", "in_progress", "success"] {
            status_delivery(app, id, state).await;
        }
    }
    app.post_webhook(
        "pull_request",
        fixture_json("pull_request.closed.merged.json")
            .to_string()
            .as_bytes(),
    )
    .await;
    lock_for_an_incident(app, ADMIN_TOKEN).await;
    // A deployment that arrives during the lock: queued, its row saying what holds it
    // (the widest row of the Queued table, which must fit a phone too).
    let mut held = fixture_json("deployment.created.json");
    held["deployment"]["id"] = json!(FIRST + DEPLOYS);
    let answer = app
        .post_webhook("deployment", held.to_string().as_bytes())
        .await;
    let text = answer.text().await.unwrap();
    assert!(text.contains("locked by maria"), "{text}");
}

/// A screenshot of the whole page at `width` (the window made as tall as the page, up to
/// 6000 px), into `target/test-artifacts/narrow/{name}-{width}.png`.
async fn full_page(
    browser: &Client,
    name: &str,
    width: u32,
) -> Result<(), fantoccini::error::CmdError> {
    browser.set_window_size(width, 800).await?;
    let height = page_height(browser).await?.clamp(400, 6000);
    browser
        .set_window_size(width, u32::try_from(height).unwrap())
        .await?;
    let png = browser.screenshot().await?;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/narrow");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(format!("{name}-{width}.png")), &png).unwrap();
    Ok(())
}

async fn page_height(browser: &Client) -> Result<u64, fantoccini::error::CmdError> {
    let height = browser
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await?;
    Ok(height.as_u64().unwrap())
}

/// At 400 px: whether the page scrolls sideways (`Some` says how), after a screenshot of it
/// at 400 and 1280 px.
async fn fits_a_phone(
    browser: &Client,
    name: &str,
) -> Result<Option<String>, fantoccini::error::CmdError> {
    full_page(browser, name, 1280).await?;
    browser.set_window_size(400, 900).await?;
    let (scroll, inner) = widths(browser).await;
    assert!(inner <= 420, "the window is phone-sized: {inner}");
    full_page(browser, name, 400).await?;
    Ok((scroll > inner).then(|| format!("{name} scrolls sideways at {inner}px: {scroll}")))
}

/// Where the first cell matching `selector` ends (the Pending cell of a wait, the Waiting
/// for cell of a queued deployment), and where the viewport and its table's visible box
/// end: it is visible when it ends inside both.
async fn cell_edges(
    browser: &Client,
    selector: &str,
) -> Result<(f64, f64, f64), fantoccini::error::CmdError> {
    let answer = browser
        .execute(
            "const cell = document.querySelector(arguments[0]);
             const table = cell.closest('table').getBoundingClientRect();
             const r = cell.getBoundingClientRect();
             return [r.right, window.innerWidth, table.right];",
            vec![json!(selector)],
        )
        .await?;
    let n = |i: usize| answer[i].as_f64().unwrap();
    Ok((n(0), n(1), n(2)))
}

#[tokio::test]
async fn in_chromium_no_page_scrolls_sideways_at_400px_and_the_dashboard_stays_short() {
    if !browser_available() {
        return;
    }
    let app = busy_app().await;
    busy_day(&app).await;
    let pull_request: String = app
        .database()
        .query_row(
            "SELECT delivery_id FROM deliveries WHERE event = 'pull_request'",
            [],
            |row| row.get(0),
        )
        .unwrap();

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 900).await;
    let mut wrong: Vec<String> = Vec::new();
    let outcome = async {
        browser.goto(&format!("{}/login", app.url)).await?;
        wrong.extend(fits_a_phone(&browser, "sign-in").await?);
        browser.set_window_size(1280, 900).await?;
        browser
            .find(Locator::Id("token"))
            .await?
            .send_keys(ADMIN_TOKEN)
            .await?;
        browser.find(Locator::Id("sign-in")).await?.click().await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#waiting-for-checks td.pending"))
            .await?;

        // At 1280 px, after ten deploys and their thirty statuses.
        let tall = page_height(&browser).await?;
        eprintln!("the dashboard at 1280 px is {tall} px tall");
        let lock_form = browser
            .execute(
                "const form = document.getElementById('lock-form').getBoundingClientRect();
                 const deploys = document.getElementById('deployment-880210').getBoundingClientRect();
                 return form.top < deploys.top;",
                vec![],
            )
            .await?;
        if lock_form != json!(true) {
            wrong.push("the lock form is below the deployments it holds".into());
        }
        wrong.extend(fits_a_phone(&browser, "dashboard").await?);
        for (column, selector) in [
            ("Pending", "#waiting-for-checks td.pending"),
            ("Waiting for", "#queued td.waiting"),
        ] {
            let (cell, window, table) = cell_edges(&browser, selector).await?;
            eprintln!("at 400 px the {column} cell ends at {cell}, the window at {window}, its table's box at {table}");
            if cell > window || cell > table + 0.5 {
                wrong.push(format!(
                    "the {column} column is cut at 400 px: it ends at {cell}, the window at {window}, its table at {table}"
                ));
            }
        }

        // Twenty more routine deliveries: the page is no taller.
        for n in 0..20 {
            status_delivery(&app, FIRST + n % DEPLOYS, "success").await;
        }
        browser.set_window_size(1280, 900).await?;
        browser.refresh().await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("deployment-880210"))
            .await?;
        let taller = page_height(&browser).await?;
        eprintln!("after 20 more deliveries: {taller} px");
        if taller > tall + 8 || taller > 3000 {
            wrong.push(format!(
                "the dashboard grows with routine deliveries: {tall} px, then {taller} px"
            ));
        }

        let log = browser
            .find(Locator::Css("#deployment-880210 a.log-link"))
            .await?
            .attr("href")
            .await?
            .unwrap();
        browser.goto(&format!("{}{log}", app.url)).await?;
        let back = browser.find(Locator::Css("a[href='/']")).await;
        if back.is_err() {
            wrong.push("the log page has no way back to the dashboard".into());
        }
        wrong.extend(fits_a_phone(&browser, "log").await?);

        browser
            .goto(&format!("{}/deliveries/{pull_request}", app.url))
            .await?;
        let page = browser.find(Locator::Css("body")).await?.text().await?;
        if page.contains("through hook 0") {
            wrong.push("the delivery page says `through hook 0`".into());
        }
        wrong.extend(fits_a_phone(&browser, "delivery").await?);

        browser.goto(&format!("{}/deliveries", app.url)).await?;
        browser.find(Locator::Id("deliveries")).await?;
        wrong.extend(fits_a_phone(&browser, "deliveries").await?);

        browser.goto(&format!("{}/insights", app.url)).await?;
        wrong.extend(fits_a_phone(&browser, "insights").await?);

        // The lock and the sign-in are in the audit log: its table stacks as cards.
        browser.goto(&format!("{}/audit", app.url)).await?;
        browser.find(Locator::Id("audit")).await?;
        wrong.extend(fits_a_phone(&browser, "audit").await?);
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.unwrap();
    outcome.unwrap();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
