//! Signing in with GitHub in a real browser (issue 23): headless Chromium clicks "Sign in
//! with GitHub" on deployhook's sign-in page, goes to the fake GitHub's authorize page —
//! which, as GitHub does once a person allows the app, sends the browser back with a code
//! and the `state` it was given — and lands on the dashboard as that person, the session
//! cookie set through the cross-site round trip. Then makes a personal token on the
//! Tokens page. Screenshots: `target/test-artifacts/signed-in.png`, `tokens.png`.

use std::time::Duration;

use fantoccini::Locator;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::browser::{Driver, browser_available, screenshot};
use crate::people::people_app;

/// GitHub's authorize page, as it behaves once the person allowed the app: back to the
/// app's callback with a code for `login` and the `state` it was sent.
struct Authorize {
    callback: String,
    login: &'static str,
}

impl Respond for Authorize {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let state = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}?code=code-{}&state={state}", self.callback, self.login),
        )
    }
}

/// The fake GitHub's authorize page lets `login` in, sending the browser back to `app`.
pub(crate) async fn mount_authorize(app: &crate::helpers::TestApp, login: &'static str) {
    Mock::given(method("GET"))
        .and(path("/login/oauth/authorize"))
        .respond_with(Authorize {
            callback: format!("{}/login/github/callback", app.url),
            login,
        })
        .mount(&app.github)
        .await;
}

/// Who the dashboard says is signed in, once the browser has landed on it.
pub(crate) async fn signed_in_as(browser: &fantoccini::Client) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("signed-in-as"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn in_chromium_a_person_signs_in_with_github_and_makes_a_personal_token() {
    if !browser_available() {
        return;
    }
    let app = people_app(|_| {}).await;
    mount_authorize(&app, "ada-admin").await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.connect(profile.path(), 1280, 800).await;
    browser.goto(&format!("{}/login", app.url)).await.unwrap();
    browser
        .find(Locator::Id("sign-in-github"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Through GitHub and back, then on to the dashboard by itself.
    assert_eq!(signed_in_as(&browser).await, "ada-admin");
    screenshot(&browser, "signed-in.png").await;
    browser
        .find(Locator::Id("tokens-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = browser.form(Locator::Id("token-form")).await.unwrap();
    form.set_by_name("name", "laptop CLI").await.unwrap();
    form.submit().await.unwrap();
    let token = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("new-token"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(token.starts_with("dhp_"), "{token}");
    let listed = browser
        .find(Locator::Id("tokens"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("laptop CLI") && listed.contains("live"),
        "{listed}"
    );
    screenshot(&browser, "tokens.png").await;
    // The token works as ada-admin.
    let (status, locks) =
        crate::people::call(&app, &token, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{locks}");
    browser.close().await.unwrap();
}
