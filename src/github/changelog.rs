//! What a deploy contains, read with the compare API (`GET /repos/{owner}/{repo}/compare/
//! {base}...{head}`): the commits from the environment's previous success (`base`) to the
//! deployed commit (`head`), oldest first, page by page.
//!
//! GitHub's answer says how the two relate (`status`): `ahead` lists what the deploy adds;
//! `identical` adds nothing; `behind` (a rollback) lists nothing, so the comparison is read
//! the other way round, listing what the deploy removes; `diverged` (the previous commit
//! is not an ancestor: a force-push, another branch) lists what was added since the merge
//! base and is told as rewritten history; a 404 (no common ancestor, or the previous commit
//! gone) too, with nothing listed. Bounded: [`STORED_COMMITS`] commits, [`MAX_PAGES`] pages,
//! [`MAX_PAGE_BYTES`] per page (an answer past it is told as failed, not read further).

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::changelog::{Change, ChangelogState, STORED_COMMITS};
use crate::model::{Changelog, RepoName};

/// Commits asked for per page (GitHub's most).
const PER_PAGE: usize = 100;
/// Pages read at most: enough for [`STORED_COMMITS`].
const MAX_PAGES: usize = STORED_COMMITS.div_ceil(PER_PAGE);
/// The most one page's body may weigh: a compare's answer carries its files' patches too.
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    status: String,
    #[serde(default)]
    total_commits: u64,
    #[serde(default)]
    commits: Vec<Commit>,
}

#[derive(Deserialize)]
struct Commit {
    sha: String,
    commit: CommitDetail,
    author: Option<User>,
}

#[derive(Deserialize)]
struct CommitDetail {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

/// One direction's reading: GitHub's status, its count of commits, those listed.
struct Listing {
    status: String,
    total: u64,
    commits: Vec<Change>,
}

impl GitHubClient {
    /// The changelog of a deploy of `head` after `base`. `Err` only for what may pass (and
    /// is retried); what GitHub refuses or answers unreadably is a changelog that says so.
    pub async fn changelog(
        &self,
        repo: &RepoName,
        base: &str,
        head: &str,
    ) -> Result<Changelog, GitHubError> {
        let forward = match self.list_commits(repo, base, head).await {
            Err(GitHubError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                return Ok(Changelog::empty(
                    ChangelogState::UnrelatedHistory,
                    base.to_owned(),
                ));
            }
            other => other?,
        };
        let forward = match forward {
            Ok(listing) => listing,
            Err(why) => return Ok(failed(base, why)),
        };
        let (listing, backwards) = if forward.status == "behind" {
            match self.list_commits(repo, head, base).await? {
                Ok(listing) => (listing, true),
                Err(why) => return Ok(failed(base, why)),
            }
        } else {
            (forward, false)
        };
        let total = listing.total.max(listing.commits.len() as u64);
        let state = if listing.status == "diverged" {
            ChangelogState::UnrelatedHistory
        } else if total > listing.commits.len() as u64 {
            ChangelogState::TooMany
        } else {
            ChangelogState::Listed
        };
        Ok(Changelog {
            state,
            base: base.to_owned(),
            backwards,
            total,
            commits: listing.commits,
            detail: String::new(),
        })
    }

    /// The commits from `base` to `head`, at most [`STORED_COMMITS`]; the inner `Err` says
    /// why an answer could not be read.
    async fn list_commits(
        &self,
        repo: &RepoName,
        base: &str,
        head: &str,
    ) -> Result<Result<Listing, String>, GitHubError> {
        let mut listing = Listing {
            status: String::new(),
            total: 0,
            commits: Vec::new(),
        };
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{repo}/compare/{base}...{head}?per_page={PER_PAGE}&page={page}");
            let response = self
                .send("compare_commits", Method::GET, &path, None::<&()>)
                .await?;
            let next = super::compare::has_next(&response);
            let body = match read_capped(response).await? {
                Some(body) => body,
                None => {
                    return Ok(Err(format!(
                        "a page of the comparison is over {MAX_PAGE_BYTES} bytes"
                    )));
                }
            };
            let page: Page = match serde_json::from_slice(&body) {
                Ok(page) => page,
                Err(err) => {
                    return Ok(Err(format!("GitHub's comparison could not be read: {err}")));
                }
            };
            if !page.status.is_empty() {
                listing.status = page.status;
            }
            listing.total = listing.total.max(page.total_commits);
            let room = STORED_COMMITS - listing.commits.len();
            let listed = page.commits.len();
            listing.commits.extend(
                page.commits
                    .into_iter()
                    .take(room)
                    .map(|c| Change::new(c.sha, &c.commit.message, c.author.map(|u| u.login))),
            );
            if !next || listed == 0 || listing.commits.len() >= STORED_COMMITS {
                break;
            }
        }
        Ok(Ok(listing))
    }
}

fn failed(base: &str, why: String) -> Changelog {
    let mut log = Changelog::empty(ChangelogState::Failed, base.to_owned());
    log.detail = why;
    log
}

/// The body, unless it is longer than [`MAX_PAGE_BYTES`] (`None`).
async fn read_capped(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, GitHubError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(GitHubError::Transport)? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
