//! `issue_comment`: a comment on an issue or a pull request was created, edited or
//! deleted. Only what a comment command needs is read: who wrote what, on which pull
//! request. GitHub sends pull-request conversations as issues with a `pull_request` key.

use serde::Deserialize;

use super::{Account, Installation, Repository};
use crate::model::ids::stored_id;

#[derive(Debug, Deserialize)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
pub struct Issue {
    #[serde(deserialize_with = "stored_id")]
    pub number: u64,
    /// Present (an object of links) only when the issue is a pull request.
    pub pull_request: Option<serde::de::IgnoredAny>,
    pub state: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Comment {
    #[serde(deserialize_with = "stored_id")]
    pub id: u64,
    /// `null` is possible in GitHub's schema; read as empty.
    #[serde(default)]
    pub body: Option<String>,
    pub user: Option<Account>,
}

impl IssueCommentEvent {
    /// Whether the comment is on a pull request (not an issue).
    pub fn on_pull_request(&self) -> bool {
        self.issue.pull_request.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Event;

    #[test]
    fn a_comment_on_a_pull_request_parses() {
        let json = br#"{"action":"created",
            "issue":{"number":42,"state":"open","pull_request":{"url":"https://api.github.com/repos/acme/app/pulls/42"}},
            "comment":{"id":9001,"body":".deploy to staging","user":{"login":"wes-writer","type":"User"}},
            "repository":{"full_name":"acme/app","default_branch":"main"},
            "installation":{"id":7}}"#;
        let Event::IssueComment(event) = Event::parse("issue_comment", json).unwrap() else {
            panic!("not a comment");
        };
        assert!(event.on_pull_request());
        assert_eq!(event.comment.id, 9001);
        assert_eq!(event.comment.body.as_deref(), Some(".deploy to staging"));
        assert_eq!(event.installation.map(|i| i.id), Some(7));
    }

    #[test]
    fn a_comment_on_an_issue_is_not_on_a_pull_request() {
        let json = br#"{"action":"created","issue":{"number":3},
            "comment":{"id":1,"body":null,"user":null},"repository":{"full_name":"acme/app"}}"#;
        let Event::IssueComment(event) = Event::parse("issue_comment", json).unwrap() else {
            panic!("not a comment");
        };
        assert!(!event.on_pull_request());
        assert!(event.comment.body.is_none());
    }
}
