//! Approvals before a deploy: an environment's [`ApprovalRule`] — how many people must
//! approve a deployment into it, who may ([`Reviewer`]: a GitHub login or a team), whether
//! the change's author may approve their own, and how long the deployment waits — and the
//! sentence that says what a waiting deployment waits for. The config file builds the rule,
//! the guide attaches it to a deployment, the store keeps the count, the deadline and the
//! self-approval flag with the job.

use std::fmt;
use std::time::Duration;

use crate::model::people::valid_login;

/// The most approvals an environment may ask for.
pub const MAX_APPROVALS: u32 = 10;
/// How long a deployment waits for its approvals unless configured otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest a deployment may wait for its approvals: past this, what was approved is
/// likely stale anyway.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Who may approve: one person, or the members of a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reviewer {
    /// A GitHub login, as written (GitHub compares logins without case).
    Person(String),
    /// `@org/team-slug`: the members of a team of an organization.
    Team { org: String, slug: String },
}

impl Reviewer {
    /// `octocat`, or `@acme/sre` for a team. Team slugs are GitHub's: lowercase letters,
    /// digits, `-` and `_`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(team) = text.strip_prefix('@') else {
            return if valid_login(text) {
                Ok(Self::Person(text.to_owned()))
            } else {
                Err(format!(
                    "{text:?} is not a GitHub login (letters, digits and single hyphens, at \
                     most 39) nor a team (\"@org/team-slug\")"
                ))
            };
        };
        let (org, slug) = team.split_once('/').unwrap_or((team, ""));
        let slug_ok = !slug.is_empty()
            && slug.len() <= 100
            && slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_login(org) || !slug_ok {
            return Err(format!(
                "{text:?} is not a team: write \"@org/team-slug\", the slug as GitHub shows it \
                 (lowercase letters, digits, - and _)"
            ));
        }
        Ok(Self::Team {
            org: org.to_owned(),
            slug: slug.to_owned(),
        })
    }

    /// Whether this names the same person or team as `other` (logins and organizations
    /// without case, as GitHub compares them).
    pub fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Person(a), Self::Person(b)) => a.eq_ignore_ascii_case(b),
            (Self::Team { org: a, slug: s }, Self::Team { org: b, slug: t }) => {
                a.eq_ignore_ascii_case(b) && s == t
            }
            _ => false,
        }
    }
}

impl fmt::Display for Reviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Person(login) => f.write_str(login),
            Self::Team { org, slug } => write!(f, "@{org}/{slug}"),
        }
    }
}

/// An environment's approvals: a deployment into it runs only once `required` people
/// approved it, within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// 1 to [`MAX_APPROVALS`] distinct people.
    pub required: u32,
    /// Who may approve; empty: anyone whose role allows approving.
    pub reviewers: Vec<Reviewer>,
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
    fn reviewers_are_logins_or_teams_and_nothing_else() {
        assert_eq!(
            Reviewer::parse("octocat"),
            Ok(Reviewer::Person("octocat".into()))
        );
        assert_eq!(
            Reviewer::parse("@acme/site-reliability_2"),
            Ok(Reviewer::Team {
                org: "acme".into(),
                slug: "site-reliability_2".into()
            })
        );
        for bad in [
            "",
            "-x",
            "a b",
            "@acme",
            "@acme/",
            "@acme/SRE",
            "@-acme/sre",
            "acme/sre",
        ] {
            assert!(Reviewer::parse(bad).is_err(), "{bad:?}");
        }
        let team = Reviewer::parse("@acme/sre").unwrap();
        assert_eq!(team.to_string(), "@acme/sre");
        assert!(team.same_as(&Reviewer::parse("@ACME/sre").unwrap()));
        assert!(
            Reviewer::parse("OctoCat")
                .unwrap()
                .same_as(&Reviewer::Person("octocat".into()))
        );
    }

    #[test]
    fn the_waiting_sentence_names_the_reviewers_or_the_count() {
        let mut rule = ApprovalRule::new(1);
        assert_eq!(rule.waiting_for(), "waiting for 1 approval");
        rule.required = 2;
        assert_eq!(rule.waiting_for(), "waiting for 2 approvals");
        rule.reviewers = vec![
            Reviewer::parse("octocat").unwrap(),
            Reviewer::parse("@acme/sre").unwrap(),
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
