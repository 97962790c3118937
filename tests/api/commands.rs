//! Comment commands (issue 24) against a fake GitHub that plays permissions, pull
//! requests, checks, reactions and comments: `.deploy` from the reaction to the edited
//! reply, every refusal (permission, fork, red checks, locked, unknown environment), a
//! replayed comment acting once, edited and deleted comments ignored, `.lock`, `.unlock`,
//! `.wcid`, `.help`, `.rollback`, `.approve`, and the audit lines they leave.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{TestApp, WAIT, created_deployments, fixture_json};
use crate::people::{ADMIN_TOKEN, REPO, call, people_app};

/// The pull request's head: green checks.
pub const HEAD: &str = "4242424242aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// Another pull request's head, whose `test` check failed.
const RED: &str = "5151515151bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// The id GitHub gives deployhook's reply.
const REPLY: u64 = 5001;
/// The deployment GitHub creates for a command.
const DEPLOYMENT: u64 = 77_001;

/// An `issue_comment` event: `login` wrote `body` on pull request `number` of `acme/app`.
pub fn comment(id: u64, number: u64, login: &str, body: &str, action: &str) -> Vec<u8> {
    let mut event = fixture_json("issue_comment.created.json");
    event["action"] = json!(action);
    event["comment"]["id"] = json!(id);
    event["comment"]["body"] = json!(body);
    event["comment"]["user"]["login"] = json!(login);
    event["issue"]["number"] = json!(number);
    event["repository"]["full_name"] = json!(REPO);
    event["repository"]["name"] = json!("app");
    event.to_string().into_bytes()
}

/// A pull request as `GET …/pulls/{n}` answers it.
fn pull(number: u64, head: &str, head_repo: Option<&str>, state: &str) -> Value {
    json!({
        "number": number, "state": state, "title": "Speed up the checkout page",
        "head": {"ref": format!("feature-{number}"), "sha": head,
                 "repo": head_repo.map(|r| json!({"full_name": r}))},
        "base": {"ref": "main", "sha": "1111111111111111111111111111111111111111",
                 "repo": {"full_name": REPO}},
        "merge_commit_sha": "9999999999999999999999999999999999999999",
        "merged": false,
    })
}

/// GitHub's side of pull requests 42 (green head), 43 (a fork's), 44 (red checks) and 45
/// (closed), their checks, reactions and comments.
pub async fn mount_conversation(github: &MockServer) {
    for (number, head, repo, state) in [
        (42, HEAD, Some(REPO), "open"),
        (43, HEAD, Some("mallory/app"), "open"),
        (44, RED, Some(REPO), "open"),
        (45, HEAD, Some(REPO), "closed"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/pulls/{number}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(pull(number, head, repo, state)))
            .mount(github)
            .await;
    }
    for (sha, conclusion) in [(HEAD, "success"), (RED, "failure")] {
        let runs = json!({"total_count": 1, "check_runs": [
            {"id": 7001, "name": "test", "status": "completed", "conclusion": conclusion,
             "html_url": "https://github.com/acme/app/runs/7001"}]});
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/commits/{sha}/check-runs")))
            .respond_with(ResponseTemplate::new(200).set_body_json(runs))
            .mount(github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/commits/{sha}/check-suites")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"total_count": 0, "check_suites": []})),
            )
            .mount(github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/commits/{sha}/status")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"state": "pending", "total_count": 0, "statuses": []})),
            )
            .mount(github)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/branches/main")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "main", "commit": {"sha": HEAD}
        })))
        .mount(github)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/repos/acme/app/issues/comments/\d+/reactions$",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(github)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/acme/app/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": REPLY})))
        .mount(github)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/{REPO}/issues/comments/{REPLY}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": REPLY})))
        .mount(github)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/deployments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": DEPLOYMENT})))
        .with_priority(1)
        .mount(github)
        .await;
}

/// The people app (production and staging deploy `acme/app`), with the conversation's
/// endpoints mounted.
pub async fn commands_app() -> TestApp {
    let app = people_app(|config| {
        config.public_url = Some("https://deployhook.acme.example".into());
    })
    .await;
    mount_conversation(&app.github).await;
    app
}

/// What the pull request showed, in order: reactions to comment `comment`, and the
/// reply's texts (posted, then edited).
#[derive(Debug, Clone, PartialEq)]
pub enum Said {
    Reaction(String),
    Reply(String),
}

/// What deployhook said about comment `id`.
pub fn said(requests: &[Request], id: u64) -> Vec<Said> {
    let reactions = format!("/repos/{REPO}/issues/comments/{id}/reactions");
    requests
        .iter()
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            let path = r.url.path();
            if path == reactions {
                return Some(Said::Reaction(body["content"].as_str()?.to_owned()));
            }
            let reply = (r.method.as_str() == "POST"
                && path.ends_with("/comments")
                && path.starts_with(&format!("/repos/{REPO}/issues/")))
                || (r.method.as_str() == "PATCH" && path.ends_with(&format!("/{REPLY}")));
            let text = body["body"].as_str().unwrap_or_default();
            let (text, answers) = text.split_once("\n\n<sub>in answer to")?;
            (reply && answers.contains(&format!("#issuecomment-{id})")))
                .then(|| Said::Reply(text.to_owned()))
        })
        .collect()
}

/// Waits until comment `id` got a final reaction (anything but 👀); what was said.
pub async fn wait_for_end(app: &TestApp, id: u64) -> Vec<Said> {
    let requests = app
        .wait_for_github("a command's final reaction", |r| {
            said(r, id)
                .iter()
                .any(|s| matches!(s, Said::Reaction(c) if c != "eyes"))
        })
        .await;
    said(&requests, id)
}

/// The reply's last text, and the reactions.
fn last_reply(said: &[Said]) -> String {
    said.iter()
        .rev()
        .find_map(|s| match s {
            Said::Reply(text) => Some(text.clone()),
            Said::Reaction(_) => None,
        })
        .unwrap_or_default()
}

fn reactions(said: &[Said]) -> Vec<String> {
    said.iter()
        .filter_map(|s| match s {
            Said::Reaction(c) => Some(c.clone()),
            Said::Reply(_) => None,
        })
        .collect()
}

/// Sends the `deployment` event GitHub sends once deployhook created deployment
/// [`DEPLOYMENT`], from the body it created it with.
async fn deliver_created(app: &TestApp) {
    let requests = app
        .wait_for_github("the deployment's creation", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(DEPLOYMENT);
    event["deployment"]["sha"] = created["ref"].clone();
    event["deployment"]["ref"] = created["ref"].clone();
    event["deployment"]["environment"] = created["environment"].clone();
    event["deployment"]["payload"] = created["payload"].clone();
    event["deployment"]["creator"]["login"] = json!("deployhook-bot");
    event["repository"]["full_name"] = json!(REPO);
    event["repository"]["name"] = json!("app");
    let answer = app
        .post_webhook("deployment", event.to_string().as_bytes())
        .await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
}

/// A transcript of the conversation, for the closing note.
fn transcript(command: &str, by: &str, said: &[Said]) -> String {
    let mut text = format!("  {by}: {command}\n");
    for s in said {
        match s {
            Said::Reaction(c) => text += &format!("    deployhook reacts :{c}:\n"),
            Said::Reply(body) => {
                text += &format!("    deployhook's reply: {}\n", body.replace('\n', " ⏎ "));
            }
        }
    }
    text
}

#[tokio::test]
async fn a_deploy_command_deploys_the_head_and_edits_its_one_reply_until_it_ends() {
    let app = commands_app().await;
    let answer = app
        .post_webhook(
            "issue_comment",
            &comment(101, 42, "wes-writer", ".deploy to staging", "created"),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    deliver_created(&app).await;
    let said = wait_for_end(&app, 101).await;
    println!("{}", transcript(".deploy to staging", "wes-writer", &said));
    let requests = app.github_requests().await;
    // The deployment is of the pull request's head, on the base repository, to staging,
    // carrying the command.
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    assert_eq!(created["ref"], HEAD);
    assert_eq!(created["environment"], "staging");
    assert_eq!(created["auto_merge"], false);
    assert_eq!(created["payload"]["command"]["comment_id"], 101);
    assert_eq!(created["payload"]["deploy_user"], "wes-writer");
    // 👀 first, 🚀 last; one reply posted, then only edited.
    assert_eq!(reactions(&said), ["eyes", "rocket"]);
    let posts = requests
        .iter()
        .filter(|r| {
            r.method.as_str() == "POST" && r.url.path() == "/repos/acme/app/issues/42/comments"
        })
        .count();
    assert_eq!(posts, 1, "one reply, edited after: {said:#?}");
    let last = last_reply(&said);
    assert!(last.starts_with("🚀 Deployed `4242424`"), "{last}");
    assert!(last.contains("[log]("), "the log link: {last}");
    // The deploy really ran: the command's environment saw the head.
    let env = std::fs::read_to_string(app.dir.path().join("env.txt")).unwrap();
    assert!(env.contains(&format!("DEPLOYHOOK_SHA={HEAD}")), "{env}");
    // The audit log names the comment's author, not the token that created the deployment.
    let (status, audit) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/audit", None).await;
    assert_eq!(status, StatusCode::OK);
    let deploys: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "deploy")
        .collect();
    assert_eq!(deploys.len(), 1, "{audit:#}");
    assert_eq!(deploys[0]["actor"], "wes-writer");
    assert_eq!(deploys[0]["via"], "comment");
}

#[tokio::test]
async fn every_refusal_is_a_reply_saying_why_and_deploys_nothing() {
    let app = commands_app().await;
    // ada locks production first, by comment too.
    app.post_webhook(
        "issue_comment",
        &comment(
            200,
            42,
            "ada-admin",
            ".lock production release freeze",
            "created",
        ),
    )
    .await;
    let locked = wait_for_end(&app, 200).await;
    assert!(
        last_reply(&locked).contains("production is locked by ada-admin"),
        "{locked:?}"
    );
    let cases = [
        (201, 42, "rita-reader", ".deploy to staging", "needs write"),
        (
            202,
            43,
            "wes-writer",
            ".deploy to staging",
            "comes from a fork (mallory/app)",
        ),
        (
            203,
            44,
            "wes-writer",
            ".deploy to staging",
            "test failed (failure)",
        ),
        (
            204,
            42,
            "wes-writer",
            ".deploy to production",
            "production is locked by ada-admin",
        ),
        (
            205,
            42,
            "wes-writer",
            ".deploy to moon",
            "no environment moon",
        ),
        (206, 42, "wes-writer", ".deploy", "name the environment"),
        (207, 45, "wes-writer", ".deploy to staging", "#45 is closed"),
        (
            208,
            42,
            "stan-stranger",
            ".unlock production",
            "stan-stranger may not unlock",
        ),
        (209, 42, "wes-writer", ".lock staging", "needs a reason"),
        (
            210,
            42,
            "wes-writer",
            ".approve",
            "no deployment of #42 waits for approval",
        ),
    ];
    let mut transcript_text = String::new();
    for (id, number, login, body, _) in cases {
        let answer = app
            .post_webhook(
                "issue_comment",
                &comment(id, number, login, body, "created"),
            )
            .await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{body}");
    }
    for (id, _, login, body, says) in cases {
        let said = wait_for_end(&app, id).await;
        transcript_text += &transcript(body, login, &said);
        assert_eq!(reactions(&said), ["eyes", "-1"], "{body}: {said:?}");
        let reply = last_reply(&said);
        assert!(reply.starts_with("👎"), "{body}: {reply}");
        assert!(
            reply.contains(says),
            "{body}: expected {says:?} in {reply:?}"
        );
    }
    println!("{transcript_text}");
    assert!(
        created_deployments(&app.github_requests().await).is_empty(),
        "no refused command deploys"
    );
    // The refusals of identified people are audited, with the comment as their address.
    let (_, audit) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/audit", None).await;
    let refused: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        refused.contains(&("stan-stranger".into(), "unlock".into())),
        "{refused:?}"
    );
    // And each refused deploy: the reader, the fork, red checks, the lock, unknown places.
    let deploys = refused
        .iter()
        .filter(|(_, action)| action == "deploy")
        .count();
    assert_eq!(deploys, 7, "{refused:?}");
}

#[tokio::test]
async fn a_replayed_comment_acts_once_and_edited_or_deleted_ones_not_at_all() {
    let app = commands_app().await;
    let first = app
        .post_webhook(
            "issue_comment",
            &comment(300, 42, "ada-admin", ".lock staging demo", "created"),
        )
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    wait_for_end(&app, 300).await;
    // The same comment again, as a new delivery (a replay, or GitHub's Redeliver).
    let again = app
        .post_webhook(
            "issue_comment",
            &comment(300, 42, "ada-admin", ".lock staging demo", "created"),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let body: Value = again.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("a command acts once"),
        "{body}"
    );
    for action in ["edited", "deleted"] {
        let answer = app
            .post_webhook(
                "issue_comment",
                &comment(301, 42, "ada-admin", ".unlock staging", action),
            )
            .await;
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["outcome"], "ignored", "{body}");
        assert!(body["message"].as_str().unwrap().contains(action), "{body}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = app.github_requests().await;
    assert_eq!(
        reactions(&said(&requests, 300)),
        ["eyes", "rocket"],
        "acted once"
    );
    assert!(
        said(&requests, 301).is_empty(),
        "edited and deleted comments are not read"
    );
    // Still locked: the edit to `.unlock` did nothing.
    let (_, locks) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"][0]["environment"], "staging", "{locks}");
}

#[tokio::test]
async fn lock_wcid_unlock_help_and_a_branch_deploy_by_comment() {
    let app = commands_app().await;
    let steps = [
        (400, "ada-admin", ".lock production release freeze"),
        (401, "rita-reader", ".wcid"),
        (402, "ada-admin", ".unlock production"),
        (403, "rita-reader", ".help"),
    ];
    let mut text = String::new();
    for (id, login, body) in steps {
        app.post_webhook("issue_comment", &comment(id, 42, login, body, "created"))
            .await;
        let said = wait_for_end(&app, id).await;
        text += &transcript(body, login, &said);
        assert!(
            !reactions(&said).contains(&"-1".to_owned()),
            "{body}: {said:?}"
        );
    }
    println!("{text}");
    let requests = app.github_requests().await;
    let wcid = last_reply(&said(&requests, 401));
    assert!(
        wcid.contains(
            "**production**: nothing deployed yet · 🔒 locked by ada-admin: release freeze"
        ),
        "{wcid}"
    );
    assert!(wcid.contains("**staging**"), "{wcid}");
    // The same answer is a section of the dashboard.
    let cookie = app.sign_in(ADMIN_TOKEN).await;
    let live = app.page("/dashboard/live", &cookie).await;
    assert!(live.contains("What runs where"), "{live}");
    let help = last_reply(&said(&requests, 403));
    for command in [
        ".deploy to ENV",
        ".lock ENV REASON",
        ".wcid",
        ".rollback ENV",
    ] {
        assert!(help.contains(command), "{help}");
    }
    let (_, locks) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"], json!([]), "unlocked: {locks}");
    // `.deploy main to production`: a branch of the repository, read from GitHub.
    app.post_webhook(
        "issue_comment",
        &comment(
            404,
            42,
            "wes-writer",
            ".deploy main to production",
            "created",
        ),
    )
    .await;
    let requests = app
        .wait_for_github("the branch's deployment", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    assert_eq!(
        (created["ref"].as_str(), created["environment"].as_str()),
        (Some(HEAD), Some("production"))
    );
    assert_eq!(created["payload"]["ref"], "main");
}

#[tokio::test]
async fn a_prefix_of_ones_own_is_the_only_one_read() {
    let app = people_app(|config| config.commands.prefix = "/".into()).await;
    mount_conversation(&app.github).await;
    let dotted = app
        .post_webhook(
            "issue_comment",
            &comment(500, 42, "wes-writer", ".wcid", "created"),
        )
        .await;
    let body: Value = dotted.json().await.unwrap();
    assert_eq!(body["outcome"], "ignored", "{body}");
    app.post_webhook(
        "issue_comment",
        &comment(501, 42, "wes-writer", "/wcid", "created"),
    )
    .await;
    let said = wait_for_end(&app, 501).await;
    assert!(
        last_reply(&said).starts_with("Where acme/app deploys"),
        "{said:?}"
    );
    let _ = WAIT;
}

/// A `deployment` event of `acme/app`@`sha` to `environment`, made by hand.
fn deployment(id: u64, sha: &str, environment: &str) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    event["deployment"]["environment"] = json!(environment);
    event["repository"]["full_name"] = json!(REPO);
    event["repository"]["name"] = json!("app");
    event.to_string().into_bytes()
}

#[tokio::test]
async fn a_rollback_by_comment_deploys_the_previous_commit_and_locks() {
    let app = commands_app().await;
    let (old, new) = (
        "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
    );
    for (id, sha) in [(61, old), (62, new)] {
        app.post_webhook("deployment", &deployment(id, sha, "production"))
            .await;
        app.wait_for_final_status(id).await;
    }
    app.post_webhook(
        "issue_comment",
        &comment(600, 42, "ada-admin", ".rollback production", "created"),
    )
    .await;
    let said = wait_for_end(&app, 600).await;
    println!("{}", transcript(".rollback production", "ada-admin", &said));
    assert_eq!(reactions(&said), ["eyes", "rocket"], "{said:?}");
    assert!(
        last_reply(&said).contains("back to `0a0a0a0` (from `0b0b0b0`)"),
        "{said:?}"
    );
    let requests = app
        .wait_for_github("the rollback's deployment", |r| {
            !created_deployments(r).is_empty()
        })
        .await;
    let created: Value = serde_json::from_slice(&created_deployments(&requests)[0].body).unwrap();
    assert_eq!(created["ref"], old);
    assert_eq!(created["payload"]["rollback"], true);
    let (_, locks) = call(&app, ADMIN_TOKEN, reqwest::Method::GET, "/api/locks", None).await;
    assert_eq!(locks["locks"][0]["locked_by"], "ada-admin", "{locks}");
}

#[tokio::test]
async fn a_deploy_waiting_for_approval_is_approved_by_a_reviewers_comment() {
    let app = people_app(|config| {
        config.environments[0].approval = Some(deployhook::model::ApprovalRule {
            reviewers: vec![deployhook::model::Grantee::parse("wes-writer").unwrap()],
            timeout: Duration::from_secs(3600),
            ..deployhook::model::ApprovalRule::new(1)
        });
    })
    .await;
    mount_conversation(&app.github).await;
    app.post_webhook(
        "issue_comment",
        &comment(700, 42, "ada-admin", ".deploy to production", "created"),
    )
    .await;
    deliver_created(&app).await;
    // The reply says it waits, before anyone approves.
    app.wait_for_github("the reply saying it waits", |r| {
        last_reply(&said(r, 700)).contains("waits: waiting for approval by wes-writer")
    })
    .await;
    // ada wrote the command: her own approval is refused; wes's is taken.
    app.post_webhook(
        "issue_comment",
        &comment(701, 42, "ada-admin", ".approve", "created"),
    )
    .await;
    let refused = wait_for_end(&app, 701).await;
    assert!(
        last_reply(&refused).starts_with("👎"),
        "the author may not approve: {refused:?}"
    );
    app.post_webhook(
        "issue_comment",
        &comment(702, 42, "wes-writer", ".approve production", "created"),
    )
    .await;
    let approved = wait_for_end(&app, 702).await;
    assert!(
        last_reply(&approved).contains("Approved deployment 77001 to production (1 of 1)"),
        "{approved:?}"
    );
    // ada's deploy then runs, and her comment's reply ends it.
    let deployed = wait_for_end(&app, 700).await;
    let mut text = transcript(".deploy to production", "ada-admin", &deployed);
    text += &transcript(".approve", "ada-admin", &refused);
    text += &transcript(".approve production", "wes-writer", &approved);
    println!("{text}");
    assert_eq!(reactions(&deployed), ["eyes", "rocket"], "{deployed:?}");
    assert!(
        last_reply(&deployed).starts_with("🚀 Deployed"),
        "{deployed:?}"
    );
    let _ = WAIT;
}

#[tokio::test]
async fn hostile_comments_get_plain_answers_and_github_down_puts_a_command_back() {
    let app = commands_app().await;
    // A would-be link, a mention and HTML in an environment's name: the reply quotes none.
    app.post_webhook(
        "issue_comment",
        &comment(
            800,
            42,
            "wes-writer",
            ".deploy to [x](https://evil.example)@octocat<b>",
            "created",
        ),
    )
    .await;
    let reply = last_reply(&wait_for_end(&app, 800).await);
    assert!(reply.contains("no environment"), "{reply}");
    for bad in ["](", "<b>", "@octocat"] {
        assert!(!reply.contains(bad), "{bad:?} in {reply:?}");
    }
    // A branch name that would climb out of the URL path is no branch.
    app.post_webhook(
        "issue_comment",
        &comment(
            801,
            42,
            "wes-writer",
            ".deploy ../../orgs to staging",
            "created",
        ),
    )
    .await;
    assert!(last_reply(&wait_for_end(&app, 801).await).contains("is not a branch name"));
    // A comment far longer than a command line: only its first line is read.
    let long = format!(".wcid\n{}", "x".repeat(60_000));
    let answer = app
        .post_webhook(
            "issue_comment",
            &comment(802, 42, "rita-reader", &long, "created"),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    assert!(last_reply(&wait_for_end(&app, 802).await).starts_with("Where acme/app deploys"));
    // GitHub cannot say what gus may do: the command waits and is tried again, unanswered.
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/{REPO}/collaborators/gus-ghost/permission"
        )))
        .respond_with(ResponseTemplate::new(502))
        .mount(&app.github)
        .await;
    app.post_webhook(
        "issue_comment",
        &comment(803, 42, "gus-ghost", ".lock staging trying", "created"),
    )
    .await;
    let db = app.database();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (state, attempts, due, updated): (String, i64, i64, i64) = db
            .query_row(
                "SELECT state, attempts, due_at, updated_at FROM commands WHERE comment_id = 803",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        if attempts == 1 && due - updated >= 10_000 {
            assert_eq!(state, "new", "put back, not done");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never put back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_for_github("the 👀", |r| !said(r, 803).is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = said(&app.github_requests().await, 803);
    assert_eq!(
        heard,
        [Said::Reaction("eyes".into())],
        "seen, not answered yet"
    );
}
