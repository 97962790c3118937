//! Approvals before a deploy: an environment's [`ApprovalRule`] — how many people must
//! approve a deployment into it, who may ([`Grantee`]s: GitHub logins and teams), whether
//! the change's author may approve their own, and how long the deployment waits — and the
//! sentence that says what a waiting deployment waits for. The config file builds the rule,
//! the guide attaches it to a deployment, the store keeps the count, the deadline and the
//! self-approval flag with the job.

use std::time::Duration;

use crate::model::people::Grantee;

/// The most approvals an environment may ask for.
pub const MAX_APPROVALS: u32 = 10;
/// How long a deployment waits for its approvals unless configured otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest a deployment may wait for its approvals: past this, what was approved is
/// likely stale anyway.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// An environment's approvals: a deployment into it runs only once `required` people
/// approved it, within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// 1 to [`MAX_APPROVALS`] distinct people.
    pub required: u32,
    /// Who may approve; empty: anyone whose role allows approving.
    pub reviewers: Vec<Grantee>,
    /// Whether the change's author (the deployment's `deploy_user`) may approve it.
    pub self_approval: bool,
    /// How long a deployment waits before it ends `failure`.
    pub timeout: Duration,
}

impl ApprovalRule {
    /// `required` approvals by anyone allowed, no self-approval, the default timeout.
    pub fn new(required: u32) -> Self {
        Self {
            required,
            reviewers: vec![],
            self_approval: false,
            timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }

    /// What a deployment waits for, as its `pending` status says it: `waiting for approval
    /// by octocat, @acme/sre`, `waiting for 2 approvals by …`, or `waiting for 2 approvals`
    /// when anyone allowed may approve. Cut to GitHub's 140 characters where it is sent.
    pub fn waiting_for(&self) -> String {
        let reviewers: Vec<String> = self.reviewers.iter().map(ToString::to_string).collect();
        match (self.required, reviewers.is_empty()) {
            (1, false) => format!("waiting for approval by {}", reviewers.join(", ")),
            (n, false) => format!("waiting for {n} approvals by {}", reviewers.join(", ")),
            (1, true) => "waiting for 1 approval".to_owned(),
            (n, true) => format!("waiting for {n} approvals"),
        }
    }

    /// The rule in a few words, for `check-config`: `needs 2 approvals by octocat,
    /// @acme/sre within 4h, not by the change's author`.
    pub fn summary(&self) -> String {
        let who = if self.reviewers.is_empty() {
            String::new()
        } else {
            let reviewers: Vec<String> = self.reviewers.iter().map(ToString::to_string).collect();
            format!(" by {}", reviewers.join(", "))
        };
        let plural = if self.required == 1 { "" } else { "s" };
        let author = if self.self_approval {
            "the change's author may approve"
        } else {
            "not by the change's author"
        };
        format!(
            "needs {} approval{plural}{who} within {}, {author}",
            self.required,
            humantime::format_duration(self.timeout)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiting_sentence_names_the_reviewers_or_the_count() {
        let mut rule = ApprovalRule::new(1);
        assert_eq!(rule.waiting_for(), "waiting for 1 approval");
        rule.required = 2;
        assert_eq!(rule.waiting_for(), "waiting for 2 approvals");
        rule.reviewers = vec![
            Grantee::parse("octocat").unwrap(),
            Grantee::parse("@acme/sre").unwrap(),
        ];
        assert_eq!(
            rule.waiting_for(),
            "waiting for 2 approvals by octocat, @acme/sre"
        );
        rule.required = 1;
        assert_eq!(
            rule.waiting_for(),
            "waiting for approval by octocat, @acme/sre"
        );
        rule.timeout = Duration::from_secs(4 * 3600);
        assert_eq!(
            rule.summary(),
            "needs 1 approval by octocat, @acme/sre within 4h, not by the change's author"
        );
    }
}

/// What one deployment waits for: its environment's rule, and the people whose own change
/// it is — the `deploy_user` its payload names and the person GitHub says created it (a
/// payload's name is anyone's to write, the creator is not), lowercase — whom
/// `self_approval = false` keeps from approving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub rule: ApprovalRule,
    pub authors: Vec<String>,
}

impl From<ApprovalRule> for Asked {
    /// The rule alone: the author is then the deployment's `deploy_user` only.
    fn from(rule: ApprovalRule) -> Self {
        Self {
            rule,
            authors: vec![],
        }
    }
}
