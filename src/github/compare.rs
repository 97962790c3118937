//! The compare API (`GET /repos/{owner}/{repo}/compare/{base}...{head}`): which files
//! changed between an environment's last successful deploy and a merge, for its `paths`.
//!
//! The call is slow on large comparisons, so only the outbox worker makes it, never the
//! webhook handler. Its answer is paginated (`per_page`, `page`, a `Link: rel="next"`
//! header); GitHub lists at most [`FILES_CAP`] files for a whole comparison, so a listing
//! that reaches the cap, or pages left unread past [`MAX_PAGES`], cannot prove that no
//! matching file changed: [`Comparison::complete`] is then false and the caller deploys.
//! Also [`GitHubClient::commit_of`]: the commit a release's tag names.

use reqwest::Method;
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::RepoName;

/// Files GitHub lists at most for one comparison; past it the list is cut.
pub const FILES_CAP: usize = 300;
/// Commits (and files) asked for per page.
const PER_PAGE: usize = 100;
/// Pages read at most: a comparison past them is taken as possibly incomplete.
const MAX_PAGES: usize = 10;

/// What a comparison showed of the files that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// GitHub's `status`: `ahead`, `behind`, `identical` or `diverged`.
    pub status: String,
    /// The files listed, over the pages read.
    pub files: usize,
    /// The first file (its path, or its path before a rename) that `wanted` accepted.
    pub matched: Option<String>,
    /// Whether every changed file was listed: no page left unread, the cap not reached.
    pub complete: bool,
}

#[derive(Deserialize)]
struct Page {
    status: Option<String>,
    #[serde(default)]
    files: Vec<File>,
}

#[derive(Deserialize)]
struct File {
    filename: String,
    /// Set for a rename: moving a file out of a directory changes that directory too.
    previous_filename: Option<String>,
}

impl GitHubClient {
    /// The files changed from `base` to `head`, read page by page until one is `wanted`.
    pub async fn compare_files(
        &self,
        repo: &RepoName,
        base: &str,
        head: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Comparison, GitHubError> {
        let mut comparison = Comparison {
            status: String::new(),
            files: 0,
            matched: None,
            complete: false,
        };
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{repo}/compare/{base}...{head}?per_page={PER_PAGE}&page={page}");
            let response = self
                .send("compare", Method::GET, &path, None::<&()>)
                .await?;
            let next = has_next(&response);
            let body: Page = response.json().await.map_err(GitHubError::Decode)?;
            if let Some(status) = body.status {
                comparison.status = status;
            }
            comparison.files += body.files.len();
            comparison.matched = body.files.into_iter().find_map(|file| {
                std::iter::once(file.filename)
                    .chain(file.previous_filename)
                    .find(|name| wanted(name))
            });
            if comparison.matched.is_some() || !next {
                comparison.complete = !next && comparison.files < FILES_CAP;
                return Ok(comparison);
            }
        }
        Ok(comparison)
    }
}

/// Whether the answer's `Link` header names a next page.
pub(super) fn has_next(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|link| link.contains("rel=\"next\""))
}

#[derive(Deserialize)]
struct Commit {
    sha: crate::model::CommitSha,
}

impl GitHubClient {
    /// `GET /repos/{owner}/{repo}/commits/{ref}`: the commit `git_ref` names. For a tag,
    /// annotated or not, the tagged commit (GitHub peels the tag object).
    pub async fn commit_of(
        &self,
        repo: &RepoName,
        git_ref: &str,
    ) -> Result<crate::model::CommitSha, GitHubError> {
        let path = format!("/repos/{repo}/commits/{}", path_segment(git_ref));
        let response = self
            .send("get_commit", Method::GET, &path, None::<&()>)
            .await?;
        let commit: Commit = response.json().await.map_err(GitHubError::Decode)?;
        Ok(commit.sha)
    }
}

/// `git_ref` as one path segment: a tag may hold `#`, `?` or `%`, which would otherwise
/// end or change the path (`/` stays: GitHub reads refs with slashes in this position).
fn path_segment(git_ref: &str) -> String {
    let mut encoded = String::with_capacity(git_ref.len());
    for byte in git_ref.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
