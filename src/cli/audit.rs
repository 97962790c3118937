//! `deployhook audit`: the audit log, newest first — who signed in, locked, unlocked, rolled
//! back, retried or dismissed what, from which address, done or refused — through the
//! running server's admin API (see [`crate::web::audit`]), as an aligned table or, with
//! `--json`, the server's answer.

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::AuditArgs;
use crate::cli::admin::{call, text, text_or};
use crate::cli::api::Kind;
use crate::cli::terminal::{json, outln, table};

/// `deployhook audit [--limit N] [--actor LOGIN] [--action ACTION] [--environment ENV]
/// [--repository R] [--before ID] [--json]`.
pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/audit?{}", query(&args));
    let shape = &[("/entries", Kind::List)];
    let answer = call(&args.server, reqwest::Method::GET, &path, None, shape).await?;
    if args.json {
        outln!("{}", json(&answer));
    } else {
        list(&answer, filtered(&args));
    }
    Ok(ExitCode::SUCCESS)
}

/// The API's query string for `args`.
fn query(args: &AuditArgs) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    if let Some(before) = args.before {
        pairs.push(("before", before.to_string()));
    }
    for (name, value) in [
        ("actor", &args.actor),
        ("action", &args.action),
        ("environment", &args.environment),
        ("repository", &args.repository),
    ] {
        if let Some(value) = value {
            pairs.push((name, value.clone()));
        }
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

fn filtered(args: &AuditArgs) -> bool {
    args.actor.is_some()
        || args.action.is_some()
        || args.environment.is_some()
        || args.repository.is_some()
}

/// Who, as the dashboard shows it: a GitHub login alone, the others with how they acted.
fn who(entry: &Value) -> String {
    let login = text(&entry["actor"]);
    match entry["via"].as_str() {
        Some("github") => login.into_owned(),
        Some("personal_token") => format!("{login} (personal token)"),
        Some("admin_token") => format!("{login} (admin token)"),
        _ => format!("{login} ({})", text(&entry["via"])),
    }
}

fn list(answer: &Value, filtered: bool) {
    let entries = answer["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        let matching = if filtered {
            " matching these filters"
        } else {
            ""
        };
        outln!("no audit entry{matching}");
        return;
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e["id"].to_string(),
                text(&e["at"]).into_owned(),
                who(e),
                text(&e["action"]).into_owned(),
                text_or(&e["repository"], "-").into_owned(),
                text_or(&e["environment"], "-").into_owned(),
                text_or(&e["target"], "-").into_owned(),
                text(&e["address"]).into_owned(),
                text(&e["outcome"]).into_owned(),
                text_or(&e["detail"], "").into_owned(),
            ]
        })
        .collect();
    let header = [
        "#",
        "WHEN",
        "WHO",
        "ACTION",
        "REPOSITORY",
        "ENVIRONMENT",
        "TARGET",
        "ADDRESS",
        "OUTCOME",
        "DETAIL",
    ];
    for line in table(&header, &rows) {
        outln!("{line}");
    }
    if let Some(next) = answer["next"].as_i64() {
        outln!("older entries: deployhook audit --before {next}");
    }
}
