//! `deployhook deliveries`: the recent deliveries (`--refused`: those refused, with why and
//! from where), or one of them with its headers and the deployments it led to, through the
//! running server's admin API (see [`crate::web::deliveries`]).

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::DeliveriesArgs;
use crate::cli::admin::{call, path_segment, text, text_or};
use crate::cli::api::Kind;
use crate::cli::terminal::{field, outln, table};

/// `deployhook deliveries [ID] [--refused] [--limit N]`.
pub async fn run(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    match (&args.id, args.refused) {
        (Some(id), true) => {
            let path = format!("/api/deliveries/refused/{}", path_segment(id));
            let shape = &[("/refused", Kind::Object)];
            let answer = call(&args.server, reqwest::Method::GET, &path, None, shape).await?;
            show_refused(&answer["refused"]);
        }
        (Some(id), false) => {
            let mut path = format!("/api/deliveries/{}", path_segment(id));
            if let Some(hook) = args.hook {
                path.push_str(&format!("?hook={hook}"));
            }
            let shape = &[("/delivery", Kind::Object)];
            let answer = call(&args.server, reqwest::Method::GET, &path, None, shape).await?;
            show(&answer);
        }
        (None, refused) => {
            let path = format!("/api/deliveries?refused={refused}&limit={}", args.limit);
            let shape = if refused {
                &[("/refused", Kind::List)]
            } else {
                &[("/deliveries", Kind::List)]
            };
            let answer = call(&args.server, reqwest::Method::GET, &path, None, shape).await?;
            if refused {
                list_refused(&answer);
            } else {
                list(&answer);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(answer: &Value) {
    let rows = answer["deliveries"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        outln!("no delivery recorded");
        return;
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            let event = match d["action"].as_str() {
                Some(action) => format!("{}.{}", text(&d["event"]), field(action)),
                None => text(&d["event"]).into_owned(),
            };
            vec![
                text(&d["received_at"]).into_owned(),
                text(&d["delivery_id"]).into_owned(),
                event,
                text_or(&d["repository"], "-").into_owned(),
                text(&d["outcome"]).into_owned(),
                text(&d["message"]).into_owned(),
            ]
        })
        .collect();
    let header = [
        "RECEIVED",
        "DELIVERY",
        "EVENT",
        "REPOSITORY",
        "OUTCOME",
        "MESSAGE",
    ];
    for line in table(&header, &rows) {
        outln!("{line}");
    }
}

fn list_refused(answer: &Value) {
    let rows = answer["refused"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        outln!("no delivery refused");
        return;
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r["id"].to_string(),
                text(&r["received_at"]).into_owned(),
                r["status"].to_string(),
                text(&r["client"]).into_owned(),
                text_or(&r["event"], "-").into_owned(),
                text(&r["message"]).into_owned(),
            ]
        })
        .collect();
    for line in table(
        &["#", "RECEIVED", "STATUS", "CLIENT", "EVENT", "WHY"],
        &rows,
    ) {
        outln!("{line}");
    }
}

fn headers(value: &Value) {
    outln!("headers:");
    for pair in value.as_array().cloned().unwrap_or_default() {
        outln!("  {}: {}", text(&pair[0]), text(&pair[1]));
    }
}

fn show(answer: &Value) {
    let d = &answer["delivery"];
    outln!(
        "delivery   {} (hook {})",
        text(&d["delivery_id"]),
        d["hook_id"]
    );
    outln!("received   {}", text(&d["received_at"]));
    let action = d["action"]
        .as_str()
        .map(|a| format!(" ({})", field(a)))
        .unwrap_or_default();
    outln!("event      {}{action}", text(&d["event"]));
    outln!("repository {}", text_or(&d["repository"], "-"));
    outln!(
        "outcome    {}: {}",
        text(&d["outcome"]),
        text(&d["message"])
    );
    headers(&d["headers"]);
    for m in answer["merges"].as_array().cloned().unwrap_or_default() {
        outln!(
            "merge      {}#{} to {} at {}",
            text(&m["repository"]),
            m["pull_request"],
            text(&m["environment"]),
            text(&m["sha"])
        );
    }
    let deployments = answer["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if deployments.is_empty() {
        outln!("deployments: none (yet)");
    }
    for j in &deployments {
        outln!(
            "deployment {} {} of {} to {}: {}",
            j["deployment_id"],
            text(&j["task"]),
            text(&j["repository"]),
            text(&j["environment"]),
            text(&j["state"])
        );
    }
}

fn show_refused(r: &Value) {
    outln!("refused    #{} at {}", r["id"], text(&r["received_at"]));
    outln!("answer     {}: {}", r["status"], text(&r["message"]));
    outln!("client     {}", text(&r["client"]));
    outln!("event      {}", text_or(&r["event"], "-"));
    outln!("delivery   {}", text_or(&r["delivery_id"], "-"));
    headers(&r["headers"]);
}
