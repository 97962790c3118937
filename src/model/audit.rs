//! The audit log's vocabulary: an [`AuditEntry`] says who ([`Actor`]) did what
//! ([`AuditAction`]) to which repository, environment and target, from which client
//! address, and whether it was done or refused ([`AuditOutcome`]).
//!
//! An entry's texts are bounded when it is built ([`MAX_TEXT_CHARS`], no control
//! characters): they come from requests, and end up in pages, terminals and logs. Its fields
//! are read through methods, so no entry can hold an unbounded text.

use std::fmt;

use crate::model::people::{Actor, Via};

/// The most characters an entry's text (a login, a name, a detail, an address) keeps.
pub const MAX_TEXT_CHARS: usize = 200;

/// What was done, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    SignIn,
    SignOut,
    Lock,
    Unlock,
    Deploy,
    Force,
    Rollback,
    Approve,
    Reject,
    Retry,
    Dismiss,
    TokenCreated,
    TokenRevoked,
}

impl AuditAction {
    pub const ALL: [Self; 13] = [
        Self::SignIn,
        Self::SignOut,
        Self::Lock,
        Self::Unlock,
        Self::Deploy,
        Self::Force,
        Self::Rollback,
        Self::Approve,
        Self::Reject,
        Self::Retry,
        Self::Dismiss,
        Self::TokenCreated,
        Self::TokenRevoked,
    ];

    /// The name stored, shown and filtered by: `sign_in`, `token_created`…
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignOut => "sign_out",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::Deploy => "deploy",
            Self::Force => "force",
            Self::Rollback => "rollback",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Retry => "retry",
            Self::Dismiss => "dismiss",
            Self::TokenCreated => "token_created",
            Self::TokenRevoked => "token_revoked",
        }
    }

    /// The action named `text` (its [`as_str`](Self::as_str)), or a sentence listing them.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| {
                let shown: String = text.chars().filter(|c| !c.is_control()).take(40).collect();
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!("{shown:?} is not an audited action: {}", names.join(", "))
            })
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the action was done, or refused for a reason about the action itself (an unlock
/// of an environment that was not locked). Wrong credentials are not audited: they name no
/// one (`web::guesses` limits them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Done,
    Refused,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Done, Self::Refused]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the audit log. Built with [`AuditEntry::new`] and the `with_…` methods,
/// which bound every text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    at: i64,
    actor: Actor,
    action: AuditAction,
    repository: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    detail: String,
    address: String,
    outcome: AuditOutcome,
}

impl AuditEntry {
    /// `actor` did `action` at `at` (Unix milliseconds) from the client `address`; done,
    /// unless [`refused`](Self::refused) says otherwise.
    pub fn new(at: i64, actor: &Actor, action: AuditAction, address: &str) -> Self {
        Self {
            at,
            actor: Actor::person(&bounded(&actor.login), actor.via),
            action,
            repository: None,
            environment: None,
            target: None,
            detail: String::new(),
            address: bounded(address),
            outcome: AuditOutcome::Done,
        }
    }

    /// The repository acted on (`owner/name`; empty: none).
    #[must_use]
    pub fn with_repository(mut self, repository: &str) -> Self {
        self.repository = named(repository);
        self
    }

    /// The environment acted on (empty: none).
    #[must_use]
    pub fn with_environment(mut self, environment: &str) -> Self {
        self.environment = named(environment);
        self
    }

    /// What exactly: a deployment id, a commit, a call's id, a token's name (empty: none).
    #[must_use]
    pub fn with_target(mut self, target: &str) -> Self {
        self.target = named(target);
        self
    }

    /// Why, or what came of it: a lock's reason, a refusal's sentence.
    #[must_use]
    pub fn with_detail(mut self, detail: &str) -> Self {
        self.detail = bounded(detail);
        self
    }

    /// Refused, with the sentence the actor was told as its detail.
    #[must_use]
    pub fn refused(mut self, why: &str) -> Self {
        self.outcome = AuditOutcome::Refused;
        self.with_detail(why)
    }

    /// When, in Unix milliseconds.
    pub fn at(&self) -> i64 {
        self.at
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn via(&self) -> Via {
        self.actor.via
    }

    pub fn action(&self) -> AuditAction {
        self.action
    }

    pub fn repository(&self) -> Option<&str> {
        self.repository.as_deref()
    }

    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The client's address, as `web::client` found it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// This entry with its client address left out (shown as `-`): for readers who may see
    /// what was done but not where a colleague acts from.
    pub fn without_address(mut self) -> Self {
        self.address = "-".to_owned();
        self
    }

    pub fn outcome(&self) -> AuditOutcome {
        self.outcome
    }
}

/// [`bounded`], or `None` when nothing is left.
fn named(text: &str) -> Option<String> {
    Some(bounded(text)).filter(|t| !t.is_empty())
}

/// `text` without control characters, cut to [`MAX_TEXT_CHARS`] characters.
fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_names_and_others_are_refused_with_the_list() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Ok(action));
        }
        let refused = AuditAction::parse("delete\u{1b}[2J").unwrap_err();
        assert!(refused.starts_with("\"delete[2J\" is not"), "{refused}");
        assert!(refused.contains("sign_in") && refused.contains("token_revoked"));
        for outcome in [AuditOutcome::Done, AuditOutcome::Refused] {
            assert_eq!(AuditOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(AuditOutcome::parse("maybe"), None);
    }

    #[test]
    fn every_text_of_an_entry_is_bounded_and_free_of_control_characters() {
        let long = "é".repeat(300);
        let actor = Actor::person(&format!("mallory\n{long}"), Via::GitHub);
        let entry = AuditEntry::new(7, &actor, AuditAction::Lock, "192.0.2.1\r\n")
            .with_repository(&long)
            .with_environment("prod\u{1b}]0;owned\u{7}")
            .with_target(&long)
            .with_detail(&format!("why\n{long}"));
        assert_eq!(entry.actor().login.chars().count(), MAX_TEXT_CHARS);
        assert!(entry.actor().login.starts_with("mallory"));
        assert_eq!(entry.address(), "192.0.2.1");
        assert_eq!(entry.environment(), Some("prod]0;owned"));
        assert_eq!(entry.repository().unwrap().chars().count(), MAX_TEXT_CHARS);
        assert_eq!(entry.target().unwrap().chars().count(), MAX_TEXT_CHARS);
        assert!(entry.detail().starts_with("whyé"));
        assert_eq!(entry.detail().chars().count(), MAX_TEXT_CHARS);
        assert_eq!(entry.outcome(), AuditOutcome::Done);
        let unnamed = entry.with_target("").with_environment("\n");
        assert_eq!((unnamed.target(), unnamed.environment()), (None, None));
    }

    #[test]
    fn a_refusal_keeps_the_sentence_as_its_detail() {
        let entry = AuditEntry::new(1, &Actor::admin_token("maria"), AuditAction::Unlock, "::1")
            .with_environment("production")
            .refused("production is not locked");
        assert_eq!(entry.outcome(), AuditOutcome::Refused);
        assert_eq!(entry.detail(), "production is not locked");
    }
}
