//! `deployhook calls`: the GitHub calls (and notifications) the server gave up on, and
//! `calls retry ID` / `calls dismiss ID` (`all`: every one) to resolve them, through the
//! running server's admin API (see [`crate::web::calls`]), like `deployhook lock`.

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::admin::{call, call_as, path_segment, text};
use crate::cli::api::Kind;
use crate::cli::terminal::outln;
use crate::cli::{CallAction, CallsArgs};

/// `deployhook calls [retry|dismiss ID]`.
pub async fn run(args: CallsArgs) -> anyhow::Result<ExitCode> {
    let (Some(action), Some(id)) = (args.action, args.id.as_deref()) else {
        return list(&args).await;
    };
    let verb = match action {
        CallAction::Retry => "retry",
        CallAction::Dismiss => "dismiss",
    };
    let path = if id == "all" {
        format!("/api/calls/failed/{verb}")
    } else {
        format!("/api/calls/{}/{verb}", path_segment(id))
    };
    let (done, pointer) = match action {
        CallAction::Retry => ("retried", "/retried"),
        CallAction::Dismiss => ("dismissed", "/dismissed"),
    };
    let answer = call_as(
        &args.server,
        args.by.as_deref(),
        reqwest::Method::POST,
        &path,
        None,
        &[(pointer, Kind::Present)],
    )
    .await?;
    let calls: Vec<Value> = match &answer[done] {
        Value::Array(calls) => calls.clone(),
        one => vec![one.clone()],
    };
    for c in &calls {
        outln!("call {} {done}: {}", c["id"], text(&c["what"]));
    }
    let not_done = answer["not_done"].as_array().cloned().unwrap_or_default();
    for n in &not_done {
        outln!("call {} not {done}: {}", n["id"], text(&n["error"]));
    }
    if calls.is_empty() && not_done.is_empty() {
        outln!("no call is given up");
    }
    Ok(if not_done.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn list(args: &CallsArgs) -> anyhow::Result<ExitCode> {
    let answer = call(
        &args.server,
        reqwest::Method::GET,
        "/api/calls/failed",
        None,
        &[("/failed", Kind::List), ("/dismissed", Kind::List)],
    )
    .await?;
    let failed = answer["failed"].as_array().cloned().unwrap_or_default();
    if failed.is_empty() {
        outln!("no call is given up");
    } else {
        outln!(
            "{:<8} {:<36} {:<24} {:<22} {:>8}  WHY",
            "ID",
            "CALL",
            "REPOSITORY",
            "QUEUED",
            "ATTEMPTS"
        );
        for c in &failed {
            outln!(
                "{:<8} {:<36} {:<24} {:<22} {:>8}  {}",
                c["id"],
                text(&c["what"]),
                text(&c["repository"]),
                text(&c["queued_at"]),
                c["attempts"],
                text(&c["last_error"])
            );
        }
        outln!(
            "`deployhook calls retry ID` sends one again; `deployhook calls dismiss ID` drops it"
        );
    }
    let dismissed = answer["dismissed"].as_array().cloned().unwrap_or_default();
    if !dismissed.is_empty() {
        outln!("\ndismissed recently:");
        for c in &dismissed {
            outln!(
                "{:<8} {:<36} {:<24} dismissed by {} at {}",
                c["id"],
                text(&c["what"]),
                text(&c["repository"]),
                text(&c["dismissed_by"]),
                text(&c["dismissed_at"])
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
