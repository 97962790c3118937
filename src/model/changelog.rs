//! What is in a deploy: the commits between the environment's previous successful deploy of
//! the repository and this one, as GitHub's compare API lists them, and what could be told
//! when it cannot list them (the first deploy, history rewritten since, too many, a failure).
//! A rollback lists the commits it removes. Bounded: at most [`STORED_COMMITS`] commits are
//! kept per deploy, each title at most [`TITLE_CHARS`] characters.

use serde::{Deserialize, Serialize};

/// Commits kept per deploy at most; past it the changelog says how many there were in all.
pub const STORED_COMMITS: usize = 250;
/// A commit's title (its message's first line) is cut to this many characters.
pub const TITLE_CHARS: usize = 200;
/// Titles a notification or a `deployhook log` header shows, then "and N more".
pub const TITLES_SHOWN: usize = 10;

/// How far a changelog got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangelogState {
    /// Every commit between the previous success and this deploy is listed (none: the same
    /// commit redeployed).
    Listed,
    /// No successful deploy of the repository to the environment is known.
    FirstDeploy,
    /// The previous success is not an ancestor of this commit (a force-push, another
    /// branch): GitHub found no common history, or only a merge base before it.
    UnrelatedHistory,
    /// More commits than [`STORED_COMMITS`]: the first ones are listed, `total` says all.
    TooMany,
    /// GitHub could not be asked (it refused, or kept failing).
    Failed,
}

impl ChangelogState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listed => "listed",
            Self::FirstDeploy => "first_deploy",
            Self::UnrelatedHistory => "unrelated_history",
            Self::TooMany => "too_many",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Listed,
            Self::FirstDeploy,
            Self::UnrelatedHistory,
            Self::TooMany,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One commit of a changelog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub sha: String,
    /// The message's first line, cut to [`TITLE_CHARS`].
    pub title: String,
    /// The GitHub login of its author, when GitHub knows the author as a user.
    pub author: Option<String>,
    /// The pull request the message names (see [`pull_request_of`]).
    pub pull_request: Option<u64>,
}

impl Change {
    /// A commit as GitHub lists it: its sha, whole message and author's login.
    pub fn new(sha: String, message: &str, author: Option<String>) -> Self {
        let first = message.lines().next().unwrap_or_default().trim();
        Self {
            sha,
            title: first.chars().take(TITLE_CHARS).collect(),
            author,
            pull_request: pull_request_of(first),
        }
    }
}

/// A deploy's changelog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changelog {
    pub state: ChangelogState,
    /// The previous success's commit; empty for a first deploy.
    pub base: String,
    /// The deploy goes back: its commits are those it removes (a rollback).
    pub backwards: bool,
    /// Commits in all, listed or not.
    pub total: u64,
    /// Oldest first, at most [`STORED_COMMITS`].
    pub commits: Vec<Change>,
    /// Why it failed (GitHub's answer), for [`ChangelogState::Failed`].
    pub detail: String,
}

impl Changelog {
    /// The changelog of a deploy with no previous success known.
    pub fn first_deploy() -> Self {
        Self::empty(ChangelogState::FirstDeploy, String::new())
    }

    /// The changelog of a commit deployed again: nothing changed.
    pub fn same_commit(base: String) -> Self {
        Self::empty(ChangelogState::Listed, base)
    }

    /// `state` with no commits listed.
    pub fn empty(state: ChangelogState, base: String) -> Self {
        Self {
            state,
            base,
            backwards: false,
            total: 0,
            commits: vec![],
            detail: String::new(),
        }
    }

    /// One sentence saying what the list is, for pages, notifications and headers.
    pub fn summary(&self) -> String {
        let short: String = self.base.chars().take(7).collect();
        let commits = |n: u64| if n == 1 { "commit" } else { "commits" };
        let (total, word) = (self.total, commits(self.total));
        match self.state {
            ChangelogState::FirstDeploy => "first deploy here: no previous success known".into(),
            // `diverged`: GitHub lists what the branch added since the common ancestor.
            ChangelogState::UnrelatedHistory if total > 0 => format!(
                "history was rewritten since {short}: {total} {word} since the common ancestor"
            ),
            ChangelogState::UnrelatedHistory => {
                format!("history was rewritten since {short}: no changelog from it")
            }
            ChangelogState::Failed => format!("changelog unavailable: {}", self.detail),
            ChangelogState::Listed if total == 0 => {
                format!("the same commit as the previous deploy ({short}): nothing changed")
            }
            ChangelogState::Listed | ChangelogState::TooMany if self.backwards => {
                format!("rolls back {total} {word} deployed since {short}")
            }
            ChangelogState::Listed => format!("{total} {word} since {short}"),
            ChangelogState::TooMany => format!(
                "{total} {word} since {short}; the first {} are listed",
                self.commits.len()
            ),
        }
    }

    /// At most `cap` titles, then `and N more` when there are more commits in all.
    pub fn titles(&self, cap: usize) -> Vec<String> {
        let mut titles: Vec<String> = self
            .commits
            .iter()
            .take(cap)
            .map(|c| match c.pull_request {
                Some(_) => c.title.clone(),
                None => format!("{} {}", c.sha.chars().take(7).collect::<String>(), c.title),
            })
            .collect();
        let shown = u64::try_from(titles.len()).unwrap_or(u64::MAX);
        if self.total > shown {
            titles.push(format!("and {} more", self.total - shown));
        }
        titles
    }
}

/// The pull request a commit's title names: `Merge pull request #N from …` (a merge
/// commit) or a title ending in `(#N)` (a squash merge).
pub fn pull_request_of(title: &str) -> Option<u64> {
    let number = |digits: &str| -> Option<u64> {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
            .filter(|n| *n > 0)
    };
    if let Some(rest) = title.strip_prefix("Merge pull request #") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let after = &rest[digits.len()..];
        if after.is_empty() || after.starts_with(' ') {
            return number(&digits);
        }
    }
    let inner = title.trim_end().strip_suffix(')')?;
    let start = inner.rfind("(#")?;
    number(&inner[start + 2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_requests_are_read_from_merge_and_squash_titles_only() {
        let cases = [
            ("Merge pull request #42 from acme/feature", Some(42)),
            ("Merge pull request #7", Some(7)),
            ("Add a cache (#1234)", Some(1234)),
            ("Fix (#12) the thing (#13)", Some(13)),
            ("Add a cache (#12a)", None),
            ("Add a cache (#)", None),
            ("Add a cache (#0)", None),
            ("Mention #12 in the middle", None),
            ("Merge pull request #12x from a/b", None),
            ("Add a cache (#99999999999999999999999)", None),
            ("", None),
        ];
        for (title, expected) in cases {
            assert_eq!(pull_request_of(title), expected, "{title:?}");
        }
    }

    #[test]
    fn a_change_keeps_the_first_line_cut_to_its_length() {
        let long = "x".repeat(TITLE_CHARS + 50);
        let change = Change::new("a".repeat(40), &format!("{long}\n\nbody (#3)"), None);
        assert_eq!(change.title.chars().count(), TITLE_CHARS);
        assert_eq!(change.pull_request, None, "the body is not the title");
        let squash = Change::new("b".repeat(40), "Fix it (#9)\r\nmore", Some("octo".into()));
        assert_eq!(
            (squash.title.as_str(), squash.pull_request),
            ("Fix it (#9)", Some(9))
        );
    }

    #[test]
    fn every_state_says_what_its_list_is() {
        let base = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b".to_owned();
        assert_eq!(
            Changelog::first_deploy().summary(),
            "first deploy here: no previous success known"
        );
        assert!(
            Changelog::same_commit(base.clone())
                .summary()
                .contains("nothing changed")
        );
        let mut listed = Changelog::empty(ChangelogState::Listed, base.clone());
        listed.total = 3;
        assert_eq!(listed.summary(), "3 commits since 6f1e3c9");
        listed.backwards = true;
        assert_eq!(
            listed.summary(),
            "rolls back 3 commits deployed since 6f1e3c9"
        );
        let rewritten = Changelog::empty(ChangelogState::UnrelatedHistory, base.clone());
        assert!(
            rewritten
                .summary()
                .starts_with("history was rewritten since 6f1e3c9")
        );
        let mut diverged = Changelog::empty(ChangelogState::UnrelatedHistory, base.clone());
        diverged.total = 2;
        diverged.commits = vec![Change::new("d".repeat(40), "t", None); 2];
        assert_eq!(
            diverged.summary(),
            "history was rewritten since 6f1e3c9: 2 commits since the common ancestor"
        );
        let mut many = Changelog::empty(ChangelogState::TooMany, base);
        many.total = 900;
        many.commits = vec![Change::new("c".repeat(40), "t", None); STORED_COMMITS];
        assert_eq!(
            many.summary(),
            "900 commits since 6f1e3c9; the first 250 are listed"
        );
        for state in [
            "listed",
            "first_deploy",
            "unrelated_history",
            "too_many",
            "failed",
        ] {
            assert_eq!(ChangelogState::parse(state).unwrap().as_str(), state);
        }
    }

    #[test]
    fn titles_are_capped_and_say_how_many_more() {
        let mut log = Changelog::empty(ChangelogState::TooMany, "b".repeat(40));
        log.commits = (1..=30)
            .map(|n| Change::new(format!("{n:040}"), &format!("Change {n} (#{n})"), None))
            .collect();
        log.total = 300;
        let titles = log.titles(TITLES_SHOWN);
        assert_eq!(titles.len(), TITLES_SHOWN + 1);
        assert_eq!(titles[0], "Change 1 (#1)");
        assert_eq!(titles[TITLES_SHOWN], "and 290 more");
    }
}
