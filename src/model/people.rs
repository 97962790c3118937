//! Who acts, and what they may do: an [`Actor`] is a person signed in with GitHub (on the
//! dashboard or through a personal token) or the shared admin token's automation; a
//! [`Role`] is what GitHub's repository permission makes of a person; an [`Action`] is one
//! thing an operator does, each needing a role that an environment may raise or lower.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a person may do in an environment, from their repository permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No access at all: the repository is not theirs to see.
    None,
    /// Look: the dashboard's pages, logs, insights.
    Read,
    /// Deploy, lock, unlock, approve.
    Write,
    /// Force, roll back, retry and dismiss calls.
    Admin,
}

impl Role {
    /// The role GitHub's `collaborators/{user}/permission` answer gives: its `permission`
    /// (`admin`, `write`, `read`, `none`; `maintain` shows as `write`, `triage` as `read`).
    pub fn from_github(permission: &str) -> Self {
        match permission {
            "admin" => Self::Admin,
            "maintain" | "write" | "push" => Self::Write,
            "triage" | "read" | "pull" => Self::Read,
            _ => Self::None,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!("{other:?} is not a role: read, write or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing an operator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    View,
    Deploy,
    Lock,
    Unlock,
    Approve,
    Force,
    Rollback,
    RetryCall,
    DismissCall,
}

impl Action {
    pub const ALL: [Self; 9] = [
        Self::View,
        Self::Deploy,
        Self::Lock,
        Self::Unlock,
        Self::Approve,
        Self::Force,
        Self::Rollback,
        Self::RetryCall,
        Self::DismissCall,
    ];

    /// The role an action needs unless its environment says otherwise.
    pub fn default_role(self) -> Role {
        match self {
            Self::View => Role::Read,
            Self::Deploy | Self::Lock | Self::Unlock | Self::Approve => Role::Write,
            Self::Force | Self::Rollback | Self::RetryCall | Self::DismissCall => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Deploy => "deploy",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::Approve => "approve",
            Self::Force => "force",
            Self::Rollback => "rollback",
            Self::RetryCall => "retry",
            Self::DismissCall => "dismiss",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an actor proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Signed in on the dashboard with GitHub.
    GitHub,
    /// A personal token, made by a person signed in with GitHub.
    PersonalToken,
    /// The shared admin token: automation, or the fallback without GitHub sign-in.
    AdminToken,
    /// A command in a pull-request comment: the login is the signed delivery's
    /// `comment.user`, as GitHub vouches for it.
    Comment,
    /// deployhook itself, deciding on its own: a failed verification's rollback.
    Deployhook,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::PersonalToken => "personal_token",
            Self::AdminToken => "admin_token",
            Self::Comment => "comment",
            Self::Deployhook => "deployhook",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::GitHub,
            Self::PersonalToken,
            Self::AdminToken,
            Self::Comment,
            Self::Deployhook,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
    }
}

/// Who acts. A person's `login` is their GitHub login; the admin token's is what its
/// caller says (`--by`, `$USER`), kept apart by `via` so no one mistakes a claim for a
/// proven name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: String,
    pub via: Via,
}

impl Actor {
    pub fn person(login: &str, via: Via) -> Self {
        Self {
            login: login.to_owned(),
            via,
        }
    }

    /// deployhook's verification, acting on its own (`on_verify_failure = "rollback"`).
    pub fn verification() -> Self {
        Self {
            login: "deployhook-verification".to_owned(),
            via: Via::Deployhook,
        }
    }

    /// The admin token's bearer, naming itself `claimed` (at most 100 characters, no
    /// control characters: it reaches pages and logs).
    pub fn admin_token(claimed: &str) -> Self {
        let claimed: String = claimed
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        Self {
            login: if claimed.trim().is_empty() {
                "admin".to_owned()
            } else {
                claimed
            },
            via: Via::AdminToken,
        }
    }

    /// Whether this is a person known to GitHub (whose role GitHub decides).
    pub fn is_person(&self) -> bool {
        self.via != Via::AdminToken
    }

    /// How locks, payloads and notifications name the actor: the login, or the name the
    /// admin token's bearer gave (as before people signed in, so scripts reading
    /// `deploy_user` see what they saw). What tells a claim from a proven name is `via`,
    /// which the audit log keeps beside it.
    pub fn shown(&self) -> String {
        self.login.clone()
    }
}

/// A person, or every active member of a team, named in the config file as `octocat` or
/// `@acme/sre`: an environment's admins, the reviewers who may approve its deployments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grantee {
    /// A GitHub login, lowercase (logins are case-insensitive).
    User(String),
    /// An organisation's team, by its slug; both lowercase.
    Team { org: String, slug: String },
}

impl Grantee {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is neither a GitHub login (octocat) nor a team (@org/team-slug)");
        match text.strip_prefix('@') {
            Some(team) => {
                let (org, slug) = team.split_once('/').ok_or_else(bad)?;
                let slug_ok = !slug.is_empty()
                    && slug.len() <= 100
                    && slug
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid_login(org) || !slug_ok {
                    return Err(bad());
                }
                Ok(Self::Team {
                    org: org.to_ascii_lowercase(),
                    slug: slug.to_ascii_lowercase(),
                })
            }
            None if valid_login(text) => Ok(Self::User(text.to_ascii_lowercase())),
            None => Err(bad()),
        }
    }
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(login) => f.write_str(login),
            Self::Team { org, slug } => write!(f, "@{org}/{slug}"),
        }
    }
}

/// Whether `login` could be a GitHub login: up to 100 letters, digits, hyphens and
/// underscores (github.com allows 39 without `_`; Enterprise Managed Users'
/// `handle_shortcode` and GitHub Enterprise Server's logins from LDAP need more), not
/// starting with either sign. Checked before it goes into a URL or a cookie: none of
/// these characters means anything there.
pub fn valid_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 100
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !login.starts_with(['-', '_'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_permissions_map_to_roles() {
        assert_eq!(Role::from_github("admin"), Role::Admin);
        assert_eq!(Role::from_github("maintain"), Role::Write);
        assert_eq!(Role::from_github("write"), Role::Write);
        assert_eq!(Role::from_github("triage"), Role::Read);
        assert_eq!(Role::from_github("read"), Role::Read);
        assert_eq!(Role::from_github("none"), Role::None);
        assert_eq!(Role::from_github("anything else"), Role::None);
    }

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        assert!(Role::None < Role::Read && Role::Read < Role::Write && Role::Write < Role::Admin);
        assert_eq!(Action::Rollback.default_role(), Role::Admin);
        assert_eq!(Action::Approve.default_role(), Role::Write);
        assert_eq!(Action::View.default_role(), Role::Read);
    }

    #[test]
    fn actions_round_trip_through_their_names() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("delete"), None);
    }

    #[test]
    fn logins_are_checked_like_github_does() {
        for good in [
            "octocat",
            "a",
            "mona-lisa",
            "x1-2",
            "jdoe_acme",
            "old-name-",
        ] {
            assert!(valid_login(good), "{good}");
        }
        let long = "a".repeat(101);
        for bad in ["", "-a", "_a", "a b", "a/b", "a.b", "ünï", long.as_str()] {
            assert!(!valid_login(bad), "{bad}");
        }
    }

    #[test]
    fn grantees_are_logins_or_teams() {
        assert_eq!(
            Grantee::parse("OctoCat"),
            Ok(Grantee::User("octocat".into()))
        );
        assert_eq!(
            Grantee::parse("@Acme/SRE_on-call"),
            Ok(Grantee::Team {
                org: "acme".into(),
                slug: "sre_on-call".into()
            })
        );
        for bad in [
            "",
            "@acme",
            "@acme/",
            "@/sre",
            "a b",
            "@acme/s re",
            "-x",
            "@acme/sre/x",
        ] {
            assert!(Grantee::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_admin_token_names_itself_but_is_marked() {
        let bot = Actor::admin_token("deploy-bot\n\u{1b}[2J");
        assert_eq!(bot.login, "deploy-bot[2J");
        assert_eq!(bot.shown(), "deploy-bot[2J");
        assert!(!bot.is_person());
        assert_eq!(Actor::admin_token("  ").login, "admin");
    }
}
