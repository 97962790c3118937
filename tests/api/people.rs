//! People (issue 23): signing in with GitHub through a fake GitHub that plays the OAuth
//! endpoints, `/user`, collaborator permissions and team memberships; what each role may
//! and may not do through the admin API with personal tokens (the permission matrix); a
//! permission revoked on GitHub taking effect once the cache's time is up; personal tokens
//! stored hashed, shown once, revocable; GitHub unreachable refusing people but not the
//! admin token.

use std::time::Duration;

use deployhook::config::{Access, Config, EnvironmentConfig, RepoPattern, SignInConfig};
use deployhook::model::Environment;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, WAIT, admin_cli, body_json, spawn_app_with};

pub const ADMIN_TOKEN: &str = "people-tests-admin-token-0123456789abcdef";
pub const REPO: &str = "acme/app";
const CLIENT_ID: &str = "Ov23liTestClient";
const CLIENT_SECRET: &str = "oauth-client-secret-never-logged";

/// The people of the fake GitHub, and their permission on `acme/app`. `sre-sam` reads
/// only, but is in `@acme/sre`, which production names as admins.
pub const PEOPLE: [(&str, &str); 6] = [
    ("rita-reader", "read"),
    ("wes-writer", "write"),
    ("ada-admin", "admin"),
    ("sre-sam", "read"),
    ("stan-stranger", "none"),
    // Any account reads a public repository; this one is no collaborator of it.
    ("pat-public", "public"),
];

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// Plays GitHub's side of signing in and of permissions for [`PEOPLE`].
pub async fn mount_people(github: &MockServer) {
    for (login, permission) in PEOPLE {
        Mock::given(method("POST"))
            .and(path("/login/oauth/access_token"))
            .and(body_string_contains(format!("code=code-{login}")))
            .and(body_string_contains(format!(
                "client_secret={CLIENT_SECRET}"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": format!("gho_{login}"), "token_type": "bearer", "scope": ""
            })))
            .mount(github)
            .await;
        Mock::given(method("GET"))
            .and(path("/user"))
            .and(header(
                "authorization",
                format!("Bearer gho_{login}").as_str(),
            ))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({ "login": login, "id": 1 })),
            )
            .mount(github)
            .await;
        set_permission(github, login, permission, 10).await;
    }
    // A code GitHub does not know: its error, with a 200 as GitHub answers it.
    Mock::given(method("POST"))
        .and(path("/login/oauth/access_token"))
        .and(body_string_contains("code=stale"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired."
        })))
        .mount(github)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/teams/sre/memberships/sre-sam"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "state": "active", "role": "member" })),
        )
        .mount(github)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/teams/sre/memberships/wes-writer"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "state": "pending", "role": "member" })),
        )
        .mount(github)
        .await;
}

/// GitHub answers `permission` for `login` on `acme/app` from now on (a lower `priority`
/// wins over the mocks mounted before).
pub async fn set_permission(github: &MockServer, login: &str, permission: &str, priority: u8) {
    let answer = match permission {
        "none" => ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })),
        "public" => ResponseTemplate::new(200).set_body_json(json!({
            "permission": "read", "role_name": "read", "user": { "login": login }
        })),
        _ => ResponseTemplate::new(200).set_body_json(json!({
            "permission": permission, "role_name": permission, "user": { "login": login }
        })),
    };
    // Whether the person is a collaborator at all: 204, else 404.
    let collaborator = if matches!(permission, "none" | "public") {
        404
    } else {
        204
    };
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/collaborators/{login}")))
        .respond_with(ResponseTemplate::new(collaborator))
        .with_priority(priority)
        .mount(github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/{REPO}/collaborators/{login}/permission"
        )))
        .respond_with(answer)
        .with_priority(priority)
        .mount(github)
        .await;
}

/// The server with GitHub sign-in on (both of its addresses at the fake GitHub), the admin
/// token for automation, and two environments for `acme/app`: production, whose admins
/// include `@acme/sre`, and staging, where a rollback needs only write.
pub async fn people_app(configure: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.sign_in = Some(SignInConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.to_owned().into(),
            web_url: config.github.api_url.clone(),
        });
        let production = &mut config.environments[0];
        production.repositories = vec![RepoPattern::parse(REPO).unwrap()];
        production.access = Access::parse(&Default::default(), &["@acme/sre".into()]).unwrap();
        let mut staging = EnvironmentConfig::new(
            Environment::parse("staging").unwrap(),
            production.command.clone(),
        );
        staging.repositories = production.repositories.clone();
        staging.access =
            Access::parse(&[("rollback".to_owned(), "write".to_owned())].into(), &[]).unwrap();
        config.environments.push(staging);
        configure(config);
    })
    .await;
    mount_people(&app.github).await;
    app
}

/// Signs `login` in through the whole OAuth flow; the session cookie (`name=value`).
pub async fn sign_in_with_github(app: &TestApp, login: &str) -> String {
    let http = no_redirects();
    let started = http
        .get(format!("{}/login/github", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let to = started.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!("{}/login/oauth/authorize?", app.github.uri())),
        "{to}"
    );
    assert!(to.contains(&format!("client_id={CLIENT_ID}")), "{to}");
    let state = to
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let state_cookie = cookie_of(&started, "deployhook_oauth_state").expect("a state cookie");
    let back = http
        .get(format!(
            "{}/login/github/callback?code=code-{login}&state={state}",
            app.url
        ))
        .header("cookie", state_cookie)
        .send()
        .await
        .unwrap();
    let status = back.status();
    let session = cookie_of(&back, "deployhook_session");
    let text = back.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    session.expect("a session cookie")
}

/// The `name=value` of the cookie `name` a response sets, unless it clears it.
pub fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|pair| pair.starts_with(&format!("{name}=")) && !pair.ends_with('='))
}

/// Makes a personal token on the dashboard for the person signed in with `session`.
pub async fn make_token(app: &TestApp, session: &str) -> String {
    let page = app.page("/tokens", session).await;
    let form_token = form_token_of(&page);
    let made = app
        .http
        .post(format!("{}/tokens", app.url))
        .header("cookie", session)
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("name", "laptop"),
            ("days", "30"),
            ("form_token", &form_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::OK);
    let page = made.text().await.unwrap();
    let token = page
        .split("<pre id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown")
        .to_owned();
    assert!(token.starts_with("dhp_"), "{token}");
    token
}

/// An admin API call with `token`: its status and JSON.
pub async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status(), body_json(response).await)
}

async fn lock(app: &TestApp, token: &str, environment: &str) -> (StatusCode, Value) {
    let body = json!({ "environment": environment, "reason": "people test" });
    call(app, token, reqwest::Method::POST, "/api/locks", Some(body)).await
}

async fn unlock(app: &TestApp, token: &str, environment: &str) -> (StatusCode, Value) {
    let path = format!("/api/locks/{environment}");
    call(app, token, reqwest::Method::DELETE, &path, None).await
}

async fn rollback(app: &TestApp, token: &str, environment: &str) -> (StatusCode, Value) {
    let body = json!({ "repository": REPO, "environment": environment });
    call(
        app,
        token,
        reqwest::Method::POST,
        "/api/rollback",
        Some(body),
    )
    .await
}

#[tokio::test]
async fn a_person_signs_in_with_github_and_the_dashboard_knows_who() {
    let app = people_app(|_| {}).await;
    let login_page = app.get_text(&format!("{}/login", app.url)).await;
    assert!(login_page.contains("Sign in with GitHub"), "{login_page}");
    let session = sign_in_with_github(&app, "wes-writer").await;
    let dashboard = app.page("/", &session).await;
    assert!(dashboard.contains("wes-writer"), "{dashboard}");
    // The exchange sent the client's secret to GitHub, never to the log or the page.
    assert!(!dashboard.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn sign_ins_with_a_wrong_state_a_denial_a_stale_code_or_no_access_are_refused() {
    let app = people_app(|_| {}).await;
    let http = no_redirects();
    let (state_cookie, state) = start_sign_in(&http, &app).await;
    let callback = |query: String, cookie: Option<String>| {
        let mut request = http.get(format!("{}/login/github/callback?{query}", app.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let cases = [
        // Another browser's state (a link someone else started).
        (
            format!("code=code-wes-writer&state={}", "0".repeat(64)),
            Some(state_cookie.clone()),
            StatusCode::BAD_REQUEST,
            "does not match",
        ),
        // No state cookie at all.
        (
            format!("code=code-wes-writer&state={state}"),
            None,
            StatusCode::BAD_REQUEST,
            "does not match",
        ),
        // The person said no on GitHub.
        (
            format!("error=access_denied&state={state}"),
            Some(state_cookie.clone()),
            StatusCode::FORBIDDEN,
            "did not allow",
        ),
        // A code GitHub no longer knows.
        (
            format!("code=stale&state={state}"),
            Some(state_cookie.clone()),
            StatusCode::BAD_REQUEST,
            "incorrect or expired",
        ),
        // Someone who can read nothing deployhook deploys.
        (
            format!("code=code-stan-stranger&state={state}"),
            Some(state_cookie.clone()),
            StatusCode::FORBIDDEN,
            "cannot read any repository",
        ),
        // Anyone reads a public repository: that is no access to deployhook.
        (
            format!("code=code-pat-public&state={state}"),
            Some(state_cookie.clone()),
            StatusCode::FORBIDDEN,
            "cannot read any repository",
        ),
    ];
    for (query, cookie, status, says) in cases {
        let answer = callback(query.clone(), cookie).await.unwrap();
        assert_eq!(answer.status(), status, "{query}");
        assert!(
            cookie_of(&answer, "deployhook_session").is_none(),
            "{query}"
        );
        let page = answer.text().await.unwrap();
        assert!(page.contains(says), "{query}: {page}");
    }
}

#[tokio::test]
async fn the_permission_matrix_holds_through_personal_tokens() {
    let app = people_app(|_| {}).await;
    let mut tokens = Vec::new();
    for (login, _) in &PEOPLE[..4] {
        let session = sign_in_with_github(&app, login).await;
        tokens.push((*login, make_token(&app, &session).await));
    }
    // Allowed: the status the action answers (a rollback with no earlier success is a
    // 409 *after* it was allowed); refused: 403.
    let (ok_lock, ok_unlock, ok_rollback, no) = (
        StatusCode::CREATED,
        StatusCode::OK,
        StatusCode::CONFLICT,
        StatusCode::FORBIDDEN,
    );
    let expected = [
        // login, lock production, unlock production, rollback production, rollback staging
        ("rita-reader", no, no, no, no),
        ("wes-writer", ok_lock, ok_unlock, no, ok_rollback),
        ("ada-admin", ok_lock, ok_unlock, ok_rollback, ok_rollback),
        ("sre-sam", ok_lock, ok_unlock, ok_rollback, no),
    ];
    let mut seen = Vec::new();
    for ((login, token), (who, lock_s, unlock_s, rollback_p, rollback_s)) in
        tokens.iter().zip(expected)
    {
        assert_eq!(*login, who);
        let locked = lock(&app, token, "production").await;
        if locked.0 == StatusCode::CREATED {
            // The lock names the person, not a claim.
            assert_eq!(locked.1["lock"]["locked_by"], *login, "{locked:?}");
        }
        let unlocked = unlock(&app, token, "production").await;
        let rolled_p = rollback(&app, token, "production").await;
        let rolled_s = rollback(&app, token, "staging").await;
        if rolled_p.0 == StatusCode::FORBIDDEN {
            let why = rolled_p.1["error"].as_str().unwrap();
            assert!(why.contains(login) && why.contains("needs admin"), "{why}");
        }
        seen.push((*login, locked.0, unlocked.0, rolled_p.0, rolled_s.0));
        assert_eq!(
            (locked.0, unlocked.0, rolled_p.0, rolled_s.0),
            (lock_s, unlock_s, rollback_p, rollback_s),
            "{login}: {locked:?} {unlocked:?} {rolled_p:?} {rolled_s:?}"
        );
    }
    // Every refusal of an identified person is in the audit log, saying why.
    let (_, log) = call(
        &app,
        ADMIN_TOKEN,
        reqwest::Method::GET,
        "/api/audit?actor=rita-reader",
        None,
    )
    .await;
    let refused: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 4, "{log}");
    assert!(refused.iter().all(|e| e["via"] == "personal_token"));
    // What rita sees of the log: what colleagues did, not where from, and none of their
    // sign-ins or tokens; her own entries whole.
    let rita = &tokens[0].1;
    let (_, view) = call(
        &app,
        rita,
        reqwest::Method::GET,
        "/api/audit?limit=500",
        None,
    )
    .await;
    let view = view["entries"].as_array().unwrap();
    assert!(
        view.iter()
            .any(|e| e["actor"] == "wes-writer" && e["action"] == "lock")
    );
    for entry in view {
        let own = entry["actor"] == "rita-reader";
        assert_eq!(
            entry["address"],
            if own { "127.0.0.1" } else { "-" },
            "{entry}"
        );
        if !own {
            assert!(!matches!(
                entry["action"].as_str(),
                Some("sign_in" | "token_created")
            ));
        }
    }
    eprintln!("permission matrix (lock prod, unlock prod, rollback prod, rollback staging):");
    for row in seen {
        eprintln!("  {row:?}");
    }
}

#[tokio::test]
async fn a_permission_removed_on_github_ends_access_once_the_cache_time_is_up() {
    let app = people_app(|config| config.permission_cache = Duration::from_secs(1)).await;
    let session = sign_in_with_github(&app, "wes-writer").await;
    let token = make_token(&app, &session).await;
    assert_eq!(
        lock(&app, &token, "production").await.0,
        StatusCode::CREATED
    );
    assert_eq!(unlock(&app, &token, "production").await.0, StatusCode::OK);
    // Removed from the repository on GitHub.
    set_permission(&app.github, "wes-writer", "none", 1).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, body) = lock(&app, &token, "production").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Nor can the person sign in again.
    assert_eq!(
        sign_in_with_github_refused(&app, "wes-writer").await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn personal_tokens_are_kept_hashed_act_as_their_person_and_end_when_revoked() {
    let app = people_app(|_| {}).await;
    let session = sign_in_with_github(&app, "ada-admin").await;
    let token = make_token(&app, &session).await;
    // Only a hash is stored.
    let stored: Vec<(String, String)> = app
        .database()
        .prepare("SELECT hash, login FROM personal_tokens")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, "ada-admin");
    assert_ne!(stored[0].0, token);
    assert!(!stored[0].0.contains(&token[4..]));
    // The page lists it without the token.
    let listed = app.page("/tokens", &session).await;
    assert!(listed.contains("laptop") && !listed.contains(&token));
    // The CLI acts as the person.
    let mut command = admin_cli(
        &app.url,
        "",
        &[
            "lock",
            "production",
            "--reason",
            "from the CLI",
            "--by",
            "someone-else",
        ],
    );
    command
        .env_remove("DEPLOYHOOK_ADMIN_TOKEN")
        .env("DEPLOYHOOK_TOKEN", &token);
    // Blocking waits off the runtime: the server under test runs on it.
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{printed}");
    let locks = call(&app, &token, reqwest::Method::GET, "/api/locks", None)
        .await
        .1;
    assert_eq!(locks["locks"][0]["locked_by"], "ada-admin", "{locks}");
    // Revoked on the dashboard: refused from then on.
    let id = listed
        .split("action=\"/tokens/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let form_token = form_token_of(&listed);
    let revoked = no_redirects()
        .post(format!("{}/tokens/{id}/revoke", app.url))
        .header("cookie", &session)
        .header("sec-fetch-site", "same-origin")
        .form(&[("form_token", form_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let (status, body) = unlock(&app, &token, "production").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].as_str().unwrap().contains("revoked"));
    // A token made up to look like one is refused the same way.
    let (status, _) = lock(&app, &format!("dhp_{}", "0".repeat(40)), "production").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The audit log has the person's whole story, each line saying how they proved it.
    let (_, log) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/audit", None).await;
    let mut story: Vec<String> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["actor"], e["via"], e["action"], e["outcome"]
            )
        })
        .collect();
    story.reverse();
    assert_eq!(
        story,
        [
            r#""ada-admin" "github" "sign_in" "done""#,
            r#""ada-admin" "github" "token_created" "done""#,
            r#""ada-admin" "personal_token" "lock" "done""#,
            r#""ada-admin" "github" "token_revoked" "done""#,
        ],
        "{log}"
    );
}

#[tokio::test]
async fn when_github_cannot_be_asked_people_are_refused_but_the_admin_token_works() {
    let app = people_app(|config| config.permission_cache = Duration::from_secs(1)).await;
    let session = sign_in_with_github(&app, "ada-admin").await;
    let token = make_token(&app, &session).await;
    // GitHub's permission endpoint fails from now on, once the cached answer is stale.
    for login in ["ada-admin", "wes-writer"] {
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/{REPO}/collaborators/{login}/permission"
            )))
            .respond_with(ResponseTemplate::new(502))
            .with_priority(1)
            .mount(&app.github)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, body) = lock(&app, &token, "production").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("admin token still works")
    );
    assert_eq!(
        sign_in_with_github_refused(&app, "wes-writer").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, body) = lock(&app, ADMIN_TOKEN, "production").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["lock"]["locked_by"], "admin API (client 127.0.0.1)");
}

/// A sign-in started: the state cookie (`name=value`) and the `state` it holds.
pub async fn start_sign_in(http: &reqwest::Client, app: &TestApp) -> (String, String) {
    let started = http
        .get(format!("{}/login/github", app.url))
        .send()
        .await
        .unwrap();
    let cookie = cookie_of(&started, "deployhook_oauth_state").expect("a state cookie");
    let state = cookie.split('=').nth(1).unwrap().to_owned();
    (cookie, state)
}

/// The form token a dashboard page's forms carry.
pub fn form_token_of(page: &str) -> String {
    page.split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a form token")
        .to_owned()
}

/// The status a sign-in of `login` ends with, when it is expected to be refused.
async fn sign_in_with_github_refused(app: &TestApp, login: &str) -> StatusCode {
    let http = no_redirects();
    let (cookie, state) = start_sign_in(&http, app).await;
    let back = http
        .get(format!(
            "{}/login/github/callback?code=code-{login}&state={state}",
            app.url
        ))
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    assert!(cookie_of(&back, "deployhook_session").is_none());
    back.status()
}

/// A `deployment` event of `repo` to production.
fn deployment_of(repo: &str, id: u64) -> Vec<u8> {
    let mut event = crate::helpers::fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["environment"] = json!("production");
    event["deployment"]["payload"]["environment"] = json!("production");
    event["repository"]["full_name"] = json!(repo);
    event["repository"]["name"] = json!(repo.split('/').nth(1).unwrap());
    event.to_string().into_bytes()
}

#[tokio::test]
async fn a_person_sees_only_the_repositories_they_can_read() {
    let app = people_app(|config| {
        config.environments[0].repositories = vec![
            RepoPattern::parse(REPO).unwrap(),
            RepoPattern::parse("acme/secret").unwrap(),
        ];
        // An environment of the secret repository alone.
        let mut vault = EnvironmentConfig::new(
            Environment::parse("vault").unwrap(),
            config.environments[0].command.clone(),
        );
        vault.repositories = vec![RepoPattern::parse("acme/secret").unwrap()];
        config.environments.push(vault);
    })
    .await;
    // Nobody but the admin token reads acme/secret: GitHub answers 404 for everyone.
    for (repo, id) in [(REPO, 7101), ("acme/secret", 7102)] {
        let answer = app
            .post_webhook("deployment", &deployment_of(repo, id))
            .await;
        assert!(answer.status().is_success());
        app.wait_for_final_status(id).await;
    }
    for environment in ["production", "vault"] {
        let body = json!({ "environment": environment, "reason": format!("hold {environment}") });
        let (status, _) = call(
            &app,
            ADMIN_TOKEN,
            reqwest::Method::POST,
            "/api/locks",
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let session = sign_in_with_github(&app, "rita-reader").await;
    let dashboard = app.page("/", &session).await;
    assert!(dashboard.contains("acme/app"), "{dashboard}");
    assert!(!dashboard.contains("acme/secret"), "{dashboard}");
    let deliveries = app.page("/deliveries", &session).await;
    assert!(!deliveries.contains("acme/secret"), "{deliveries}");
    let token = make_token(&app, &session).await;
    let get = reqwest::Method::GET;
    let (status, listed) = call(&app, &token, get.clone(), "/api/deliveries", None).await;
    assert_eq!(status, StatusCode::OK);
    let repos: Vec<&str> = listed["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["repository"].as_str())
        .collect();
    assert!(
        repos.contains(&REPO) && !repos.contains(&"acme/secret"),
        "{listed}"
    );
    let (status, _) = call(&app, &token, get.clone(), "/api/deployments/7102", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, &token, get.clone(), "/api/deployments/7101", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, &token, get.clone(), "/api/deliveries?refused=1", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Locks: production's (acme/app deploys there), not vault's.
    let (_, locks) = call(&app, &token, get.clone(), "/api/locks", None).await;
    let locked: Vec<&str> = locks["locks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["environment"].as_str())
        .collect();
    assert_eq!(locked, ["production"], "{locks}");
    let dashboard = app.page("/", &session).await;
    assert!(dashboard.contains("hold production"), "{dashboard}");
    // Nothing of vault: not its lock, its name in the lock form, nor its deployments.
    assert!(!dashboard.contains("vault"), "{dashboard}");
    // Insights count rita's repository's deploys only; the admin token's, both.
    let insights = app.page("/insights", &session).await;
    assert!(insights.contains("data-deploys=\"1\""), "{insights}");
    // The admin token still sees everything.
    let admin = app.sign_in(ADMIN_TOKEN).await;
    assert!(app.page("/", &admin).await.contains("acme/secret"));
    assert!(
        app.page("/insights", &admin)
            .await
            .contains("data-deploys=\"2\"")
    );
    let (_, all) = call(&app, ADMIN_TOKEN, get, "/api/deliveries", None).await;
    assert!(all.to_string().contains("acme/secret"));
}

#[tokio::test]
async fn hostile_input_on_the_new_surfaces_gets_a_clear_refusal() {
    let app = people_app(|_| {}).await;
    let http = no_redirects();
    let (cookie, state) = start_sign_in(&http, &app).await;
    // A code far longer than GitHub's: refused before GitHub is asked.
    let long = "c".repeat(5_000);
    let answer = http
        .get(format!(
            "{}/login/github/callback?code={long}&state={state}",
            app.url
        ))
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let exchanges = app
        .github_requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/login/oauth/access_token")
        .count();
    assert_eq!(exchanges, 0);
    // An error GitHub never sends, with markup: shown as harmless text.
    let answer = http
        .get(format!(
            "{}/login/github/callback?error=%3Cscript%3Ex&state={state}",
            app.url
        ))
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(!answer.text().await.unwrap().contains("<script>"));
    // A token form with a lifetime not offered, or no name.
    let session = sign_in_with_github(&app, "wes-writer").await;
    let page = app.page("/tokens", &session).await;
    let form_token = form_token_of(&page);
    for (name, days) in [("laptop", "100000"), ("  ", "30")] {
        let answer = app
            .http
            .post(format!("{}/tokens", app.url))
            .header("cookie", &session)
            .header("sec-fetch-site", "same-origin")
            .form(&[("name", name), ("days", days), ("form_token", &form_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{name:?} {days}");
    }
    // From another site, even with the session: refused.
    let answer = app
        .http
        .post(format!("{}/tokens", app.url))
        .header("cookie", &session)
        .header("sec-fetch-site", "cross-site")
        .form(&[("name", "x"), ("days", "30"), ("form_token", &form_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    // Ids that are no deployment's.
    let token = make_token(&app, &session).await;
    for id in ["..%2F..%2Fapi", "99999999999999999999999", "-1"] {
        let path = format!("/api/deployments/{id}/approve");
        let (status, body) = call(&app, &token, reqwest::Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
    }
    // A session cookie edited to name someone else is no session at all.
    let (name, value) = session.split_once('=').unwrap();
    let forged = format!("{name}={}", value.replace("wes-writer", "ada-admin"));
    let page = app.page("/tokens", &forged).await;
    assert!(!page.contains("ada-admin"), "{page}");
}

#[tokio::test]
async fn a_deployment_a_person_made_on_github_is_in_the_audit_log_once() {
    let app = people_app(|_| {}).await;
    // Made by hand (no merge in its payload), forced through locks, by octo-dev.
    let mut event: Value = serde_json::from_slice(&deployment_of(REPO, 7201)).unwrap();
    event["deployment"]["payload"] = json!({"force": true, "deploy_user": "someone"});
    let body = event.to_string().into_bytes();
    for _ in 0..2 {
        // The second is GitHub's redelivery: the same delivery id.
        let answer = app.post_delivery("deployment", &body, "d-7201", 1).await;
        assert!(answer.status().is_success());
    }
    app.wait_for_final_status(7201).await;
    // A merge's deployment is automation, not an operator's action.
    app.post_webhook("deployment", &deployment_of(REPO, 7202))
        .await;
    app.wait_for_final_status(7202).await;
    let (_, log) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/audit", None).await;
    let entries: Vec<&Value> = log["entries"].as_array().unwrap().iter().collect();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["action"], "force");
    assert_eq!(entries[0]["actor"], "octo-dev");
    assert_eq!(entries[0]["target"], "7201");
    assert_eq!(entries[0]["repository"], REPO);
}

#[tokio::test]
async fn a_github_too_slow_to_answer_costs_a_sign_in_ten_seconds_at_most() {
    let app = people_app(|_| {}).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/{REPO}/collaborators/wes-writer/permission"
        )))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(25)))
        .with_priority(1)
        .mount(&app.github)
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let (cookie, state) = start_sign_in(&http, &app).await;
    let started = std::time::Instant::now();
    let back = http
        .get(format!(
            "{}/login/github/callback?code=code-wes-writer&state={state}",
            app.url
        ))
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(back.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(back.text().await.unwrap().contains("too slow"));
    assert!(waited < Duration::from_secs(15), "{waited:?}");
}
