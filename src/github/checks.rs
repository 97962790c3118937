//! Reading a commit's checks: `GET …/commits/{sha}/check-suites` (suites still running),
//! `GET …/commits/{sha}/check-runs` (the latest run of each name) and
//! `GET …/commits/{sha}/status` (the latest status of each context), each paginated,
//! turned into the gate's [`CheckResult`]s. The outbox worker calls this for the merges
//! that wait on their checks; needs the Checks and Commit statuses read permissions.

use reqwest::Method;
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::{CheckKind, CheckResult, CheckState, RepoName};

/// Results per page: the API's maximum.
const PER_PAGE: usize = 100;
/// Pages read at most per kind: a thousand checks on one commit is far past any real CI.
const MAX_PAGES: usize = 10;

#[derive(Deserialize)]
struct CheckRunsPage {
    total_count: usize,
    check_runs: Vec<ListedRun>,
}

#[derive(Deserialize)]
struct ListedRun {
    id: u64,
    name: String,
    status: String,
    conclusion: Option<String>,
    html_url: Option<String>,
    details_url: Option<String>,
}

#[derive(Deserialize)]
struct SuitesPage {
    total_count: usize,
    check_suites: Vec<ListedSuite>,
}

#[derive(Deserialize)]
struct ListedSuite {
    id: u64,
    status: Option<String>,
    conclusion: Option<String>,
    #[serde(default)]
    latest_check_runs_count: u64,
    app: Option<SuiteApp>,
}

#[derive(Deserialize)]
struct SuiteApp {
    name: Option<String>,
    slug: Option<String>,
}

#[derive(Deserialize)]
struct CombinedStatus {
    #[serde(default)]
    total_count: usize,
    statuses: Vec<ListedStatus>,
}

#[derive(Deserialize)]
struct ListedStatus {
    id: u64,
    context: String,
    state: String,
    target_url: Option<String>,
}

impl GitHubClient {
    /// Every check run (its latest attempt), commit status context, and check suite with
    /// runs on `sha`. More than [`MAX_PAGES`] pages of one kind add a pending result: a
    /// gate on `"all"` must not pass on what was left unread.
    pub async fn read_checks(
        &self,
        repo: &RepoName,
        sha: &str,
    ) -> Result<Vec<CheckResult>, GitHubError> {
        let mut results = Vec::new();
        let mut complete = false;
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{repo}/commits/{sha}/check-suites?per_page={PER_PAGE}&page={page}");
            let response = self
                .send("list_check_suites", Method::GET, &path, None::<&()>)
                .await?;
            let listed: SuitesPage = response.json().await.map_err(GitHubError::Decode)?;
            let last =
                listed.check_suites.len() < PER_PAGE || page * PER_PAGE >= listed.total_count;
            // A suite with no runs stays `queued` forever: it is no check.
            results.extend(
                listed
                    .check_suites
                    .into_iter()
                    .filter(|suite| suite.latest_check_runs_count > 0)
                    .map(|suite| {
                        let status = suite.status.unwrap_or_else(|| "queued".to_owned());
                        let app = suite.app.and_then(|a| a.name.or(a.slug));
                        CheckResult {
                            kind: CheckKind::Suite,
                            name: CheckResult::suite_name(app.as_deref()),
                            state: if status == "completed" {
                                CheckState::Passed
                            } else {
                                CheckState::Pending
                            },
                            detail: suite.conclusion.unwrap_or(status),
                            url: None,
                            source_id: suite.id,
                        }
                    }),
            );
            if last {
                complete = true;
                break;
            }
        }
        note_unread(&mut results, complete, "check suites");
        let mut complete = false;
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{repo}/commits/{sha}/check-runs?per_page={PER_PAGE}&page={page}");
            let response = self
                .send("list_check_runs", Method::GET, &path, None::<&()>)
                .await?;
            let listed: CheckRunsPage = response.json().await.map_err(GitHubError::Decode)?;
            let last = listed.check_runs.len() < PER_PAGE || page * PER_PAGE >= listed.total_count;
            results.extend(listed.check_runs.into_iter().map(|run| CheckResult {
                kind: CheckKind::Run,
                state: CheckState::of_run(&run.status, run.conclusion.as_deref()),
                detail: run.conclusion.unwrap_or(run.status),
                url: run.html_url.or(run.details_url),
                name: run.name,
                source_id: run.id,
            }));
            if last {
                complete = true;
                break;
            }
        }
        note_unread(&mut results, complete, "check runs");
        let mut complete = false;
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{repo}/commits/{sha}/status?per_page={PER_PAGE}&page={page}");
            let response = self
                .send("get_combined_status", Method::GET, &path, None::<&()>)
                .await?;
            let combined: CombinedStatus = response.json().await.map_err(GitHubError::Decode)?;
            let last =
                combined.statuses.len() < PER_PAGE || page * PER_PAGE >= combined.total_count;
            results.extend(combined.statuses.into_iter().map(|status| CheckResult {
                kind: CheckKind::Status,
                state: CheckState::of_status(&status.state),
                detail: status.state,
                url: status.target_url.filter(|u| !u.is_empty()),
                name: status.context,
                source_id: status.id,
            }));
            if last {
                complete = true;
                break;
            }
        }
        note_unread(&mut results, complete, "commit statuses");
        Ok(results)
    }
}

/// When pages were left unread, a pending result that says so.
fn note_unread(results: &mut Vec<CheckResult>, complete: bool, what: &str) {
    if complete {
        return;
    }
    tracing::warn!(
        "more than {} {what} on one commit: the rest were not read",
        MAX_PAGES * PER_PAGE
    );
    results.push(CheckResult {
        kind: CheckKind::Run,
        name: format!("(more than {} {what}, not all read)", MAX_PAGES * PER_PAGE),
        state: CheckState::Pending,
        detail: "unread".to_owned(),
        url: None,
        source_id: 1,
    });
}
