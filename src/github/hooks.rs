//! A webhook's recent deliveries: list a hook's delivery attempts (cursor-paginated) and ask
//! GitHub to send one again. What `deployhook redeliver` catches up with after downtime.

use std::time::SystemTime;

use reqwest::Method;
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::RepoName;

/// Deliveries asked for per page (GitHub's maximum).
const PAGE_SIZE: u32 = 100;
/// Pages read at most, so a busy hook cannot keep the command going.
const MAX_PAGES: usize = 50;

/// Whose deliveries to read.
#[derive(Debug, Clone)]
pub enum Hook {
    Repository {
        repo: RepoName,
        id: u64,
    },
    Organization {
        org: String,
        id: u64,
    },
    /// The GitHub App's own webhook (App mode).
    App,
}

impl Hook {
    fn path(&self) -> String {
        match self {
            Self::Repository { repo, id } => format!("/repos/{repo}/hooks/{id}"),
            Self::Organization { org, id } => format!("/orgs/{org}/hooks/{id}"),
            Self::App => "/app/hook".to_owned(),
        }
    }

    /// The hook id deliveries carry in `X-GitHub-Hook-ID`, when known.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Repository { id, .. } | Self::Organization { id, .. } => Some(*id),
            Self::App => None,
        }
    }

    fn client(&self, github: &GitHubClient) -> GitHubClient {
        match self {
            Self::App => github.as_app(),
            _ => github.clone(),
        }
    }
}

/// One delivery attempt, as GitHub lists it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt's id: what a redelivery names.
    pub id: u64,
    /// `X-GitHub-Delivery`, shared by a delivery and its redeliveries.
    pub guid: String,
    pub delivered_at: String,
    #[serde(default)]
    pub redelivery: bool,
    /// `OK`, or what went wrong ("Invalid HTTP Response: 503", "failed to connect to host").
    #[serde(default)]
    pub status: String,
    /// The answer's status; 0 without an answer.
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
}

impl Attempt {
    /// Whether GitHub got a 2xx answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    fn at(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.delivered_at).ok()
    }
}

impl GitHubClient {
    /// Attempts made since `since`, newest first, following GitHub's cursor pagination.
    pub async fn hook_deliveries(
        &self,
        hook: &Hook,
        since: SystemTime,
    ) -> Result<Vec<Attempt>, GitHubError> {
        let github = hook.client(self);
        let mut attempts = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!("{}/deliveries?per_page={PAGE_SIZE}", hook.path());
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let response = github
                .send("hook_deliveries", Method::GET, &path, None::<&()>)
                .await?;
            cursor = next_cursor(response.headers());
            let page: Vec<Attempt> = response.json().await.map_err(GitHubError::Decode)?;
            let reached_since = page.iter().any(|a| a.at().is_some_and(|at| at < since));
            attempts.extend(
                page.into_iter()
                    .filter(|a| a.at().is_none_or(|at| at >= since)),
            );
            if reached_since || cursor.is_none() {
                return Ok(attempts);
            }
        }
        tracing::warn!(
            "stopped after {MAX_PAGES} pages of deliveries ({} attempts); run again with a \
             shorter --since to see older ones",
            attempts.len()
        );
        Ok(attempts)
    }

    /// Asks GitHub to send attempt `id` again.
    pub async fn redeliver(&self, hook: &Hook, id: u64) -> Result<(), GitHubError> {
        let path = format!("{}/deliveries/{id}/attempts", hook.path());
        hook.client(self)
            .send("redeliver", Method::POST, &path, None::<&()>)
            .await
            .map(drop)
    }
}

/// The `cursor` of the `rel="next"` link, if there is a next page.
fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let next = link.split(',').find(|part| part.contains("rel=\"next\""))?;
    let url = next.trim().strip_prefix('<')?.split('>').next()?;
    let query = url.split_once('?')?.1;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == "cursor")
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_cursor_comes_from_the_link_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            "<https://api.github.com/repos/a/b/hooks/1/deliveries?per_page=100&cursor=v1_9>; rel=\"next\", <https://api.github.com/x?cursor=v1_0>; rel=\"prev\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_cursor(&headers).as_deref(), Some("v1_9"));
        headers.insert(
            reqwest::header::LINK,
            "<https://api.github.com/x?cursor=v1_0>; rel=\"prev\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_cursor(&headers), None);
    }
}
