//! Pages that stay readable as history grows: the dashboard folds each run of routine
//! deliveries (recorded, nothing to do) into one row and shows a bounded number of rows,
//! `/deliveries` lists every delivery a page at a time; a deploy's log opened in a browser
//! is a page that leads back, its output escaped; a delivery that named no hook does not
//! claim to have come through hook 0.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;

use deployhook::webhook::signature::sign;

use crate::helpers::{SECRET, TestApp, deploy_with_script, fixture_json, spawn_app_with};

const ADMIN_TOKEN: &str = "long-pages-admin-token-0123456789";

async fn app() -> TestApp {
    spawn_app_with(|config, dir| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        deploy_with_script(config, dir, "echo 'migrating <b>users</b> & roles'");
    })
    .await
}

/// `n` of GitHub's echoes of a deployment status: routine deliveries.
async fn statuses(app: &TestApp, n: usize) {
    let body = fixture_json("deployment_status.created.success.json").to_string();
    for _ in 0..n {
        let answer = app.post_webhook("deployment_status", body.as_bytes()).await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
}

/// `n` pull requests opened: deliveries ignored, for a reason worth reading.
async fn opened(app: &TestApp, n: usize) {
    let body = fixture_json("pull_request.opened.json").to_string();
    for _ in 0..n {
        let answer = app.post_webhook("pull_request", body.as_bytes()).await;
        assert!(answer.status().is_success());
    }
}

/// The rows of the table `id` in `html` (the header row not counted).
fn rows<'a>(html: &'a str, id: &str) -> Vec<&'a str> {
    let start = html
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}: {html}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    table.split("<tr").skip(2).collect()
}

#[tokio::test]
async fn routine_deliveries_fold_into_one_row_and_every_delivery_is_a_page_away() {
    let app = app().await;
    opened(&app, 1).await;
    statuses(&app, 60).await;
    opened(&app, 1).await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;

    // The newest 50: one opened, then 49 of the 60 statuses, folded into one row.
    let dashboard = app.page("/", &cookie).await;
    let shown = rows(&dashboard, "deliveries");
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].contains("pull_request"), "{}", shown[0]);
    assert!(
        shown[1].contains("class=\"folded\"")
            && shown[1].contains("49 routine deliveries")
            && shown[1].contains("deployment_status"),
        "{}",
        shown[1]
    );
    assert!(dashboard.contains("href=\"/deliveries\""), "{dashboard}");

    // Deliveries that each say something are not folded, and at most ten rows show.
    opened(&app, 12).await;
    let dashboard = app.page("/", &cookie).await;
    let shown = rows(&dashboard, "deliveries");
    assert_eq!(shown.len(), 10, "{shown:#?}");
    assert!(shown.iter().all(|row| !row.contains("folded")));

    // All 74, newest first, fifty a page.
    let first = app.page("/deliveries", &cookie).await;
    let listed = rows(&first, "deliveries");
    assert_eq!(listed.len(), 50);
    assert_eq!(
        listed
            .iter()
            .filter(|r| r.contains("deployment_status"))
            .count(),
        37,
        "13 opened are newest"
    );
    let at = first
        .find("href=\"/deliveries?before=")
        .expect("an Older link")
        + 6;
    let older = &first[at..at + first[at..].find('"').unwrap()];
    let second = app.page(older, &cookie).await;
    let listed = rows(&second, "deliveries");
    assert_eq!(listed.len(), 24);
    assert!(listed[23].contains("pull_request"), "the oldest is last");
    assert!(!second.contains("?before="), "no page older than the last");

    let stranger = app
        .http
        .get(format!("{}/deliveries", app.url))
        .send()
        .await
        .unwrap();
    assert!(stranger.url().path().ends_with("/login"), "signed-in only");
}

#[tokio::test]
async fn a_delivery_that_named_no_hook_names_none_on_its_page() {
    let app = app().await;
    let body = fixture_json("pull_request.opened.json").to_string();
    let answer = app
        .http
        .post(format!("{}/event_handler", app.url))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "pull_request")
        .header("X-GitHub-Delivery", "d-without-hook")
        .header(
            "X-Hub-Signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    app.post_delivery("pull_request", body.as_bytes(), "d-with-hook", 470_000_001)
        .await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;

    let page = app.page("/deliveries/d-without-hook", &cookie).await;
    assert!(page.contains("d-without-hook"), "{page}");
    assert!(!page.contains("through hook"), "{page}");
    let page = app.page("/deliveries/d-with-hook", &cookie).await;
    assert!(page.contains("through hook 470000001"), "{page}");
    let dashboard = app.page("/", &cookie).await;
    assert!(!dashboard.contains("title=\"hook 0\""), "{dashboard}");
    assert!(
        dashboard.contains("title=\"hook 470000001\""),
        "{dashboard}"
    );
}

#[tokio::test]
async fn a_log_opened_in_a_browser_is_a_page_that_leads_back_and_scripts_get_text() {
    let app = app().await;
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(880_042);
    app.post_webhook("deployment", deployment.to_string().as_bytes())
        .await;
    app.wait_for_final_status(880_042).await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let dashboard = app.page("/", &cookie).await;
    let at = dashboard.find("class=\"log-link\" href=\"").unwrap() + 23;
    let log = format!(
        "{}{}",
        app.url,
        &dashboard[at..at + dashboard[at..].find('"').unwrap()]
    );
    let get = |url: String, accept: &'static str| {
        let http = app.http.clone();
        async move {
            let mut request = http.get(url);
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept);
            }
            request.send().await.unwrap()
        }
    };

    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = get(log.clone(), browser).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<a href=\"/\" id=\"back\">Dashboard</a>"),
        "{html}"
    );
    assert!(
        html.contains("migrating &lt;b&gt;users&lt;/b&gt; &amp; roles"),
        "escaped: {html}"
    );
    assert!(!html.contains("<b>users"), "{html}");
    assert!(html.contains("success: deployed in"), "to its end: {html}");
    assert!(html.trim_end().ends_with("</html>"), "{html}");

    for (url, accept) in [
        (log.clone(), ""),
        (log.clone(), "*/*"),
        (format!("{log}&format=text"), browser),
    ] {
        let text = get(url, accept).await;
        assert!(
            text.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{accept}"
        );
        let text = text.text().await.unwrap();
        assert!(text.contains("migrating <b>users</b> & roles"), "{text}");
    }
    let wrong = get(log.replace("token=", "token=x"), browser).await;
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
}
