//! The operators' way in holds under attack (issue 26, items 3 and 10): a stranger guessing
//! the admin or metrics token from one address never locks out the admin at another, and is
//! limited itself; a stray session cookie sent before the real one does not sign the admin
//! out; and the admin commands refuse answers that are not deployhook's (a redirect, a page)
//! instead of printing `?` and exiting 0, and never send the token elsewhere.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, WAIT, admin_cli, spawn_app_with};

const ADMIN_TOKEN: &str = "admin-access-tests-token-0123456789abcdef";
const METRICS_TOKEN: &str = "metrics-access-tests-token-0123456789abcdef";
/// The stranger's address: a loopback address of its own, so the server tells it from the
/// admin's (127.0.0.1).
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn app() -> TestApp {
    spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.metrics_token = Some(METRICS_TOKEN.to_owned().into());
    })
    .await
}

/// A client whose connections come from `address`; redirects are shown, not followed.
fn client_from(address: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn list_locks(http: &reqwest::Client, app: &TestApp, token: &str) -> StatusCode {
    http.get(format!("{}/api/locks", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn sign_in(http: &reqwest::Client, app: &TestApp, token: &str) -> StatusCode {
    http.post(format!("{}/login", app.url))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

fn count(statuses: &[StatusCode], wanted: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == wanted).count()
}

#[tokio::test]
async fn a_stranger_guessing_admin_tokens_never_locks_the_admin_out_and_is_limited_itself() {
    let app = app().await;
    let (stranger, admin) = (client_from(Some(STRANGER)), client_from(None));
    // The stranger spends its guesses first, then keeps guessing, as fast as it can, while
    // the admin works: the admin API and the dashboard's sign-in alike.
    let mut guessed = Vec::new();
    for i in 0..12 {
        guessed.push(list_locks(&stranger, &app, &format!("wrong-{i:04}-{:0>40}", 0)).await);
    }
    let guessing = {
        let (stranger, url) = (stranger.clone(), app.url.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..150 {
                let wrong = format!("wrong-guess-{i:04}-{:0>40}", i);
                let request = if i % 10 == 0 {
                    stranger
                        .post(format!("{url}/login"))
                        .form(&[("token", wrong)])
                } else {
                    stranger.get(format!("{url}/api/locks")).bearer_auth(wrong)
                };
                statuses.push(request.send().await.unwrap().status());
            }
            statuses
        })
    };
    let mut answered = Vec::new();
    for _ in 0..20 {
        answered.push(list_locks(&admin, &app, ADMIN_TOKEN).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signed_in = sign_in(&admin, &app, ADMIN_TOKEN).await;
    guessed.extend(guessing.await.unwrap());
    let stranger_right = list_locks(&stranger, &app, ADMIN_TOKEN).await;
    let (ok, wrong, limited) = (
        count(&answered, StatusCode::OK),
        count(&guessed, StatusCode::UNAUTHORIZED),
        count(&guessed, StatusCode::TOO_MANY_REQUESTS),
    );
    println!(
        "admin: {ok} of {} calls answered 200, sign-in {signed_in}; stranger: {} guesses, \
         {wrong} answered 401, {limited} answered 429; the right token from the stranger's \
         address: {stranger_right}",
        answered.len(),
        guessed.len()
    );
    assert_eq!(ok, answered.len(), "the admin was refused: {answered:?}");
    assert_eq!(
        signed_in,
        StatusCode::SEE_OTHER,
        "the admin could not sign in"
    );
    // A burst of 10, then one a 6 s: the test is over well within 12 s.
    assert!(wrong <= 12, "{wrong} guesses were checked: {guessed:?}");
    assert_eq!(wrong + limited, guessed.len(), "{guessed:?}");
    assert_eq!(
        stranger_right,
        StatusCode::TOO_MANY_REQUESTS,
        "an address over its limit has no token checked, so the limit reveals nothing"
    );
}

/// Behind a proxy every connection comes from it: the client is the address it forwarded
/// for, when (and only when) the proxy is trusted.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_a_limit_of_its_own() {
    let forwarded = |app: &TestApp, client: &str, token: &str| {
        client_from(None)
            .get(format!("{}/api/locks", app.url))
            .header("X-Forwarded-For", client)
            .bearer_auth(token)
            .send()
    };
    let behind_proxy = spawn_app_with(|config, _| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        config.trusted_proxies = deployhook::config::TrustedProxies::parse(["127.0.0.1"]).unwrap();
    })
    .await;
    let mut stranger = Vec::new();
    for i in 0..15 {
        let wrong = format!("wrong-{i:04}-{:0>40}", 0);
        // What the stranger wrote into the header itself is not believed: the proxy
        // appended the address it came from.
        let header = format!("10.9.9.{i}, 203.0.113.7");
        stranger.push(
            forwarded(&behind_proxy, &header, &wrong)
                .await
                .unwrap()
                .status(),
        );
    }
    let admin = forwarded(&behind_proxy, "198.51.100.9", ADMIN_TOKEN)
        .await
        .unwrap()
        .status();
    assert_eq!(
        count(&stranger, StatusCode::UNAUTHORIZED),
        10,
        "{stranger:?}"
    );
    assert_eq!(count(&stranger, StatusCode::TOO_MANY_REQUESTS), 5);
    assert_eq!(
        admin,
        StatusCode::OK,
        "another forwarded client is not refused"
    );

    // From a peer that is not a trusted proxy the header is ignored: a stranger naming a
    // new address each time is still one address.
    let direct = app().await;
    let mut rotating = Vec::new();
    for i in 0..15 {
        let wrong = format!("wrong-{i:04}-{:0>40}", 0);
        let header = format!("192.0.2.{i}");
        rotating.push(forwarded(&direct, &header, &wrong).await.unwrap().status());
    }
    assert_eq!(
        count(&rotating, StatusCode::TOO_MANY_REQUESTS),
        5,
        "{rotating:?}"
    );
}

#[tokio::test]
async fn wrong_metrics_tokens_are_limited_per_address_and_counted_in_the_metrics() {
    let app = app().await;
    let (stranger, admin) = (client_from(Some(STRANGER)), client_from(None));
    let metrics = |http: &reqwest::Client, token: &str| {
        http.get(format!("{}/metrics", app.url))
            .bearer_auth(token)
            .send()
    };
    let mut guessed = Vec::new();
    for i in 0..15 {
        let wrong = format!("wrong-metrics-token-{i:04}-{:0>30}", 0);
        guessed.push(metrics(&stranger, &wrong).await.unwrap().status());
    }
    for _ in 0..3 {
        list_locks(&stranger, &app, "a-wrong-admin-token-0123456789-0123456789").await;
    }
    let scraped = metrics(&admin, METRICS_TOKEN).await.unwrap();
    let status = scraped.status();
    let text = scraped.text().await.unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("deployhook_token_guesses"))
        .collect();
    println!(
        "stranger: {} answered 401, {} answered 429; the scrape: {status}, {lines:?}",
        count(&guessed, StatusCode::UNAUTHORIZED),
        count(&guessed, StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(count(&guessed, StatusCode::UNAUTHORIZED), 10, "{guessed:?}");
    assert_eq!(
        count(&guessed, StatusCode::TOO_MANY_REQUESTS),
        5,
        "{guessed:?}"
    );
    assert_eq!(status, StatusCode::OK, "{text}");
    for expected in [
        r#"deployhook_token_guesses_total{token="metrics",outcome="wrong"} 10"#,
        r#"deployhook_token_guesses_total{token="metrics",outcome="limited"} 5"#,
        r#"deployhook_token_guesses_total{token="admin",outcome="wrong"} 3"#,
    ] {
        assert!(lines.contains(&expected), "{expected} not in {lines:?}");
    }
}

#[tokio::test]
async fn a_bad_session_cookie_sent_before_a_good_one_does_not_sign_the_admin_out() {
    let app = app().await;
    let browser = client_from(None);
    let good = app.sign_in(ADMIN_TOKEN).await;
    let page = |cookies: Vec<String>| {
        let mut request = browser.get(format!("{}/", app.url));
        for cookie in cookies {
            request = request.header("Cookie", cookie);
        }
        request.send()
    };
    let stale = "deployhook_session=1700000000.0123456789abcdef0123456789abcdef.00".to_owned();
    let one_header = page(vec![format!("{stale}; {good}")])
        .await
        .unwrap()
        .status();
    let two_headers = page(vec![stale.clone(), good.clone()])
        .await
        .unwrap()
        .status();
    println!("a stale cookie, then the session's: {one_header} (one header), {two_headers} (two)");
    assert_eq!(one_header, StatusCode::OK);
    assert_eq!(two_headers, StatusCode::OK);
    // Bounded: a request stuffed with cookies is not checked to its end.
    let stuffed = vec![stale; 40].join("; ");
    let status = page(vec![format!("{stuffed}; {good}")])
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "only the first few are tried"
    );
}

/// A server that is not deployhook: everything is redirected to `elsewhere`, which answers
/// a web page; or everything answers a page or JSON of another shape.
async fn not_deployhook(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(answer).mount(&server).await;
    server
}

#[tokio::test]
async fn the_admin_commands_refuse_answers_that_are_not_deployhooks_and_follow_no_redirect() {
    let elsewhere = not_deployhook(
        ResponseTemplate::new(200)
            .insert_header("Content-Type", "text/html")
            .set_body_string("<html><body>Sign in to the portal</body></html>"),
    )
    .await;
    let redirecting = not_deployhook(
        ResponseTemplate::new(302).insert_header("Location", format!("{}/portal", elsewhere.uri())),
    )
    .await;
    let same_host = not_deployhook(
        ResponseTemplate::new(307).insert_header("Location", "/somewhere/else".to_owned()),
    )
    .await;
    let other_json =
        not_deployhook(ResponseTemplate::new(200).set_body_json(json!({"ok": true}))).await;
    let commands: [&[&str]; 10] = [
        &["lock", "production", "--reason", "incident"],
        &["unlock", "production"],
        &["locks"],
        &["rollback", "acme/widgets", "-e", "production"],
        &["calls"],
        &["calls", "retry", "7"],
        &["deliveries"],
        &["deliveries", "72d3162e-cc78-11e3-81ab-4c9367dc0958"],
        &["log", "880001"],
        &["log", "880001", "--follow"],
    ];
    let mut failures = Vec::new();
    for (server, what) in [
        (&redirecting, "a redirect to another host"),
        (&same_host, "a redirect on the same host"),
        (&elsewhere, "a web page"),
        (&other_json, "JSON of another shape"),
    ] {
        for args in commands {
            let command = admin_cli(&server.uri(), ADMIN_TOKEN, args);
            let output = tokio::process::Command::from(command)
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(WAIT * 6, output)
                .await
                .expect("the command ended")
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let named = stderr.contains(&server.uri());
            if output.status.success() || !named {
                failures.push(format!(
                    "{what}: `deployhook {}` exited {:?}, printed {stdout:?}, said {stderr:?}",
                    args.join(" "),
                    output.status.code()
                ));
            }
        }
    }
    let reached = elsewhere
        .received_requests()
        .await
        .unwrap_or_default()
        .len();
    println!(
        "{} of {} runs exited non-zero naming the URL; the page elsewhere received {reached} \
         requests (of which {} directly)",
        commands.len() * 4 - failures.len(),
        commands.len() * 4,
        commands.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        reached,
        commands.len(),
        "only the runs pointed at it directly reached it: no redirect was followed"
    );
}
