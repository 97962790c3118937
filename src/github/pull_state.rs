//! `GET /repos/{owner}/{repo}/pulls/{number}`, read for one field: whether the pull request
//! is still open. The preview worker asks it for pull requests whose previews are alive, to
//! close those whose `closed` delivery never came. (The lead's `pulls` module owns the rest
//! of the pull requests API.)

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::RepoName;

#[derive(Deserialize)]
struct PullState {
    /// `open` or `closed`.
    state: String,
}

impl GitHubClient {
    /// Whether pull request `number` of `repo` is open. One gone (404: deleted, or the
    /// repository with it) is not.
    pub async fn pull_request_is_open(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<bool, GitHubError> {
        let path = format!("/repos/{repo}/pulls/{number}");
        match self
            .send("get_pull_request", Method::GET, &path, None::<&()>)
            .await
        {
            Ok(response) => {
                let pull: PullState = response.json().await.map_err(GitHubError::Decode)?;
                Ok(pull.state == "open")
            }
            Err(GitHubError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(false),
            Err(err) => Err(err),
        }
    }
}
