//! Reading a commit's checks: `GET …/commits/{sha}/check-suites` (suites still running),
//! `GET …/commits/{sha}/check-runs` (the latest run of each name in each suite) and
//! `GET …/commits/{sha}/status` (the latest status of each context), each paginated,
//! turned into the gate's [`CheckResult`]s. The outbox worker calls this for the merges
//! that wait on their checks; needs the Checks and Commit statuses read permissions.

use reqwest::Method;
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::{CheckKind, CheckResult, CheckSource, CheckState, RepoName};

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
    /// With `check_suite`, the run's source, named as its `check_run` event names it.
    app: Option<ListedApp>,
    check_suite: Option<ListedSuiteId>,
}

#[derive(Deserialize)]
struct ListedSuiteId {
    id: u64,
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
    app: Option<ListedApp>,
}

#[derive(Deserialize)]
struct ListedApp {
    id: Option<u64>,
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
        let base = format!("/repos/{repo}/commits/{sha}");
        let mut results = self
            .read_pages::<SuitesPage>("list_check_suites", &format!("{base}/check-suites"))
            .await?;
        results.extend(
            self.read_pages::<CheckRunsPage>("list_check_runs", &format!("{base}/check-runs"))
                .await?,
        );
        results.extend(
            self.read_pages::<CombinedStatus>("get_combined_status", &format!("{base}/status"))
                .await?,
        );
        Ok(results)
    }

    /// Every page of one listing, up to [`MAX_PAGES`].
    async fn read_pages<P: Page>(
        &self,
        endpoint: &'static str,
        path: &str,
    ) -> Result<Vec<CheckResult>, GitHubError> {
        let mut results = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!("{path}?per_page={PER_PAGE}&page={page}");
            let response = self.send(endpoint, Method::GET, &url, None::<&()>).await?;
            let listed: P = response.json().await.map_err(GitHubError::Decode)?;
            let (count, total) = (listed.len(), listed.total());
            results.extend(listed.into_results());
            if count < PER_PAGE || page * PER_PAGE >= total {
                return Ok(results);
            }
        }
        note_unread(&mut results, P::WHAT);
        Ok(results)
    }
}

/// A page of one of the three listings.
trait Page: serde::de::DeserializeOwned {
    /// What it lists, for a message.
    const WHAT: &'static str;
    /// How many items this page holds, before any is left out.
    fn len(&self) -> usize;
    /// How many the listing holds in all.
    fn total(&self) -> usize;
    fn into_results(self) -> Vec<CheckResult>;
}

impl Page for SuitesPage {
    const WHAT: &'static str = "check suites";
    fn len(&self) -> usize {
        self.check_suites.len()
    }
    fn total(&self) -> usize {
        self.total_count
    }
    fn into_results(self) -> Vec<CheckResult> {
        // A suite with no runs stays `queued` forever: it is no check.
        self.check_suites
            .into_iter()
            .filter(|suite| suite.latest_check_runs_count > 0)
            .map(|suite| {
                let status = suite.status.unwrap_or_else(|| "queued".to_owned());
                let source = CheckSource::of_app(
                    suite.app.as_ref().and_then(|a| a.id),
                    suite.app.as_ref().and_then(|a| a.slug.as_deref()),
                    Some(suite.id),
                );
                let app = suite.app.and_then(|a| a.name.or(a.slug));
                CheckResult {
                    kind: CheckKind::Suite,
                    name: CheckResult::suite_name(app.as_deref()),
                    source,
                    state: if status == "completed" {
                        CheckState::Passed
                    } else {
                        CheckState::Pending
                    },
                    detail: suite.conclusion.unwrap_or(status),
                    url: None,
                    github_id: suite.id,
                }
            })
            .collect()
    }
}

impl Page for CheckRunsPage {
    const WHAT: &'static str = "check runs";
    fn len(&self) -> usize {
        self.check_runs.len()
    }
    fn total(&self) -> usize {
        self.total_count
    }
    fn into_results(self) -> Vec<CheckResult> {
        self.check_runs
            .into_iter()
            .map(|run| CheckResult {
                kind: CheckKind::Run,
                source: CheckSource::of_app(
                    run.app.as_ref().and_then(|a| a.id),
                    run.app.as_ref().and_then(|a| a.slug.as_deref()),
                    run.check_suite.map(|s| s.id),
                ),
                state: CheckState::of_run(&run.status, run.conclusion.as_deref()),
                detail: run.conclusion.unwrap_or(run.status),
                url: run.html_url.or(run.details_url),
                name: run.name,
                github_id: run.id,
            })
            .collect()
    }
}

impl Page for CombinedStatus {
    const WHAT: &'static str = "commit statuses";
    fn len(&self) -> usize {
        self.statuses.len()
    }
    fn total(&self) -> usize {
        self.total_count
    }
    fn into_results(self) -> Vec<CheckResult> {
        self.statuses
            .into_iter()
            .map(|status| CheckResult {
                kind: CheckKind::Status,
                state: CheckState::of_status(&status.state),
                detail: status.state,
                url: status.target_url.filter(|u| !u.is_empty()),
                name: status.context,
                source: CheckSource::default(),
                github_id: status.id,
            })
            .collect()
    }
}

/// Pages were left unread: a pending result that says so.
fn note_unread(results: &mut Vec<CheckResult>, what: &str) {
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
        source: CheckSource::default(),
        github_id: 1,
    });
}
