//! What a receiver is sent: a Slack message (`{"text": …}` in Slack's `mrkdwn`), or
//! deployhook's own JSON body for a generic webhook ([`WebhookBody`], documented in the
//! README). Both say what a person needs: repository, environment, the short SHA linked to
//! the commit, who, how it ended and how long it took, the log.

use std::time::Duration;

use serde::Serialize;

use crate::model::notification::{ChangelogNote, rfc3339};
use crate::model::{CommitSha, DeploymentId, Environment, Notification, NotificationKind};

/// The Slack (Mattermost, Discord `/slack`) body.
pub fn slack_body(event: &Notification, github_web: &str) -> serde_json::Value {
    serde_json::json!({ "text": slack_text(event, github_web) })
}

/// Two lines: what happened, then how it went, who, the pull request and the log.
pub fn slack_text(event: &Notification, github_web: &str) -> String {
    let environment = format!("*{}*", escape(event.environment.as_ref()));
    let subject = match (&event.repository, &event.sha) {
        (Some(repo), Some(sha)) => format!(
            "*{}* {}",
            escape(repo.as_ref()),
            link(&commit_url(github_web, repo.as_ref(), sha), sha.short())
        ),
        (Some(repo), None) => format!("*{}*", escape(repo.as_ref())),
        (None, _) => String::new(),
    };
    let took = |word: &str| {
        event
            .duration_ms
            .map(|ms| format!(" {word} {}", whole_seconds(ms)))
            .unwrap_or_default()
    };
    let headline = match rollback_headline(event, github_web, &took) {
        Some(headline) => headline,
        None => headline(event, &subject, &environment, &took),
    };
    let mut details = Vec::new();
    // A success's description only says how long it took, which the headline says.
    let repeats_headline = event.event == NotificationKind::DeploySucceeded;
    if !repeats_headline && !event.description.trim().is_empty() {
        details.push(escape(&event.description));
    }
    details.push(format!("by {}", escape(&event.who)));
    if let (Some(repo), Some(number)) = (&event.repository, event.pull_request) {
        let url = format!("{github_web}/{repo}/pull/{number}");
        details.push(format!(
            "pull request {}",
            link(&url, &format!("#{number}"))
        ));
    }
    if let Some(log) = &event.log_url {
        details.push(link(log, "log"));
    }
    let mut text = format!("{headline}\n{}", details.join(" · "));
    if let Some(note) = &event.changelog {
        text.push_str(&changelog_text(note));
    }
    text
}

/// What a deploy brings, after its details: the changelog's sentence and its first titles
/// (escaped: a commit's title is anyone's text), or only where to read it when it is not
/// read yet.
fn changelog_text(note: &ChangelogNote) -> String {
    let Some(summary) = &note.summary else {
        return note
            .url
            .as_deref()
            .map(|url| format!("\nchangelog: {}", link(url, url)))
            .unwrap_or_default();
    };
    let mut text = format!("\n{}", escape(summary));
    if let Some(url) = &note.url {
        text.push_str(&format!(" · {}", link(url, "changelog")));
    }
    for title in &note.titles {
        text.push_str(&format!("\n• {}", escape(title)));
    }
    text
}

/// A rollback's start and end, said as a rollback: `Rolled back *acme/widgets* in
/// *production* to 6f1e3c9 (from 0a1b2c3) in 3s`. `None` for every other event.
fn rollback_headline(
    event: &Notification,
    github_web: &str,
    took: &dyn Fn(&str) -> String,
) -> Option<String> {
    let (Some(repo), Some(sha)) = (&event.repository, &event.sha) else {
        return None;
    };
    if !event.rollback {
        return None;
    }
    let what = format!(
        "*{}* in *{}* to {}{}",
        escape(repo.as_ref()),
        escape(event.environment.as_ref()),
        link(&commit_url(github_web, repo.as_ref(), sha), sha.short()),
        event
            .rolled_back
            .as_deref()
            .map(|from| format!(
                " (from {})",
                escape(&from.chars().take(7).collect::<String>())
            ))
            .unwrap_or_default()
    );
    Some(match event.event {
        NotificationKind::DeployStarted => format!(":rewind: Rolling back {what}"),
        NotificationKind::DeploySucceeded => format!(":rewind: Rolled back {what}{}", took("in")),
        NotificationKind::DeployFailed => {
            format!(":x: Rollback of {what} failed{}", took("after"))
        }
        NotificationKind::DeployErrored => format!(
            ":warning: Rollback of {what} ended in an error{}",
            took("after")
        ),
        NotificationKind::ApprovalRequested => {
            format!(":raised_hand: Rollback of {what} waits for approval")
        }
        _ => return None,
    })
}

/// The first line of every event but a rollback's.
fn headline(
    event: &Notification,
    subject: &str,
    environment: &str,
    took: &dyn Fn(&str) -> String,
) -> String {
    match event.event {
        NotificationKind::DeployStarted => {
            format!(":rocket: Deploying {subject} to {environment}")
        }
        NotificationKind::DeploySucceeded => format!(
            ":white_check_mark: Deployed {subject} to {environment}{}",
            took("in")
        ),
        NotificationKind::DeployFailed => format!(
            ":x: Deploy of {subject} to {environment} failed{}",
            took("after")
        ),
        NotificationKind::DeployErrored => format!(
            ":warning: Deploy of {subject} to {environment} ended in an error{}",
            took("after")
        ),
        NotificationKind::DeploySuperseded => format!(
            ":fast_forward: {subject} was not deployed to {environment}: a newer deployment \
             superseded it"
        ),
        NotificationKind::ChecksFailed => {
            format!(":no_entry: {subject} will not deploy to {environment}: its checks failed")
        }
        NotificationKind::ChecksTimedOut => {
            format!(":hourglass: {subject} will not deploy to {environment}: its checks timed out")
        }
        NotificationKind::Locked => format!(":lock: {environment} is locked"),
        NotificationKind::Unlocked => format!(":unlock: {environment} is unlocked"),
        NotificationKind::ApprovalRequested => {
            format!(":raised_hand: {subject} waits for approval to deploy to {environment}")
        }
        NotificationKind::FreezeStarted => format!(":snowflake: {environment} is frozen"),
        NotificationKind::FreezeEnded => {
            format!(":sunny: {environment}'s freeze ended: held deploys run")
        }
    }
}

/// The generic webhook's body: every key always present, `null` when it does not apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookBody<'a> {
    pub event: NotificationKind,
    pub repository: Option<&'a str>,
    pub environment: &'a Environment,
    pub sha: Option<&'a CommitSha>,
    pub commit_url: Option<String>,
    pub deployment: Option<DeploymentId>,
    pub pull_request: Option<u64>,
    pub who: &'a str,
    pub description: &'a str,
    pub duration_seconds: Option<f64>,
    pub log_url: Option<&'a str>,
    /// RFC 3339, UTC, to the millisecond.
    pub at: String,
    /// Whether the deploy is a rollback.
    pub rollback: bool,
    /// For a rollback, the commit it rolled back from.
    pub rolled_back_from: Option<&'a str>,
    /// For a deploy's start and success: its changelog's sentence, first titles and page.
    pub changelog: Option<&'a ChangelogNote>,
}

impl<'a> WebhookBody<'a> {
    pub fn new(event: &'a Notification, github_web: &str) -> Self {
        let repository = event.repository.as_ref().map(AsRef::as_ref);
        Self {
            event: event.event,
            repository,
            environment: &event.environment,
            sha: event.sha.as_ref(),
            commit_url: repository
                .zip(event.sha.as_ref())
                .map(|(repo, sha)| commit_url(github_web, repo, sha)),
            deployment: event.deployment,
            pull_request: event.pull_request,
            who: &event.who,
            description: &event.description,
            duration_seconds: event
                .duration_ms
                .map(|ms| Duration::from_millis(ms).as_secs_f64()),
            log_url: event.log_url.as_deref(),
            at: rfc3339(event.at).unwrap_or_default(),
            rollback: event.rollback,
            rolled_back_from: event.rolled_back.as_deref(),
            changelog: event.changelog.as_ref(),
        }
    }
}

fn commit_url(github_web: &str, repo: &str, sha: &CommitSha) -> String {
    format!("{github_web}/{repo}/commit/{sha}")
}

/// `2s`, `1m 5s`: whole seconds, as the deploy's own descriptions write them.
fn whole_seconds(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// A Slack link: `<url|label>`.
fn link(url: &str, label: &str) -> String {
    format!("<{}|{}>", escape(url), escape(label))
}

/// Slack's `mrkdwn` reads `&`, `<` and `>` as markup: a description quoting an error must
/// not turn into a link or a mention.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeployJob, DeploymentState, RepoName};

    const WEB: &str = "https://github.com";

    fn failed() -> Notification {
        let job = failed_job();
        let description = "exit code 3 after 42s — see log <stderr>";
        Notification::of_deploy(&job, DeploymentState::Failure, description, Some(42_250), 0)
            .unwrap()
    }

    fn failed_job() -> DeployJob {
        DeployJob {
            id: DeploymentId::from(880_001),
            repo: RepoName::parse("acme/widgets").unwrap(),
            environment: Environment::parse("production").unwrap(),
            sha: CommitSha::parse("6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b").unwrap(),
            git_ref: "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b".into(),
            task: "deploy".into(),
            deploy_user: "octocat".into(),
            payload: r#"{"pull_request": 42}"#.into(),
            environment_url: None,
            log_url: Some("https://deploy.example.com/deployments/880001/log?token=a&b".into()),
            installation: None,
        }
    }

    #[test]
    fn a_success_lists_its_changelog_escaped_or_only_links_it_when_not_read_yet() {
        use crate::model::changelog::{Change, ChangelogState};
        let job = failed_job();
        let mut event =
            Notification::of_deploy(&job, DeploymentState::Success, "deployed", None, 0).unwrap();
        event.changelog = ChangelogNote::new(None, job.log_url.as_deref());
        let text = slack_text(&event, WEB);
        assert!(
            text.ends_with(
                "\nchangelog: <https://deploy.example.com/deployments/880001|\
                 https://deploy.example.com/deployments/880001>"
            ),
            "{text}"
        );
        let mut log = crate::model::Changelog::empty(ChangelogState::Listed, "a".repeat(40));
        log.commits = vec![Change::new("b".repeat(40), "Use <script> & co (#7)", None)];
        log.total = 1;
        event.changelog = ChangelogNote::new(Some(&log), job.log_url.as_deref());
        let text = slack_text(&event, WEB);
        assert!(
            text.ends_with(
                "\n1 commit since aaaaaaa · <https://deploy.example.com/deployments/880001|changelog>\
                 \n• Use &lt;script&gt; &amp; co (#7)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_slack_message_links_the_commit_the_pull_request_and_the_log_and_escapes_the_rest() {
        assert_eq!(
            slack_text(&failed(), WEB),
            ":x: Deploy of *acme/widgets* \
             <https://github.com/acme/widgets/commit/6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b|6f1e3c9> \
             to *production* failed after 42s\n\
             exit code 3 after 42s — see log &lt;stderr&gt; · by octocat · pull request \
             <https://github.com/acme/widgets/pull/42|#42> · \
             <https://deploy.example.com/deployments/880001/log?token=a&amp;b|log>"
        );
    }

    #[test]
    fn a_rollback_is_told_as_one_and_a_success_is_not_said_twice() {
        let mut job = DeployJob {
            payload:
                r#"{"rollback": true, "rolled_back": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"}"#
                    .into(),
            log_url: None,
            ..failed_job()
        };
        let description = "rolled back to 6f1e3c9 (from 0a1b2c3) in 3s";
        let done =
            Notification::of_deploy(&job, DeploymentState::Success, description, Some(3_100), 0)
                .unwrap();
        assert_eq!(
            slack_text(&done, WEB),
            ":rewind: Rolled back *acme/widgets* in *production* to \
             <https://github.com/acme/widgets/commit/6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b|6f1e3c9> \
             (from 0a1b2c3) in 3s\nby octocat"
        );
        let body = serde_json::to_value(WebhookBody::new(&done, WEB)).unwrap();
        assert_eq!(body["rollback"], true);
        assert_eq!(
            body["rolled_back_from"],
            "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
        );
        job.payload = "{}".into();
        let deploy = Notification::of_deploy(
            &job,
            DeploymentState::Success,
            "deployed in 3s",
            Some(3_100),
            0,
        )
        .unwrap();
        assert!(slack_text(&deploy, WEB).starts_with(":white_check_mark: Deployed"));
    }

    #[test]
    fn an_approval_request_says_who_may_approve_and_who_asked() {
        let job = DeployJob {
            log_url: None,
            ..failed_job()
        };
        let asked =
            Notification::approval_requested(&job, "waiting for approval by @acme/sre", 0, 0);
        assert_eq!(
            slack_text(&asked, WEB),
            ":raised_hand: *acme/widgets* \
             <https://github.com/acme/widgets/commit/6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b|6f1e3c9> \
             waits for approval to deploy to *production*\n\
             waiting for approval by @acme/sre, until 1970-01-01T00:00:00.000Z · by octocat · \
             pull request <https://github.com/acme/widgets/pull/42|#42>"
        );
        let rollback = DeployJob {
            payload: r#"{"rollback": true}"#.into(),
            ..job
        };
        let asked = Notification::approval_requested(&rollback, "waiting for 1 approval", 0, 0);
        assert!(
            slack_text(&asked, WEB).starts_with(":raised_hand: Rollback of *acme/widgets* in"),
            "{}",
            slack_text(&asked, WEB)
        );
        let body = serde_json::to_value(WebhookBody::new(&asked, WEB)).unwrap();
        assert_eq!(body["event"], "approval_requested");
        assert_eq!(body["log_url"], serde_json::Value::Null);
    }

    #[test]
    fn a_lock_names_no_commit() {
        let production = Environment::parse("production").unwrap();
        let lock = Notification::locked(&production, "alice", "incident 7", None, 0);
        assert_eq!(
            slack_text(&lock, WEB),
            ":lock: *production* is locked\nincident 7 · by alice"
        );
        let body = serde_json::to_value(WebhookBody::new(&lock, WEB)).unwrap();
        assert_eq!(body["repository"], serde_json::Value::Null);
        assert_eq!(body["commit_url"], serde_json::Value::Null);
        assert_eq!(body["event"], "locked");
    }

    #[test]
    fn the_webhook_body_has_every_documented_key() {
        let event = failed();
        let body = serde_json::to_value(WebhookBody::new(&event, WEB)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "event": "deploy_failed",
                "repository": "acme/widgets",
                "environment": "production",
                "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                "commit_url": "https://github.com/acme/widgets/commit/6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                "deployment": 880001,
                "pull_request": 42,
                "who": "octocat",
                "description": "exit code 3 after 42s — see log <stderr>",
                "duration_seconds": 42.25,
                "log_url": "https://deploy.example.com/deployments/880001/log?token=a&b",
                "at": "1970-01-01T00:00:00.000Z",
                "rollback": false,
                "rolled_back_from": null,
                "changelog": null,
            })
        );
    }
}
