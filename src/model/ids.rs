//! Identifier newtypes: the names and numbers deployhook passes between GitHub, its handlers
//! and the deploy command. Each can only be built through `parse` (or serde, which calls it),
//! so a value that reaches a handler or a URL path is known to be well-formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string was not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    kind: &'static str,
    value: String,
    reason: &'static str,
}

impl InvalidId {
    fn new(kind: &'static str, value: &str, reason: &'static str) -> Self {
        // Cap what we echo back: the value may come from an attacker-controlled payload.
        let value = value.chars().take(80).collect();
        Self {
            kind,
            value,
            reason,
        }
    }
}

/// Implements `Display`, `FromStr`, `TryFrom<String>` and `AsRef<str>` for a string newtype
/// whose validation lives in its `parse`.
macro_rules! string_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A repository's full name, `owner/name`, as GitHub spells it in `repository.full_name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let err = |reason| InvalidId::new("repository name", s, reason);
        let (owner, name) = s
            .split_once('/')
            .ok_or_else(|| err("expected owner/name"))?;
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return Err(err("expected owner/name"));
        }
        // GitHub allows ASCII letters, digits, '-', '_' and '.' in both parts. Checking it
        // here means a name can be put in a URL path without escaping.
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if !owner.chars().chain(name.chars()).all(allowed) || name == "." || name == ".." {
            return Err(err("only letters, digits, '-', '_' and '.' are allowed"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or("", |(owner, _)| owner)
    }
}
string_id!(RepoName);

impl From<RepoName> for String {
    fn from(r: RepoName) -> Self {
        r.0
    }
}

/// A full commit SHA: 40 hex digits (SHA-1 repositories) or 64 (SHA-256 repositories).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if !matches!(s.len(), 40 | 64) {
            return Err(InvalidId::new(
                "commit SHA",
                s,
                "expected 40 or 64 hex digits",
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidId::new("commit SHA", s, "expected hex digits only"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The first seven digits, as GitHub shows a commit.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}
string_id!(CommitSha);

impl From<CommitSha> for String {
    fn from(s: CommitSha) -> Self {
        s.0
    }
}

/// A deployment environment's name (`production`, `staging`, `review/pr-42`…).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Environment(String);

/// GitHub limits environment names to 255 characters.
const MAX_ENVIRONMENT_LEN: usize = 255;

impl Environment {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let err = |reason| InvalidId::new("environment name", s, reason);
        if s.trim().is_empty() {
            return Err(err("must not be empty"));
        }
        if s.chars().count() > MAX_ENVIRONMENT_LEN {
            return Err(err("longer than 255 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(err("must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }
}
string_id!(Environment);

impl From<Environment> for String {
    fn from(e: Environment) -> Self {
        e.0
    }
}

/// The `X-GitHub-Delivery` header: a GUID GitHub gives each delivery, kept by redeliveries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId(String);

/// Longer than any GUID; a bound on what we copy into logs.
const MAX_DELIVERY_ID_LEN: usize = 64;

impl DeliveryId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let err = |reason| InvalidId::new("delivery id", s, reason);
        if s.is_empty() || s.len() > MAX_DELIVERY_ID_LEN {
            return Err(err("expected 1 to 64 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(err("expected letters, digits and '-' only"));
        }
        Ok(Self(s.to_owned()))
    }
}
string_id!(DeliveryId);

/// The largest id deployhook accepts: the database stores ids as signed 64-bit integers.
/// GitHub's ids are far below it; a payload beyond it is refused as malformed (a 400, not
/// a 503 that would invite endless redeliveries).
pub const MAX_STORED_ID: u64 = i64::MAX as u64;

/// Deserializes one of GitHub's numeric ids (a deployment, a pull request, an installation),
/// refusing 0 and ids past [`MAX_STORED_ID`].
pub fn stored_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if (1..=MAX_STORED_ID).contains(&n) {
        Ok(n)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "id {n} is out of range (1 to {MAX_STORED_ID})"
        )))
    }
}

/// Implements the traits of a numeric id that GitHub sends as a JSON number.
macro_rules! numeric_id {
    ($name:ident, $kind:literal) => {
        impl $name {
            pub fn get(self) -> u64 {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.parse::<u64>() {
                    Ok(n) if (1..=MAX_STORED_ID).contains(&n) => Ok(Self(n)),
                    _ => Err(InvalidId::new(
                        $kind,
                        s,
                        "expected an integer from 1 to 9223372036854775807",
                    )),
                }
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                stored_id(d).map(Self)
            }
        }
        impl From<u64> for $name {
            fn from(n: u64) -> Self {
                Self(n)
            }
        }
    };
}

/// A GitHub deployment's numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeploymentId(u64);
numeric_id!(DeploymentId, "deployment id");

/// The `X-GitHub-Hook-ID` header: which webhook (repository, organisation or app) sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct HookId(u64);
numeric_id!(HookId, "hook id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_name_accepts_owner_slash_name_and_knows_its_owner() {
        let repo = RepoName::parse("acme/widgets.rs").unwrap();
        assert_eq!(repo.owner(), "acme");
        assert_eq!(repo.to_string(), "acme/widgets.rs");
    }

    #[test]
    fn repo_name_rejects_what_cannot_be_a_path_segment_pair() {
        for bad in [
            "",
            "acme",
            "/widgets",
            "acme/",
            "a/b/c",
            "acme/wid gets",
            "acme/..",
            "a?/b",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn commit_sha_accepts_sha1_and_sha256_lengths_and_lowercases() {
        let sha = CommitSha::parse("6F1E3C9A2B4D5E6F708192A3B4C5D6E7F8091A2B").unwrap();
        assert_eq!(sha.as_ref(), "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b");
        assert_eq!(sha.short(), "6f1e3c9");
        assert!(CommitSha::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn commit_sha_rejects_branch_names_short_shas_and_non_hex() {
        for bad in ["main", "6f1e3c9", &"g".repeat(40), &"a".repeat(41)] {
            assert!(CommitSha::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn environment_rejects_empty_control_characters_and_overlong_names() {
        assert!(Environment::parse("review/pr-42").is_ok());
        assert!(Environment::parse(" ").is_err());
        assert!(Environment::parse("prod\nuction").is_err());
        assert!(Environment::parse(&"e".repeat(256)).is_err());
    }

    #[test]
    fn delivery_id_accepts_a_guid_and_rejects_header_injection() {
        assert!(DeliveryId::parse("72d3162e-cc78-11e3-81ab-4c9367dc0958").is_ok());
        assert!(DeliveryId::parse("").is_err());
        assert!(DeliveryId::parse("abc\r\nx: y").is_err());
        assert!(DeliveryId::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn numeric_ids_parse_positive_integers_only() {
        assert_eq!("880001".parse::<DeploymentId>().unwrap().get(), 880_001);
        assert!("0".parse::<HookId>().is_err());
        assert!("-1".parse::<HookId>().is_err());
        assert!("12a".parse::<DeploymentId>().is_err());
    }

    #[test]
    fn ids_deserialize_through_their_validation() {
        let repo: Result<RepoName, _> = serde_json::from_str("\"not-a-repo\"");
        assert!(repo.is_err());
        let id: DeploymentId = serde_json::from_str("880001").unwrap();
        assert_eq!(id, DeploymentId::from(880_001));
    }
}
