//! What the commands print reaches an operator's terminal (issue 26, item 8): a value a
//! stranger chose — a branch merged into, a deployment's ref or description on GitHub, a
//! deploy's output — must not drive that terminal. Control characters come out as visible
//! text (`\u{1b}`), so no window title is set, no colour leaks into the next line, no
//! clipboard is written; a deploy's own colours (SGR) still pass in its log.

use std::process::{Command, Output};

use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    TOKEN, TestApp, WAIT, admin_cli, deploy_with_script, fixture_json, spawn_app_with,
};

const ADMIN_TOKEN: &str = "terminal-admin-token-0123456789";
/// Sets the window title, then turns the text red: what `rel…` merged into holds.
const HOSTILE: &str = "rel\u{1b}]0;PWNED\u{7}\u{1b}[31mred";
/// [`HOSTILE`] as the commands show it.
const SHOWN: &str = r"rel\u{1b}]0;PWNED\u{7}\u{1b}[31mred";

async fn app(script: &'static str) -> TestApp {
    spawn_app_with(move |config, dir| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        deploy_with_script(config, dir, script);
    })
    .await
}

/// Runs the binary off the runtime (the server under test shares it).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Asserts `output` succeeded and holds no byte that drives a terminal but `\n` (and, with
/// `sgr`, the ESC of `ESC [ … m` colour sequences); its text.
fn assert_inert(what: &str, output: &Output, sgr: bool) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what}: {text}");
    let bytes = [&output.stdout[..], &output.stderr[..]].concat();
    for (i, &byte) in bytes.iter().enumerate() {
        let colour = sgr && byte == 0x1b && is_sgr(&bytes[i..]);
        let control = (byte < 0x20 && byte != b'\n') || byte == 0x7f;
        assert!(
            !control || colour,
            "{what}: byte {byte:#04x} reaches the terminal at {i}: {text:?}"
        );
    }
    for c in text.chars() {
        assert!(!('\u{80}'..='\u{9f}').contains(&c), "{what}: C1 {c:?}");
    }
    text
}

/// Whether `bytes` starts with `ESC [ digits;… m`.
fn is_sgr(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(b"\x1b[") else {
        return false;
    };
    let params = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b';');
    rest.get(params.count()) == Some(&b'm')
}

#[tokio::test]
async fn a_branch_named_with_terminal_escapes_is_listed_escaped_by_deliveries() {
    let app = app("true").await;
    let mut merge = fixture_json("pull_request.closed.merged.json");
    merge["pull_request"]["base"]["ref"] = json!(HOSTILE);
    let ack = app
        .post_delivery(
            "pull_request",
            merge.to_string().as_bytes(),
            "d-osc-1",
            470_000_009,
        )
        .await;
    // Ignored (production deploys merges into main), and recorded with why.
    assert_eq!(ack.status(), 200);
    for args in [&["deliveries"][..], &["deliveries", "d-osc-1"]] {
        let output = run(admin_cli(&app.url, ADMIN_TOKEN, args)).await;
        let text = assert_inert(&args.join(" "), &output, false);
        // Escaped, not dropped: the operator sees what was sent.
        assert!(text.contains(SHOWN), "{text}");
    }
}

#[tokio::test]
async fn a_deploys_log_keeps_its_colours_but_no_other_escape_reaches_the_terminal() {
    // Colours, a window title (OSC 0), a clipboard write (OSC 52), a screen clear (CSI 2J),
    // a bell and an 8-bit CSI (U+009B).
    let app = app(
        r"printf 'ok \033[32mgreen\033[0m \033]0;PWNED\007 \033]52;c;ZXZpbA==\007 \033[2J \302\233 end\n'",
    )
    .await;
    let response = app
        .post_webhook(
            "deployment",
            fixture_json("deployment.created.json")
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(response.status(), 202);
    let follow = admin_cli(&app.url, ADMIN_TOKEN, &["log", "880001", "--follow"]);
    let output = tokio::time::timeout(WAIT * 3, run(follow)).await.unwrap();
    let text = assert_inert("log --follow", &output, true);
    assert!(text.contains("ok \u{1b}[32mgreen\u{1b}[0m"), "{text:?}");
    assert!(
        text.contains(r"\u{1b}]0;PWNED\u{7}") && text.contains(r"\u{1b}]52;c;ZXZpbA==\u{7}"),
        "{text:?}"
    );
    assert!(text.contains(r"\u{1b}[2J \u{9b} end"), "{text:?}");
}

#[tokio::test]
async fn deployments_listed_from_github_are_printed_escaped() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/acme/widgets/deployments$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": 17, "ref": HOSTILE, "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
            "environment": "production\u{1b}[2J", "task": "deploy",
            "created_at": "2026-01-01T00:00:00Z", "creator": {"login": "mallory\u{7}"},
        }])))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/acme/widgets/deployments/17/statuses$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "state": "success", "description": "done\r\nFORGED 18 production success",
        }])))
        .mount(&github)
        .await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .env_clear()
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", github.uri())
        .args(["deployments", "acme/widgets"]);
    let output = run(command).await;
    let text = assert_inert("deployments", &output, false);
    assert!(text.contains(SHOWN), "{text}");
    // A description cannot forge a row of the table: its line break is shown, not made.
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(r"done\r\nFORGED"), "{text}");
}
