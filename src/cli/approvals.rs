//! `deployhook approvals`, `approve ID` and `reject ID --reason WHY`: what waits for
//! approval, and a person's verdict on it, through the running server's API (see
//! [`crate::web::approvals`]). A verdict is a person's: these need a personal token
//! (`DEPLOYHOOK_TOKEN`), which the server knows the person by.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::admin::{call, path_segment, text};
use crate::cli::api::Kind;
use crate::cli::terminal::{outln, table};
use crate::cli::{ApproveArgs, RejectArgs, ServerArgs};

/// `deployhook approvals`: the deployments waiting for approval.
pub async fn list(server: ServerArgs) -> anyhow::Result<ExitCode> {
    let answer = call(
        &server,
        reqwest::Method::GET,
        "/api/approvals",
        None,
        &[("/waiting", Kind::List)],
    )
    .await?;
    let waiting = answer["waiting"].as_array().cloned().unwrap_or_default();
    if waiting.is_empty() {
        outln!("nothing waits for approval");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = waiting
        .iter()
        .map(|w| {
            let approvers: Vec<String> = w["approvers"]
                .as_array()
                .map(|a| a.iter().map(|v| text(v).into_owned()).collect())
                .unwrap_or_default();
            vec![
                w["deployment_id"].to_string(),
                text(&w["repository"]).into_owned(),
                text(&w["environment"]).into_owned(),
                text(&w["sha"]).chars().take(7).collect(),
                text(&w["author"]).into_owned(),
                format!(
                    "{}/{} {}",
                    approvers.len(),
                    w["needed"],
                    approvers.join(",")
                ),
                text(&w["deadline"]).into_owned(),
                text(&w["waiting_for"]).into_owned(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "REPOSITORY",
        "ENVIRONMENT",
        "SHA",
        "AUTHOR",
        "APPROVED",
        "UNTIL",
        "WAITING FOR",
    ];
    for line in table(&header, &rows) {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `deployhook approve ID`.
pub async fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/deployments/{}/approve", path_segment(&args.id));
    let answer = call(
        &args.server,
        reqwest::Method::POST,
        &path,
        None,
        &[("/approvers", Kind::List), ("/queued", Kind::Present)],
    )
    .await?;
    let approvers: Vec<String> = answer["approvers"]
        .as_array()
        .map(|a| a.iter().map(|v| text(v).into_owned()).collect())
        .unwrap_or_default();
    if answer["queued"] == json!(true) {
        outln!(
            "deployment {} approved by {}: queued to deploy",
            args.id,
            approvers.join(", ")
        );
    } else {
        outln!(
            "deployment {} approved by {}: {} of {} approvals",
            args.id,
            approvers.join(", "),
            approvers.len(),
            answer["needed"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `deployhook reject ID --reason WHY`.
pub async fn reject(args: RejectArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/deployments/{}/reject", path_segment(&args.id));
    let answer = call(
        &args.server,
        reqwest::Method::POST,
        &path,
        Some(json!({ "reason": args.reason })),
        &[("/rejected", Kind::Text)],
    )
    .await?;
    outln!("deployment {}: {}", args.id, text(&answer["rejected"]));
    Ok(ExitCode::SUCCESS)
}
