//! The server's own log, read from the real binary as an operator's journal would hold it:
//! a flood of refused deliveries makes a few summary lines that count every refusal (not a
//! line each), and what a request says (a header, a payload's environment name) cannot pass
//! for a field of a log line, in the text and the JSON formats. Also the house rule behind
//! the latter: no log field formats a request's value unquoted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::MockServer;

use deployhook::webhook::signature::sign;

use crate::helpers::{SECRET, TOKEN, WAIT, fixture_json, mount_github_defaults};
use crate::logged::Logged;

/// `deployhook serve` as a child, its log (stderr) collected line by line.
struct Server {
    logged: Logged,
    base: String,
}

impl Server {
    fn start(dir: &Path, github: &MockServer, format: &str) -> Self {
        Self::start_with(dir, github, format, &[])
    }

    /// [`Self::start`], with `extra` variables set.
    fn start_with(dir: &Path, github: &MockServer, format: &str, extra: &[(&str, &str)]) -> Self {
        let logged = Logged::spawn(
            Command::new(env!("CARGO_BIN_EXE_deployhook"))
                .arg("serve")
                .env_clear()
                .envs(extra.iter().copied())
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("GITHUB_WEBHOOK_SECRET", SECRET)
                .env("GITHUB_TOKEN", TOKEN)
                .env("GITHUB_API_URL", github.uri())
                .env("DEPLOY_COMMAND", "true")
                .env("DEPLOYHOOK_DATABASE", dir.join("deployhook.db"))
                .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0")
                .env("DEPLOYHOOK_LOG_FORMAT", format)
                .current_dir(dir),
        );
        let mut server = Self {
            logged,
            base: String::new(),
        };
        let listening = server.line_with("deployhook listening");
        // `addr=127.0.0.1:PORT` in text, `"addr":"127.0.0.1:PORT"` in JSON.
        let addr = listening
            .split("addr")
            .nth(1)
            .unwrap()
            .trim_start_matches(['=', '"', ':'])
            .split(['"', ' '])
            .next()
            .unwrap()
            .to_owned();
        server.base = format!("http://{addr}");
        server
    }

    fn lines(&self) -> Vec<String> {
        self.logged.lines()
    }

    /// The first line containing `text`, waiting up to [`WAIT`] for it.
    fn line_with(&self, text: &str) -> String {
        self.logged.line(text, WAIT)
    }

    async fn post(&self, event: &str, body: &str, signature: Option<String>) -> StatusCode {
        let mut request = reqwest::Client::new()
            .post(format!("{}/event_handler", self.base))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", "log-test-1");
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.body(body.to_owned()).send().await.unwrap().status()
    }
}

/// The hostile header of the report: it closes the span's braces and writes a message and
/// a field of its own.
const FORGED_EVENT: &str =
    r#"x" hook=1}: deployhook::web::event_handler: deploying deployment 42 outcome="accepted"#;
/// An environment name (any characters but control ones are allowed) that writes fields.
const FORGED_ENVIRONMENT: &str = r#"production" outcome="accepted" forged="1"#;

/// Sends the unsigned forged header, then a signed status naming the forged environment.
async fn send_forgeries(server: &Server) {
    let refused = server.post(FORGED_EVENT, "{}", None).await;
    assert_eq!(refused, StatusCode::BAD_REQUEST);
    let mut status = fixture_json("deployment_status.created.success.json");
    status["deployment_status"]["environment"] = json!(FORGED_ENVIRONMENT);
    let body = status.to_string();
    let signature = sign(SECRET.as_bytes(), body.as_bytes());
    let answered = server
        .post("deployment_status", &body, Some(signature))
        .await;
    assert_eq!(answered, StatusCode::OK);
}

#[tokio::test]
async fn a_header_or_payload_value_cannot_forge_a_field_of_the_text_log() {
    let github = MockServer::start().await;
    mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &github, "text");
    send_forgeries(&server).await;
    let refused = server.line_with("invalid X-GitHub-Event header");
    let status = server.line_with("forged=");
    let log = server.lines().join("\n");
    assert!(
        !log.contains(r#"x" hook=1}"#) && !log.contains(r#"forged="1""#),
        "a value was written unquoted:\n{log}"
    );
    // Both are there, each a quoted string with its quotes escaped (the header cut to the
    // 64 characters the span keeps).
    assert!(
        refused.contains(r#"event="x\" hook=1}: deployhook::web::event_handler: deploying"#),
        "{refused}"
    );
    assert!(
        status.contains(r#"environment="production\" outcome=\"accepted\" forged=\"1""#),
        "{status}"
    );
}

#[tokio::test]
async fn a_header_or_payload_value_is_a_json_string_of_its_own_field_in_the_json_log() {
    let github = MockServer::start().await;
    mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &github, "json");
    send_forgeries(&server).await;
    server.line_with("invalid X-GitHub-Event header");
    server.line_with("forged=");
    let events: Vec<Value> = server
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let refused = events
        .iter()
        .find(|e| e["fields"]["reason"] == "invalid_header")
        .expect("the refusal is logged");
    assert_eq!(refused["span"]["event"], FORGED_EVENT[..64], "{refused}");
    assert_eq!(refused["span"]["hook"], "", "{refused}");
    let status = events
        .iter()
        .find(|e| e["fields"]["message"] == "deployment status received")
        .expect("the status is logged");
    assert_eq!(
        status["fields"]["environment"], FORGED_ENVIRONMENT,
        "{status}"
    );
    assert_eq!(status["fields"].get("forged"), None, "{status}");
}

/// What a line of the text log says of refused deliveries: how many it counts.
fn refusals_counted(line: &str) -> Option<u64> {
    if line.contains("delivery refused") {
        return Some(1);
    }
    let count = line.split(" refused=").nth(1)?;
    count.split_whitespace().next()?.parse().ok()
}

#[tokio::test]
async fn a_flood_of_refusals_writes_a_few_lines_that_count_every_one() {
    const REFUSALS: u64 = 2000;
    const CONNECTIONS: u64 = 8;
    let github = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &github, "text");
    let started = Instant::now();
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let url = format!("{}/event_handler", server.base);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let body = br#"{"zen":"flood"}"#;
                let signature = sign(b"not-the-secret", body);
                for _ in 0..REFUSALS / CONNECTIONS {
                    let response = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("X-GitHub-Event", "ping")
                        .header("X-Hub-Signature-256", &signature)
                        .body(&body[..])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let sending = started.elapsed();
    // The last summary comes within a second or two of the last refusal.
    let until = Instant::now() + WAIT;
    let told = loop {
        let lines: Vec<String> = server
            .lines()
            .into_iter()
            .filter(|l| refusals_counted(l).is_some())
            .collect();
        let counted: u64 = lines.iter().filter_map(|l| refusals_counted(l)).sum();
        if counted >= REFUSALS || Instant::now() > until {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let counted: u64 = told.iter().filter_map(|l| refusals_counted(l)).sum();
    assert_eq!(counted, REFUSALS, "{told:#?}");
    // A line a second at most, and the first refusal in full: a few lines in all.
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        told.len() as u64 <= 2 * seconds + 1,
        "{} lines for {REFUSALS} refusals sent in {sending:?}: {:#?}",
        told.len(),
        &told[..told.len().min(5)]
    );
    let first = &told[0];
    assert!(
        first.contains("delivery refused")
            && first.contains("status=401")
            && first.contains("client=127.0.0.1")
            && first.contains(r#"error="X-Hub-Signature-256 does not match the body"#),
        "the first is logged in full: {first}"
    );
    let summary = told.last().unwrap();
    assert!(
        summary.contains("bad signature ×") && summary.contains("(top: 127.0.0.1 ×"),
        "{summary}"
    );
    // /metrics counts every one.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "deployhook_deliveries_rejected_total{{reason=\"bad_signature\"}} {REFUSALS}\n"
        )),
        "{metrics}"
    );
}

/// Fields that may be formatted with `%` (Display) or `?` (Debug): none carries what a
/// request said. Everything else is recorded as a string or a number, which the text log
/// quotes and escapes.
const FORMATTED_FIELDS: &[&str] = &[
    "addr",         // the listen address
    "client",       // a peer's IP address
    "command",      // the configured argv, and `?` quotes it anyway
    "database",     // the configured database, redacted
    "environments", // the configured environments' names
    "expires_at",   // an installation token's expiry, a time
    "peer",         // a peer's socket address
    "replica",      // this replica's id, made by deployhook
    "retry_in",     // a duration
    "timeout",      // a duration
];

/// The arguments of every `tracing::…!( … )` call in `source`, split at their top-level
/// commas, with the line each call starts on.
fn tracing_arguments(source: &str) -> Vec<(usize, Vec<String>)> {
    let mut calls = Vec::new();
    for (at, _) in source.match_indices("tracing::") {
        let rest = &source[at + "tracing::".len()..];
        let Some(open) = rest.find("!(") else {
            continue;
        };
        if !rest[..open]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let (mut depth, mut args, mut current) = (1, Vec::new(), String::new());
        let mut chars = rest[open + 2..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    current.push(c);
                    while let Some(s) = chars.next() {
                        current.push(s);
                        if s == '\\' {
                            current.extend(chars.next());
                        } else if s == '"' {
                            break;
                        }
                    }
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 1 => {
                    args.push(std::mem::take(&mut current).trim().to_owned());
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                break;
            }
            current.push(c);
        }
        args.push(current.trim().to_owned());
        let line = source[..at].lines().count();
        calls.push((line, args));
    }
    calls
}

/// The field a `%`/`?` argument formats, if the argument is one: `%repo`, `key = %x`.
fn formatted_field(argument: &str) -> Option<String> {
    if let Some(name) = argument.strip_prefix(['%', '?']) {
        return Some(name.split('.').next_back()?.trim().to_owned());
    }
    let (name, value) = argument.split_once('=')?;
    let name = name.trim();
    let is_name = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    (is_name && value.trim_start().starts_with(['%', '?'])).then(|| name.to_owned())
}

#[test]
fn no_log_field_formats_a_request_value_unquoted() {
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut found = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for (line, arguments) in tracing_arguments(&source) {
            for name in arguments.iter().filter_map(|a| formatted_field(a)) {
                if !FORMATTED_FIELDS.contains(&name.as_str()) {
                    found.push(format!("{}:{line}: {name}", file.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "log fields formatted with % or ? (written unquoted in the text log, so a value from \
         a request could pass for other fields): record a string instead (`name = \
         value.as_str()`, `.as_ref()`), or a number; or, if it can never hold what a request \
         said, add it to FORMATTED_FIELDS saying why:\n{}",
        found.join("\n")
    );
    // The check sees what it must: a call that formats a field, and one that does not.
    let seen =
        tracing_arguments(r#"tracing::info!(repo = %repo, "a {}, b", x); tracing::warn!(?e)"#);
    let fields: Vec<_> = seen
        .iter()
        .flat_map(|(_, a)| a.iter().filter_map(|a| formatted_field(a)))
        .collect();
    assert_eq!(fields, ["repo", "e"]);
}

/// A lock survives a restart, and the restarted server says so in its first lines, with
/// who took it, since when and why: a server that deploys nothing explains itself.
#[tokio::test]
async fn each_start_logs_every_lock_in_force() {
    const ADMIN: &str = "an-admin-token-long-enough-for-the-log-test";
    let github = MockServer::start().await;
    mount_github_defaults(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = [("DEPLOYHOOK_ADMIN_TOKEN", ADMIN)];
    let first = Server::start_with(dir.path(), &github, "text", &admin);
    let locked = reqwest::Client::new()
        .post(format!("{}/api/locks", first.base))
        .bearer_auth(ADMIN)
        .json(&json!({"environment": "production", "reason": "incident 4711", "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::CREATED);
    assert!(
        !first
            .lines()
            .iter()
            .any(|l| l.contains("wait for the unlock")),
        "nothing was locked at its start"
    );
    drop(first);

    let second = Server::start_with(dir.path(), &github, "text", &admin);
    let line = second.line_with("automatic deploys there wait for the unlock");
    for field in [
        r#"environment="production""#,
        r#"by="alice""#,
        r#"reason="incident 4711""#,
        "(until unlocked)",
        r#"since="20"#,
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}
