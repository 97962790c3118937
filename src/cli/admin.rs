//! `deployhook lock`, `unlock`, `locks` and `rollback`: they ask the running server, through
//! its admin API (`/api/…`, see [`crate::web::admin`]), with `DEPLOYHOOK_ADMIN_TOKEN`, so
//! they work the same from the server's host or another. What they print comes from
//! answers checked to be deployhook's ([`crate::cli::api`]).

use std::borrow::Cow;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::api::{self, Kind, Shape};
use crate::cli::terminal::{field, outln};
use crate::cli::{LockArgs, RollbackArgs, ServerArgs, UnlockArgs};

/// What `lock` reads of its answer.
const LOCKED: Shape<'static> = &[
    ("/lock/environment", Kind::Text),
    ("/lock/reason", Kind::Text),
    ("/lock/locked_by", Kind::Text),
];
/// What `unlock` reads.
const UNLOCKED: Shape<'static> = &[
    ("/unlocked/environment", Kind::Text),
    ("/unlocked/reason", Kind::Text),
    ("/unlocked/locked_by", Kind::Text),
];
/// What `rollback` reads.
const ROLLED_BACK: Shape<'static> = &[
    ("/repository", Kind::Text),
    ("/environment", Kind::Text),
    ("/sha", Kind::Text),
    ("/rolled_back", Kind::Text),
    ("/locked", Kind::Text),
];

/// `deployhook lock ENV --reason … [--for 2h]`.
pub async fn lock(args: LockArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({
        "environment": args.environment,
        "reason": args.reason,
        "by": who(args.by.as_deref()),
    });
    if let Some(duration) = args.duration {
        body["for"] = json!(humantime::format_duration(duration).to_string());
    }
    let answer = call(
        &args.server,
        reqwest::Method::POST,
        "/api/locks",
        Some(body),
        LOCKED,
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
    let answer = call_as(
        &args.server,
        args.by.as_deref(),
        reqwest::Method::DELETE,
        &path,
        None,
        UNLOCKED,
    )
    .await?;
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
    let shape = &[("/locks", Kind::List)];
    let answer = call(&args, reqwest::Method::GET, "/api/locks", None, shape).await?;
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
        "by": who(args.by.as_deref()),
    });
    let answer = call(
        &args.server,
        reqwest::Method::POST,
        "/api/rollback",
        Some(body),
        ROLLED_BACK,
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
    by: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    shape: Shape<'_>,
) -> anyhow::Result<Value> {
    api::call(server, method, path, body, Some(who(by)), shape).await
}

/// Calls the admin API; its JSON answer, holding what `shape` says, or an error that says
/// what went wrong.
pub(super) async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    shape: Shape<'_>,
) -> anyhow::Result<Value> {
    api::call(server, method, path, body, None, shape).await
}

/// `--by`, else the user running the command (`$USER`, else the system's name for the uid).
fn who(by: Option<&str>) -> String {
    crate::cli::user::name_or(by)
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
