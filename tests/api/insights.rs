//! The Insights page (`/insights`): behind the dashboard's sign-in; after deploys run
//! through the real server — a merge and its success, a failure, the success that restores
//! it — its numbers are theirs, read back from the page's markup and checked against the
//! times the database recorded. And the favicon every page links.

use reqwest::StatusCode;
use serde_json::json;

use deployhook::config::EnvironmentConfig;
use deployhook::model::Environment;

use crate::helpers::{TestApp, deploy_with_script, fixture_json, spawn_app_with};

pub const ADMIN_TOKEN: &str = "insights-admin-token-0123456789";
/// The merge commit of `pull_request.closed.merged.json`.
pub const MERGE_SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
/// The deployments [`scripted_deploys`] runs: the merge's success, a failure, its restore.
pub const SCRIPTED: [(u64, &str, bool); 3] = [
    (880_101, MERGE_SHA, false),
    (880_102, "1111111111111111111111111111111111111111", true),
    (880_103, "2222222222222222222222222222222222222222", false),
];

/// The server with the dashboard on: production deploys with a script that fails while a
/// file `fail` exists beside it; staging is configured and never deploys.
pub async fn insights_app() -> TestApp {
    insights_app_with(|_| {}).await
}

/// [`insights_app`], after `prepare` ran on the directory the database will be in.
pub async fn insights_app_with(prepare: impl FnOnce(&std::path::Path)) -> TestApp {
    spawn_app_with(|config, dir| {
        prepare(dir);
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        let body = format!(
            "echo \"deploying $DEPLOYHOOK_SHA\"\n\
             if [ -f '{}/fail' ]; then echo 'migration 42 failed' >&2; exit 3; fi\necho done",
            dir.display()
        );
        deploy_with_script(config, dir, &body);
        let staging = Environment::parse("staging").unwrap();
        let command = config.environments[0].command.clone();
        config
            .environments
            .push(EnvironmentConfig::new(staging, command));
    })
    .await
}

/// Runs deployment `id` of `sha` to production through the server (a signed `deployment`
/// delivery), failing it when `fail`, and waits for its final status.
pub async fn deploy(app: &TestApp, id: u64, sha: &str, fail: bool) {
    let marker = app.dir.path().join("fail");
    if fail {
        std::fs::write(&marker, "").unwrap();
    }
    let mut deployment = fixture_json("deployment.created.json");
    deployment["deployment"]["id"] = json!(id);
    deployment["deployment"]["sha"] = json!(sha);
    deployment["deployment"]["ref"] = json!(sha);
    let answer = app
        .post_webhook("deployment", deployment.to_string().as_bytes())
        .await;
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
    let statuses = app.wait_for_final_status(id).await;
    let last = statuses.last().unwrap();
    assert_eq!(
        last.state,
        if fail { "failure" } else { "success" },
        "{statuses:?}"
    );
    if fail {
        std::fs::remove_file(&marker).unwrap();
    }
}

/// A merged pull request (its delivery records the merge), then [`SCRIPTED`]: the merge
/// commit succeeds, another commit fails, a third restores production.
pub async fn scripted_deploys(app: &TestApp) {
    let merged = app
        .post_webhook(
            "pull_request",
            fixture_json("pull_request.closed.merged.json")
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(merged.status(), StatusCode::ACCEPTED);
    for (id, sha, fail) in SCRIPTED {
        deploy(app, id, sha, fail).await;
    }
}

/// When deployment `id` finished, as the database recorded it.
pub fn finished_at(app: &TestApp, id: u64) -> i64 {
    app.database()
        .query_row(
            "SELECT finished_at FROM jobs WHERE deployment_id = ?1",
            [i64::try_from(id).unwrap()],
            |row| row.get(0),
        )
        .unwrap()
}

/// When the merge of `sha` was recorded.
pub fn merged_at(app: &TestApp, sha: &str) -> i64 {
    app.database()
        .query_row(
            "SELECT MIN(recorded_at) FROM merges WHERE sha = ?1",
            [sha],
            |row| row.get(0),
        )
        .unwrap()
}

/// The value of `name="…"` in the first tag of `html` that contains `marker`.
fn attribute(html: &str, marker: &str, name: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let tag = &html[html[..at].rfind('<').unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let start = tag
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + name.len()
        + 3;
    tag[start..start + tag[start..].find('"').unwrap()].to_owned()
}

/// The part of the page about `environment`.
fn section<'a>(page: &'a str, environment: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"insights-{environment}\""))
        .unwrap_or_else(|| panic!("no section for {environment}: {page}"));
    let end = page[start..].find("</section>").unwrap() + start;
    &page[start..end]
}

/// Today (UTC), as the page's `data-day` writes it.
pub fn today() -> String {
    humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..10].to_owned()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn insights_need_a_signed_in_admin_and_offer_30_or_90_days() {
    let app = insights_app().await;
    let stranger = no_redirects()
        .get(format!("{}/insights", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::SEE_OTHER);
    assert_eq!(stranger.headers()["location"], "/login");

    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/insights", &cookie).await;
    assert!(page.contains("Insights, last 30 days"), "{page}");
    // Nothing deployed yet: each environment says so.
    for environment in ["production", "staging"] {
        assert!(
            section(&page, environment).contains("No deploys in the last 30 days."),
            "{page}"
        );
    }
    let ninety = app.page("/insights?days=90", &cookie).await;
    assert!(
        ninety.contains("No deploys in the last 90 days."),
        "{ninety}"
    );
    let week = app
        .http
        .get(format!("{}/insights?days=7", app.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(week.status(), StatusCode::BAD_REQUEST);
    assert!(week.text().await.unwrap().contains("30 or 90"));
    // The dashboard links to it.
    assert!(app.page("/", &cookie).await.contains("href=\"/insights\""));
}

#[tokio::test]
async fn after_a_merge_a_failure_and_its_restore_the_page_shows_their_numbers() {
    let app = insights_app().await;
    scripted_deploys(&app).await;
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let page = app.page("/insights", &cookie).await;
    let production = section(&page, "production");

    let tiles = |name: &str| attribute(production, "class=\"tiles\"", name);
    assert_eq!(tiles("data-deploys"), "3");
    assert_eq!(tiles("data-failed"), "1");
    assert_eq!(tiles("data-change-failure-rate"), "0.3333");
    // Lead time: the merge's delivery to its commit's success; the other two commits have
    // no merge on record.
    let lead = (finished_at(&app, 880_101) - merged_at(&app, MERGE_SHA)) / 1000;
    assert_eq!(tiles("data-lead-count"), "1");
    assert_eq!(tiles("data-lead-median-seconds"), lead.to_string());
    assert_eq!(tiles("data-lead-p90-seconds"), lead.to_string());
    // Time to restore: the failure's end to the next success's end.
    let restore = finished_at(&app, 880_103) - finished_at(&app, 880_102);
    assert_eq!(tiles("data-restored"), "1");
    assert_eq!(tiles("data-still-failing"), "0");
    assert_eq!(
        tiles("data-restore-median-seconds"),
        (restore / 1000).to_string()
    );
    let incident = attribute(production, "class=\"incident restored\"", "data-seconds");
    assert_eq!(incident, (restore / 1000).to_string());

    // Today's bar: two successes and a failure; the 29 days before it, nothing.
    let marker = format!("data-day=\"{}\"", today());
    assert_eq!(attribute(production, &marker, "data-success"), "2");
    assert_eq!(attribute(production, &marker, "data-failure"), "1");
    assert_eq!(attribute(production, &marker, "data-error"), "0");
    assert!(production.contains(&format!(
        "<title>{}: 3 deploys: 2 success, 1 failure, 0 error</title>",
        today()
    )));
    assert_eq!(production.matches("<g class=\"day\"").count(), 30);
    assert_eq!(
        production
            .matches("data-success=\"0\" data-failure=\"0\"")
            .count(),
        29
    );
    // Staging deployed nothing, and says so.
    assert!(section(&page, "staging").contains("No deploys in the last 30 days."));
}

#[tokio::test]
async fn the_favicon_is_an_svg_at_both_paths_and_every_page_links_it() {
    let app = insights_app().await;
    for path in ["/favicon.svg", "/favicon.ico"] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "image/svg+xml",
            "{path}"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.starts_with("<svg") && body.contains("</svg>"),
            "{body}"
        );
    }
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let login = app.get_text(&format!("{}/login", app.url)).await;
    for page in [
        login,
        app.page("/", &cookie).await,
        app.page("/insights", &cookie).await,
    ] {
        assert!(
            page.contains(r#"<link rel="icon" href="/favicon.svg" type="image/svg+xml">"#),
            "{page}"
        );
        assert!(page.contains(r#"<meta name="viewport""#), "{page}");
    }
}
