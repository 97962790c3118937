//! `deployhook lock`, `unlock`, `locks` and `rollback`: they ask the running server, through
//! its admin API (`/api/…`, see [`crate::web::admin`]), with `DEPLOYHOOK_ADMIN_TOKEN`, so
//! they work the same from the server's host or another.

use std::borrow::Cow;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::terminal::{errln, field, outln};
use crate::cli::{LockArgs, RollbackArgs, ServerArgs, UnlockArgs};

/// `deployhook lock ENV --reason … [--for 2h]`.
pub async fn lock(args: LockArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({
        "environment": args.environment,
        "reason": args.reason,
        "by": who(&args.server),
    });
    if let Some(duration) = args.duration {
        body["for"] = json!(humantime::format_duration(duration).to_string());
    }
    let answer = call(
        &args.server,
        reqwest::Method::POST,
        "/api/locks",
        Some(body),
    )
    .await?;
    let lock = &answer["lock"];
    let until = lock["until"].as_str().map_or_else(
        || "until unlocked".to_owned(),
        |until| format!("until {until}"),
    );
    outln!(
        "{} locked {until}: {} (by {})",
        text(&lock["environment"]),
        text(&lock["reason"]),
        text(&lock["locked_by"])
    );
    Ok(ExitCode::SUCCESS)
}

/// `deployhook unlock ENV`.
pub async fn unlock(args: UnlockArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/locks/{}", path_segment(&args.environment));
    let answer = call_as(&args.server, reqwest::Method::DELETE, &path, None).await?;
    outln!(
        "{} unlocked (it was locked by {}: {}); what waited runs now",
        text(&answer["unlocked"]["environment"]),
        text(&answer["unlocked"]["locked_by"]),
        text(&answer["unlocked"]["reason"])
    );
    Ok(ExitCode::SUCCESS)
}

/// `deployhook locks`.
pub async fn locks(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let answer = call(&args, reqwest::Method::GET, "/api/locks", None).await?;
    let locks = answer["locks"].as_array().cloned().unwrap_or_default();
    if locks.is_empty() {
        outln!("no environment is locked");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<16} {:<16} {:<22} {:<22} REASON",
        "ENVIRONMENT",
        "BY",
        "SINCE",
        "UNTIL"
    );
    for lock in &locks {
        outln!(
            "{:<16} {:<16} {:<22} {:<22} {}",
            text(&lock["environment"]),
            text(&lock["locked_by"]),
            text(&lock["locked_at"]),
            text_or(&lock["until"], "unlocked by hand"),
            text(&lock["reason"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `deployhook rollback OWNER/REPO -e ENV [--to SHA]`.
pub async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let body = json!({
        "repository": args.repo,
        "environment": args.environment,
        "to": args.to,
        "by": who(&args.server),
    });
    let answer = call(
        &args.server,
        reqwest::Method::POST,
        "/api/rollback",
        Some(body),
    )
    .await?;
    outln!(
        "rolling {} in {} back to {} (from {}); {} is locked: {}. \
         `deployhook unlock {}` lets merges deploy again.",
        text(&answer["repository"]),
        text(&answer["environment"]),
        short(&answer["sha"]),
        short(&answer["rolled_back"]),
        text(&answer["environment"]),
        text(&answer["locked"]),
        text(&answer["environment"]),
    );
    Ok(ExitCode::SUCCESS)
}

/// [`call`], saying who acts in a header (a `DELETE` has no body to say it in).
pub(super) async fn call_as(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    call_with(server, method, path, body, Some(who(server))).await
}

/// Calls the admin API; its JSON answer, or an error that says what went wrong.
pub(super) async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    call_with(server, method, path, body, None).await
}

async fn call_with(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    by: Option<String>,
) -> anyhow::Result<Value> {
    let token = admin_token(&server.server)?;
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("could not build an HTTP client")?;
    let mut request = client.request(method, &url).bearer_auth(token);
    if let Some(by) = by {
        request = request.header("X-Deployhook-By", by);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|err| unreachable(&url, &err))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = answer["error"].as_str().unwrap_or("no explanation");
        bail!("deployhook answered {status}: {why}");
    }
    Ok(answer)
}

/// `DEPLOYHOOK_ADMIN_TOKEN`, for a call to `server`; a warning first when it would cross
/// the network in the clear.
pub(super) fn admin_token(server: &str) -> anyhow::Result<String> {
    let Some(token) = std::env::var("DEPLOYHOOK_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    else {
        bail!(
            "DEPLOYHOOK_ADMIN_TOKEN is not set: these commands use the running server's admin \
             token (the same value the server has)"
        );
    };
    if exposes_token(server) {
        errln!(
            "warning: {server} is plain http to another host: the admin token crosses the \
             network unencrypted (use https, or run the command on the server's host)"
        );
    }
    Ok(token)
}

/// A request to the server that got no answer, said with its cause and what to check.
pub(super) fn unreachable(url: &str, err: &reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "could not reach deployhook at {url}: {} (is it running? set --server or \
         DEPLOYHOOK_SERVER)",
        crate::github::error::cause(err)
    )
}

/// Whether sending a token to `server` puts it on the network in the clear: plain http to
/// anything but this host.
fn exposes_token(server: &str) -> bool {
    let Some(rest) = server.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    !(host.eq_ignore_ascii_case("localhost") || host == "::1" || host.starts_with("127."))
}

fn who(server: &ServerArgs) -> String {
    server
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "deployhook-cli".to_owned())
}

/// A string of the server's answer, as one field of a line ([`field`]); `?` when missing.
pub(super) fn text(value: &Value) -> Cow<'_, str> {
    text_or(value, "?")
}

/// [`text`], with what to show when the value is missing.
pub(super) fn text_or<'a>(value: &'a Value, missing: &'a str) -> Cow<'a, str> {
    field(value.as_str().unwrap_or(missing))
}

fn short(value: &Value) -> String {
    text(value).chars().take(7).collect()
}

/// An environment name as one path segment (`review/pr-42` holds a slash).
pub(super) fn path_segment(name: &str) -> String {
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_to_another_host_is_warned_of_and_loopback_or_https_is_not() {
        for exposed in [
            "http://deploy.example.com",
            "http://10.0.0.5:4567/",
            "http://[fd00::1]:80",
        ] {
            assert!(exposes_token(exposed), "{exposed}");
        }
        for safe in [
            "https://deploy.example.com",
            "http://127.0.0.1:4567",
            "http://localhost:4567",
            "http://[::1]:4567",
        ] {
            assert!(!exposes_token(safe), "{safe}");
        }
    }
}
