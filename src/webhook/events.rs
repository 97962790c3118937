//! The webhook events deployhook reads, parsed from GitHub's JSON into our own types.
//!
//! Each struct holds only the fields a handler reads, and every field GitHub may leave out
//! (organisation and app hooks have no `repository` or `sender`; older GitHub Enterprise
//! Server sends `deployment_status` without `action`) is an `Option`, so no payload can
//! make a handler panic. Identifiers go through the newtypes in [`crate::model::ids`].

use serde::{Deserialize, Deserializer};

use crate::model::ids::stored_id;
use crate::model::merge::InvalidTime;
use crate::model::{CommitSha, DeploymentId, Environment, HookId, MergedAt, RepoName};

mod issue_comment;
pub use issue_comment::{Comment, Issue, IssueCommentEvent};
mod tags;

pub use tags::{PushEvent, ReleaseEvent};

/// A delivery's payload, by the event named in `X-GitHub-Event`.
#[derive(Debug)]
pub enum Event {
    Ping(PingEvent),
    PullRequest(PullRequestEvent),
    Deployment(DeploymentEvent),
    DeploymentStatus(DeploymentStatusEvent),
    CheckRun(CheckRunEvent),
    CheckSuite(CheckSuiteEvent),
    Status(StatusEvent),
    /// A comment on an issue or pull request: perhaps a command.
    IssueComment(IssueCommentEvent),
    /// A push: of a tag, what `tags` deploy; of a branch, nothing.
    Push(PushEvent),
    Release(ReleaseEvent),
    /// An event deployhook does not act on; its JSON was still checked to be well-formed.
    Other {
        name: String,
        envelope: Envelope,
    },
}

/// What every event may carry at its top level, read from events deployhook does not act
/// on so their record names their action and repository.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    pub action: Option<String>,
    pub repository: Option<RepositoryName>,
}

/// A repository's name, unvalidated: from events deployhook only records.
#[derive(Debug, Deserialize)]
pub struct RepositoryName {
    pub full_name: String,
}

impl Event {
    /// Parses `json` as the payload of `event`.
    pub fn parse(event: &str, json: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(match event {
            "ping" => Self::Ping(serde_json::from_slice(json)?),
            "pull_request" => Self::PullRequest(serde_json::from_slice(json)?),
            "deployment" => Self::Deployment(serde_json::from_slice(json)?),
            "deployment_status" => Self::DeploymentStatus(serde_json::from_slice(json)?),
            "check_run" => Self::CheckRun(serde_json::from_slice(json)?),
            "check_suite" => Self::CheckSuite(serde_json::from_slice(json)?),
            "status" => Self::Status(serde_json::from_slice(json)?),
            "issue_comment" => Self::IssueComment(serde_json::from_slice(json)?),
            "push" => Self::Push(serde_json::from_slice(json)?),
            "release" => Self::Release(serde_json::from_slice(json)?),
            other => Self::Other {
                name: other.to_owned(),
                envelope: serde_json::from_slice(json)?,
            },
        })
    }

    /// The payload's `action`, if it has one.
    pub fn action(&self) -> Option<&str> {
        match self {
            Self::Ping(_) => None,
            Self::PullRequest(e) => Some(&e.action),
            Self::Deployment(e) => e.action.as_deref(),
            Self::DeploymentStatus(e) => e.action.as_deref(),
            Self::CheckRun(e) => e.action.as_deref(),
            Self::CheckSuite(e) => e.action.as_deref(),
            Self::Status(e) => Some(e.state.as_str()),
            Self::IssueComment(e) => Some(&e.action),
            Self::Push(_) => None,
            Self::Release(e) => Some(&e.action),
            Self::Other { envelope, .. } => envelope.action.as_deref(),
        }
    }

    /// The repository the payload is about, if it names one.
    pub fn repository(&self) -> Option<&str> {
        let repository = match self {
            Self::Ping(_) => None,
            Self::PullRequest(e) => e.repository.as_ref(),
            Self::Deployment(e) => e.repository.as_ref(),
            Self::DeploymentStatus(e) => e.repository.as_ref(),
            Self::CheckRun(e) => e.repository.as_ref(),
            Self::CheckSuite(e) => e.repository.as_ref(),
            Self::Status(e) => e.repository.as_ref(),
            Self::IssueComment(e) => e.repository.as_ref(),
            Self::Push(e) => e.repository.as_ref(),
            Self::Release(e) => e.repository.as_ref(),
            Self::Other { envelope, .. } => {
                return envelope.repository.as_ref().map(|r| r.full_name.as_str());
            }
        };
        repository.map(|r| r.full_name.as_ref())
    }
}

/// The repository a delivery is about.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: RepoName,
    pub default_branch: Option<String>,
}

/// A user or bot account.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl Account {
    pub fn is_bot(&self) -> bool {
        self.kind.as_deref() == Some("Bot")
    }
}

/// `ping`: sent once when a webhook is created.
#[derive(Debug, Deserialize)]
pub struct PingEvent {
    pub zen: Option<String>,
    pub hook_id: Option<HookId>,
}

/// `pull_request`: opened, closed, merged, …
#[derive(Debug, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub pull_request: PullRequest,
    pub repository: Option<Repository>,
    /// Set on deliveries of a GitHub App's webhook: whose token makes the calls they lead to.
    pub installation: Option<Installation>,
}

/// The GitHub App installation a delivery came through.
#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    #[serde(deserialize_with = "stored_id")]
    pub id: u64,
}

#[derive(Debug, Deserialize)]
pub struct PullRequest {
    #[serde(deserialize_with = "stored_id")]
    pub number: u64,
    pub title: Option<String>,
    /// Whether the close was a merge. `merge_commit_sha` is no guide: GitHub sets it for the
    /// test merge of unmerged pull requests too.
    #[serde(default)]
    pub merged: bool,
    pub merge_commit_sha: Option<CommitSha>,
    /// When it was merged: what orders merges (an older one never deploys over a newer
    /// one), and the start of the merge-to-deploy lead time. Not a time: the payload is
    /// refused, naming the field.
    #[serde(default, deserialize_with = "merged_at")]
    pub merged_at: Option<MergedAt>,
    pub user: Option<Account>,
    /// Where it was merged. Merges deploy from the base repository.
    pub base: Base,
    /// What it proposes: read by preview environments only (its commit, and whether it
    /// comes from a fork). Absent from older fixtures; `None` then.
    pub head: Option<Head>,
}

/// A pull request's head: its commit, and the repository it lives in (`None`: a fork
/// since deleted).
#[derive(Debug, Deserialize)]
pub struct Head {
    pub sha: CommitSha,
    pub repo: Option<RepositoryName>,
}

/// `pull_request.merged_at`: `null`, or an RFC 3339 time; anything else is refused, naming
/// the field (serde's own errors name no path).
fn merged_at<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<MergedAt>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let parsed = match &value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(text) => MergedAt::parse(text),
        other => Err(InvalidTime::new(other)),
    };
    parsed
        .map(Some)
        .map_err(|err| serde::de::Error::custom(format!("pull_request.merged_at: {err}")))
}

/// The branch a pull request targets.
#[derive(Debug, Deserialize)]
pub struct Base {
    #[serde(rename = "ref")]
    pub branch: String,
    // `base.repo` is not read: it is the event's `repository`, which GitHub always sends,
    // and deserializing its hundred-odd keys a second time showed in profiles of the
    // intake benchmark (every key is parsed and UTF-8-checked, not just skipped).
}

/// `deployment`: a deployment was created, by deployhook or anyone else.
#[derive(Debug, Deserialize)]
pub struct DeploymentEvent {
    pub action: Option<String>,
    pub deployment: Deployment,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub sha: CommitSha,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub task: Option<String>,
    pub environment: Environment,
    pub description: Option<String>,
    /// An object today; a JSON-encoded string from older clients of the API.
    #[serde(default)]
    pub payload: serde_json::Value,
    pub creator: Option<Account>,
    pub performed_via_github_app: Option<App>,
}

/// A GitHub App, as named in `performed_via_github_app`.
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    pub id: u64,
    /// The `Iv…` id GitHub also accepts as a JWT's issuer.
    pub client_id: Option<String>,
    pub slug: Option<String>,
    pub name: Option<String>,
}

/// `deployment_status`: a deployment changed state.
#[derive(Debug, Deserialize)]
pub struct DeploymentStatusEvent {
    pub action: Option<String>,
    pub deployment_status: DeploymentStatus,
    pub deployment: DeploymentSummary,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
pub struct DeploymentStatus {
    pub state: String,
    pub description: Option<String>,
    pub environment: Option<String>,
    pub target_url: Option<String>,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
}

/// The deployment a status belongs to: what a log line names, and what a promotion of
/// its commit needs. Everything but the id is optional: older servers send less.
#[derive(Debug, Deserialize)]
pub struct DeploymentSummary {
    pub id: DeploymentId,
    pub environment: Option<String>,
    pub sha: Option<CommitSha>,
    /// What was asked for: a branch, a tag or a SHA.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub task: Option<String>,
    #[serde(default)]
    pub payload: serde_json::Value,
    pub creator: Option<Account>,
}

/// `check_run`: a check run was created, completed, re-requested…
#[derive(Debug, Deserialize)]
pub struct CheckRunEvent {
    pub action: Option<String>,
    pub check_run: CheckRun,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
pub struct CheckRun {
    #[serde(deserialize_with = "stored_id")]
    pub id: u64,
    pub name: String,
    pub head_sha: CommitSha,
    pub status: String,
    pub conclusion: Option<String>,
    pub html_url: Option<String>,
    pub details_url: Option<String>,
    /// The app that reported it, and its check suite: with them, the run's source (two
    /// workflows or two CI apps may each report a run of the same name).
    pub app: Option<App>,
    pub check_suite: Option<RunSuite>,
}

/// The check suite a check run belongs to.
#[derive(Debug, Deserialize)]
pub struct RunSuite {
    #[serde(deserialize_with = "stored_id")]
    pub id: u64,
    pub app: Option<App>,
}

/// `check_suite`: a suite of check runs was requested or completed. Its result is read from
/// its runs: a suite says nothing of which checks passed.
#[derive(Debug, Deserialize)]
pub struct CheckSuiteEvent {
    pub action: Option<String>,
    pub check_suite: CheckSuite,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
pub struct CheckSuite {
    #[serde(deserialize_with = "stored_id")]
    pub id: u64,
    pub head_sha: CommitSha,
    /// The app whose checks the suite holds (GitHub Actions, a CI service…).
    pub app: Option<App>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    /// Suites with no runs (an app that registered but runs nothing here) stay `queued`
    /// forever; they are not checks.
    pub latest_check_runs_count: Option<u64>,
}

/// `status`: a commit status was set. It has no `action`; its `state` stands in for one.
#[derive(Debug, Deserialize)]
pub struct StatusEvent {
    #[serde(deserialize_with = "stored_id")]
    pub id: u64,
    pub sha: CommitSha,
    pub context: String,
    pub state: String,
    pub target_url: Option<String>,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_hook_ping_without_repository_or_sender_parses() {
        let json =
            br#"{"zen":"Keep it logically awesome.","hook_id":470000002,"hook":{"type":"App"}}"#;
        let Event::Ping(ping) = Event::parse("ping", json).unwrap() else {
            panic!("not a ping");
        };
        assert_eq!(ping.hook_id, Some(HookId::from(470_000_002)));
    }

    #[test]
    fn a_pull_request_with_a_deleted_fork_and_null_body_parses() {
        let json = br#"{"action":"closed","number":7,"pull_request":{"number":7,"title":"t",
            "body":null,"merged":true,"merge_commit_sha":"6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
            "user":{"login":"octo-dev","type":"User"},
            "base":{"ref":"main","sha":"1111111111aaaaaaaaaa2222222222bbbbbbbbbb",
                    "repo":{"full_name":"acme/widgets","default_branch":"main"}},
            "head":{"ref":"fix","sha":"3333333333cccccccccc4444444444dddddddddd","repo":null}},
            "repository":{"full_name":"acme/widgets","default_branch":"main"}}"#;
        let Event::PullRequest(pr) = Event::parse("pull_request", json).unwrap() else {
            panic!("not a pull request");
        };
        assert!(pr.pull_request.merged);
        assert_eq!(pr.pull_request.base.branch, "main");
    }

    #[test]
    fn a_merged_at_that_is_not_a_time_is_an_error_naming_the_field() {
        let json = |merged_at: &str| {
            format!(
                r#"{{"action":"closed","pull_request":{{"number":7,"merged":true,
                "merged_at":{merged_at},"base":{{"ref":"main"}}}}}}"#
            )
        };
        for (merged_at, says) in [
            (
                r#""garbage""#,
                r#"pull_request.merged_at: "garbage" is not a time"#,
            ),
            ("12", "pull_request.merged_at: 12 is not a time"),
        ] {
            let err = Event::parse("pull_request", json(merged_at).as_bytes()).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            assert!(
                !err.is_syntax(),
                "a payload of the wrong shape, not malformed JSON"
            );
        }
        for (merged_at, expected) in [
            ("null", None),
            (r#""2026-03-03T14:02:11Z""#, Some(1_772_546_531_000)),
        ] {
            let Event::PullRequest(pr) =
                Event::parse("pull_request", json(merged_at).as_bytes()).unwrap()
            else {
                panic!("not a pull request");
            };
            assert_eq!(pr.pull_request.merged_at.map(MergedAt::millis), expected);
        }
    }

    #[test]
    fn a_deployment_status_without_action_parses() {
        let json = br#"{"deployment_status":{"state":"failure","description":null},
            "deployment":{"id":880001,"environment":"production"},
            "repository":{"full_name":"acme/widgets"}}"#;
        let Event::DeploymentStatus(status) = Event::parse("deployment_status", json).unwrap()
        else {
            panic!("not a deployment status");
        };
        assert!(status.action.is_none());
        assert_eq!(status.deployment_status.state, "failure");
    }

    #[test]
    fn a_deployment_with_a_string_payload_and_an_app_parses() {
        let json = br#"{"action":"created","deployment":{"id":880002,
            "sha":"6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b","ref":"main","task":"deploy",
            "environment":"production","payload":"{\"x\":1}",
            "creator":{"login":"github-actions[bot]","type":"Bot"},
            "performed_via_github_app":{"id":15368,"slug":"github-actions","name":"GitHub Actions"}}}"#;
        let Event::Deployment(event) = Event::parse("deployment", json).unwrap() else {
            panic!("not a deployment");
        };
        assert!(event.repository.is_none());
        assert!(event.deployment.creator.unwrap().is_bot());
        assert_eq!(event.deployment.performed_via_github_app.unwrap().id, 15368);
        assert!(event.deployment.payload.is_string());
    }

    #[test]
    fn unknown_events_are_checked_for_well_formed_json() {
        let json = br#"{"action":"created","repository":{"full_name":"acme/widgets"}}"#;
        let event = Event::parse("star", json).unwrap();
        assert!(matches!(&event, Event::Other { name, .. } if name == "star"));
        assert_eq!(event.action(), Some("created"));
        assert_eq!(event.repository(), Some("acme/widgets"));
        let err = Event::parse("star", b"{\"action\":").unwrap_err();
        assert_eq!((err.line(), err.column()), (1, 10));
    }

    #[test]
    fn a_deployment_missing_its_sha_is_an_error_that_names_the_field() {
        let json = br#"{"action":"created","deployment":{"id":1,"ref":"main","environment":"production"}}"#;
        let err = Event::parse("deployment", json).unwrap_err();
        assert!(err.to_string().contains("sha"), "{err}");
    }
}
