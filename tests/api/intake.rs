//! Bad requests get the right 4xx, a message saying what was wrong, and no GitHub call.

use deployhook::webhook::intake::MAX_WEBHOOK_BODY;
use deployhook::webhook::signature::sign;
use reqwest::StatusCode;

use crate::helpers::{SECRET, TestApp, body_json, fixture, spawn_app, spawn_app_with, summary};

const MERGED: &str = "pull_request.closed.merged.json";

/// Posts `body` with GitHub's delivery ids and exactly the other headers given.
async fn post_with(app: &TestApp, headers: &[(&str, String)], body: Vec<u8>) -> reqwest::Response {
    let mut request = app.request();
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.body(body).send().await.unwrap()
}

/// Asserts the status, that the error message contains `says`, and (after the server has
/// stopped, so nothing is still on its way) that GitHub was never called.
async fn assert_refused(
    mut app: TestApp,
    response: reqwest::Response,
    status: StatusCode,
    says: &str,
) {
    assert_eq!(response.status(), status);
    let body = body_json(response).await;
    let error = body["error"].as_str().unwrap();
    assert!(error.contains(says), "{error:?} should contain {says:?}");
    app.stop().await;
    assert!(
        app.github_requests().await.is_empty(),
        "{:?}",
        summary(&app.github_requests().await)
    );
}

#[tokio::test]
async fn an_unsigned_delivery_is_refused_with_401_naming_the_header() {
    let app = spawn_app().await;
    let response = post_with(
        &app,
        &[
            ("Content-Type", "application/json".to_owned()),
            ("X-GitHub-Event", "pull_request".to_owned()),
        ],
        fixture(MERGED),
    )
    .await;
    assert_refused(
        app,
        response,
        StatusCode::UNAUTHORIZED,
        "missing X-Hub-Signature-256",
    )
    .await;
}

#[tokio::test]
async fn a_delivery_signed_with_another_secret_is_refused_with_401_and_no_expected_value() {
    let app = spawn_app().await;
    let body = fixture(MERGED);
    let response = post_with(
        &app,
        &[
            ("Content-Type", "application/json".to_owned()),
            ("X-GitHub-Event", "pull_request".to_owned()),
            ("X-Hub-Signature-256", sign(b"another-secret", &body)),
        ],
        body.clone(),
    )
    .await;
    let expected = sign(SECRET.as_bytes(), &body);
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("secret mismatch"), "{text}");
    assert!(
        !text.contains(expected.trim_start_matches("sha256=")),
        "{text}"
    );
    let mut app = app;
    app.stop().await;
    assert!(app.github_requests().await.is_empty());
}

#[tokio::test]
async fn a_body_changed_after_signing_is_refused() {
    let app = spawn_app().await;
    let body = fixture(MERGED);
    let mut tampered = body.clone();
    tampered.push(b'\n');
    let response = post_with(
        &app,
        &[
            ("Content-Type", "application/json".to_owned()),
            ("X-GitHub-Event", "pull_request".to_owned()),
            ("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body)),
        ],
        tampered,
    )
    .await;
    assert_refused(
        app,
        response,
        StatusCode::UNAUTHORIZED,
        "a proxy changed the body",
    )
    .await;
}

#[tokio::test]
async fn a_delivery_without_an_event_header_is_refused_with_400_naming_it() {
    let app = spawn_app().await;
    let body = fixture(MERGED);
    let response = post_with(
        &app,
        &[
            ("Content-Type", "application/json".to_owned()),
            ("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body)),
        ],
        body,
    )
    .await;
    assert_refused(app, response, StatusCode::BAD_REQUEST, "X-GitHub-Event").await;
}

#[tokio::test]
async fn another_content_type_is_refused_with_415_naming_the_accepted_ones() {
    let app = spawn_app().await;
    let body = fixture(MERGED);
    let response = post_with(
        &app,
        &[
            ("Content-Type", "text/plain".to_owned()),
            ("X-GitHub-Event", "pull_request".to_owned()),
            ("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body)),
        ],
        body,
    )
    .await;
    assert_refused(
        app,
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/x-www-form-urlencoded",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_25_mib_is_refused_with_413() {
    let app = spawn_app().await;
    let body = vec![b' '; MAX_WEBHOOK_BODY + 1];
    let response = app.post_webhook("pull_request", &body).await;
    assert_refused(app, response, StatusCode::PAYLOAD_TOO_LARGE, "25 MiB").await;
}

#[tokio::test]
async fn a_chunked_body_growing_past_25_mib_is_refused_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /event_handler HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: ping\r\nX-Hub-Signature-256: sha256={}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        "0".repeat(64)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // No Content-Length to refuse it early: the limit must hold while reading.
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..26 {
        let frame = format!("{:x}\r\n", chunk.len());
        let sent = async {
            stream.write_all(frame.as_bytes()).await?;
            stream.write_all(&chunk).await?;
            stream.write_all(b"\r\n").await
        };
        if sent.await.is_err() {
            break; // the server answered and closed: read what it said
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(crate::helpers::WAIT, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(answer.contains("25 MiB"), "{answer}");
}

#[tokio::test]
async fn malformed_json_is_refused_with_400_and_its_position() {
    let app = spawn_app().await;
    let response = app
        .post_webhook("pull_request", b"{\n  \"action\": \"closed\",\n  oops\n}")
        .await;
    assert_refused(app, response, StatusCode::BAD_REQUEST, "line 3 column 3").await;
}

#[tokio::test]
async fn a_payload_missing_what_the_event_needs_is_refused_with_400_naming_the_field() {
    let app = spawn_app().await;
    let response = app
        .post_webhook("deployment", br#"{"action":"created"}"#)
        .await;
    assert_refused(
        app,
        response,
        StatusCode::BAD_REQUEST,
        "missing field `deployment`",
    )
    .await;
}

#[tokio::test]
async fn a_form_body_without_payload_is_refused_with_400() {
    let app = spawn_app().await;
    let body = b"zen=hello".to_vec();
    let response = post_with(
        &app,
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("X-GitHub-Event", "ping".to_owned()),
            ("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body)),
        ],
        body,
    )
    .await;
    assert_refused(app, response, StatusCode::BAD_REQUEST, "`payload`").await;
}

#[tokio::test]
async fn malformed_json_inside_a_form_payload_is_refused_with_its_position() {
    let app = spawn_app().await;
    let response = app.post_webhook_form("ping", b"{\"zen\": }").await;
    assert_refused(app, response, StatusCode::BAD_REQUEST, "line 1 column 9").await;
}

#[tokio::test]
async fn a_delivery_signed_with_the_second_of_two_rotating_secrets_is_accepted() {
    let app = spawn_app_with(|config, _| {
        config.webhook_secrets = deployhook::webhook::signature::WebhookSecrets::from_list(
            &format!("new-secret,{SECRET}"),
        );
    })
    .await;
    let response = app.post_webhook("ping", &fixture("ping.json")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_signature_checks_off_an_unsigned_delivery_is_accepted() {
    let app = spawn_app_with(|config, _| config.webhook_secrets = None).await;
    let response = post_with(
        &app,
        &[
            ("Content-Type", "application/json".to_owned()),
            ("X-GitHub-Event", "ping".to_owned()),
        ],
        fixture("ping.json"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_invalid_delivery_id_header_is_refused_with_400() {
    let app = spawn_app().await;
    let body = fixture("ping.json");
    let response = app
        .http
        .post(format!("{}/event_handler", app.url))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "ping")
        .header("X-GitHub-Delivery", "not a guid!")
        .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_refused(app, response, StatusCode::BAD_REQUEST, "X-GitHub-Delivery").await;
}
