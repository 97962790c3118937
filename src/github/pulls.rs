//! What comment commands read and write on a pull request: the pull request itself
//! (`GET …/pulls/{n}`: its state, head and whether the head is a fork's), a branch's head
//! commit, reactions to a comment, and deployhook's one reply (`POST …/issues/{n}/comments`,
//! then `PATCH …/issues/comments/{id}` as news comes). Needs the Pull requests read and the
//! Issues (or Pull requests) write permissions.

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::{CommitSha, RepoName};

/// A pull request as a command needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullInfo {
    pub open: bool,
    pub head_sha: CommitSha,
    pub head_ref: String,
    /// The repository the head lives in; `None` when that fork was deleted.
    pub head_repo: Option<String>,
    /// GitHub's test merge (open) or the merge commit (merged).
    pub merge_commit_sha: Option<CommitSha>,
}

impl PullInfo {
    /// Whether the head lives anywhere but `base`: a fork's code (or a deleted fork's).
    pub fn from_fork(&self, base: &RepoName) -> bool {
        self.head_repo
            .as_deref()
            .is_none_or(|head| !head.eq_ignore_ascii_case(base.as_ref()))
    }
}

#[derive(Deserialize)]
struct PullBody {
    state: String,
    head: Head,
    merge_commit_sha: Option<CommitSha>,
}

#[derive(Deserialize)]
struct Head {
    sha: CommitSha,
    #[serde(rename = "ref")]
    git_ref: String,
    repo: Option<HeadRepo>,
}

#[derive(Deserialize)]
struct HeadRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct BranchBody {
    commit: BranchCommit,
}

#[derive(Deserialize)]
struct BranchCommit {
    sha: CommitSha,
}

#[derive(Deserialize)]
struct CreatedComment {
    id: u64,
}

impl GitHubClient {
    /// `GET /repos/{owner}/{repo}/pulls/{number}`.
    pub async fn pull_request(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<PullInfo, GitHubError> {
        let path = format!("/repos/{repo}/pulls/{number}");
        let response = self
            .send("get_pull_request", Method::GET, &path, None::<&()>)
            .await?;
        let body: PullBody = response.json().await.map_err(GitHubError::Decode)?;
        Ok(PullInfo {
            open: body.state == "open",
            head_sha: body.head.sha,
            head_ref: body.head.git_ref,
            head_repo: body.head.repo.map(|r| r.full_name),
            merge_commit_sha: body.merge_commit_sha,
        })
    }

    /// The commit at the head of `branch`, or `None` when the repository has no such branch.
    pub async fn branch_head(
        &self,
        repo: &RepoName,
        branch: &str,
    ) -> Result<Option<CommitSha>, GitHubError> {
        // The name was checked to hold only letters, digits, `-_./`: safe in a path.
        let path = format!("/repos/{repo}/branches/{branch}");
        match self
            .send("get_branch", Method::GET, &path, None::<&()>)
            .await
        {
            Ok(response) => {
                let body: BranchBody = response.json().await.map_err(GitHubError::Decode)?;
                Ok(Some(body.commit.sha))
            }
            Err(GitHubError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `POST /repos/{owner}/{repo}/issues/comments/{id}/reactions`: GitHub answers 200
    /// for a reaction already there, so sending it twice adds one.
    pub async fn react(
        &self,
        repo: &RepoName,
        comment: u64,
        content: &str,
    ) -> Result<(), GitHubError> {
        let path = format!("/repos/{repo}/issues/comments/{comment}/reactions");
        let body = serde_json::json!({ "content": content });
        self.send("create_reaction", Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments`: the new comment's id.
    pub async fn comment(
        &self,
        repo: &RepoName,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let path = format!("/repos/{repo}/issues/{number}/comments");
        let body = serde_json::json!({ "body": body });
        let response = self
            .send("create_comment", Method::POST, &path, Some(&body))
            .await?;
        let created: CreatedComment = response.json().await.map_err(GitHubError::Decode)?;
        Ok(created.id)
    }

    /// `PATCH /repos/{owner}/{repo}/issues/comments/{id}`; `false` when the comment is
    /// gone (someone deleted deployhook's reply).
    pub async fn edit_comment(
        &self,
        repo: &RepoName,
        comment: u64,
        body: &str,
    ) -> Result<bool, GitHubError> {
        let path = format!("/repos/{repo}/issues/comments/{comment}");
        let body = serde_json::json!({ "body": body });
        match self
            .send("update_comment", Method::PATCH, &path, Some(&body))
            .await
        {
            Ok(_) => Ok(true),
            Err(GitHubError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(false),
            Err(err) => Err(err),
        }
    }
}
