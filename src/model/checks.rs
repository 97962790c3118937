//! The CI gate's vocabulary: a check result as GitHub reports it (a check run or a commit
//! status), which checks an environment requires, and the rule that turns the results known
//! for a commit into a verdict. The rule lives here, below every layer, because three of
//! them apply it: the guide to a check event, the store when results land in a transaction,
//! and the dashboard when it shows what a wait still waits for.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::policy::Policy;

/// Where a result came from: the Checks API or the older commit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A check run; its name is the check's name.
    Run,
    /// A commit status; its context is the check's name.
    Status,
    /// A check suite with runs, pending until it completes: `"all"` waits for it, since
    /// its later runs (jobs that need earlier ones) may not exist yet.
    Suite,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Status => "status",
            Self::Suite => "suite",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "status" => Self::Status,
            "suite" => Self::Suite,
            _ => Self::Run,
        }
    }
}

/// How one check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Passed,
    Failed,
    Pending,
}

impl CheckState {
    /// A check run's state from its `status` and `conclusion`: it passes on `success`,
    /// `neutral` or `skipped`, fails on `failure`, `cancelled`, `timed_out`,
    /// `action_required`, and is pending otherwise (not completed, `stale`, or a conclusion
    /// GitHub adds later).
    pub fn of_run(status: &str, conclusion: Option<&str>) -> Self {
        if status != "completed" {
            return Self::Pending;
        }
        match conclusion {
            Some("success" | "neutral" | "skipped") => Self::Passed,
            Some("failure" | "cancelled" | "timed_out" | "action_required") => Self::Failed,
            _ => Self::Pending,
        }
    }

    /// A commit status's state: `success` passes, `failure` and `error` fail, `pending`
    /// (or anything else) is pending.
    pub fn of_status(state: &str) -> Self {
        match state {
            "success" => Self::Passed,
            "failure" | "error" => Self::Failed,
            _ => Self::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "passed" => Self::Passed,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// Where a check's result comes from. Two workflows (two check suites of GitHub Actions),
/// or two CI apps, may each report a check run of the same name: each is a source of its
/// own. Within a source the newest run of a name counts (a re-run replaces its own run);
/// across sources the worst counts, so one source's success never hides another's failure.
/// A check run's source is its app and its check suite, as both its event and GitHub's
/// listing name them; a commit status has none (GitHub keeps the latest status of each
/// context, whoever set it), nor has a run whose payload names neither app nor suite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckSource(String);

/// Characters of an app's slug kept in a source: GitHub's are far shorter.
const MAX_SLUG: usize = 100;

impl CheckSource {
    /// A check run's or check suite's source: its app (by id, else by slug) and its suite.
    pub fn of_app(app_id: Option<u64>, app_slug: Option<&str>, suite_id: Option<u64>) -> Self {
        let app = match (app_id, app_slug) {
            (Some(id), _) => id.to_string(),
            (None, Some(slug)) => slug.chars().take(MAX_SLUG).collect(),
            (None, None) if suite_id.is_none() => return Self::default(),
            (None, None) => "?".to_owned(),
        };
        let suite = suite_id.map_or_else(|| "?".to_owned(), |id| id.to_string());
        Self(format!("app {app} suite {suite}"))
    }

    /// As stored; `""` for no source.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A source as [`Self::as_str`] gave it.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }
}

/// One check's latest result on one commit, from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub kind: CheckKind,
    /// The check run's name or the status's context.
    pub name: String,
    /// Which app and check suite reported it (see [`CheckSource`]).
    #[serde(default)]
    pub source: CheckSource,
    pub state: CheckState,
    /// GitHub's word for it (`success`, `in_progress`, `timed_out`…), for people.
    pub detail: String,
    /// Where the check's output is (`html_url`, `details_url` or `target_url`).
    pub url: Option<String>,
    /// GitHub's id of the run, suite or status: a re-run has a larger one, so within a
    /// source an older result that arrives late never replaces a newer one.
    pub github_id: u64,
}

impl CheckResult {
    /// How a check suite is named among the checks: by its app.
    pub fn suite_name(app: Option<&str>) -> String {
        format!("suite of {}", app.unwrap_or("an app"))
    }
}

/// Which checks an environment waits for. "none" is the absence of a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Required {
    /// Every check run and status context reported on the commit, and at least one.
    All,
    /// These check names (check runs or status contexts), each of which must report.
    Named(Vec<String>),
}

impl std::fmt::Display for Required {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all checks"),
            Self::Named(names) => f.write_str(&names.join(", ")),
        }
    }
}

/// What the results known for a commit say about a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every required check passed.
    Green,
    /// A required check failed: no deployment.
    Failed(CheckResult),
    /// Still waiting for these check names.
    Pending(Vec<String>),
}

impl Required {
    /// Applies the gate to the results known for a commit: one per kind, name and source,
    /// of which the worst counts — a name fails if any source's result of it failed, and
    /// is pending while any is.
    pub fn verdict(&self, results: &[CheckResult]) -> Verdict {
        // A failure decides at once: no deployment will come of this commit.
        let required = |r: &&CheckResult| match self {
            Self::All => true,
            Self::Named(names) => names.contains(&r.name),
        };
        if let Some(failed) = results
            .iter()
            .filter(required)
            .find(|r| r.state == CheckState::Failed)
        {
            return Verdict::Failed(failed.clone());
        }
        let mut pending: Vec<String> = match self {
            Self::All => results
                .iter()
                .filter(|r| r.state == CheckState::Pending)
                .map(|r| r.name.clone())
                .collect(),
            Self::Named(names) => names
                .iter()
                .filter(|name| {
                    let mine: Vec<&CheckResult> =
                        results.iter().filter(|r| &r.name == *name).collect();
                    mine.is_empty() || mine.iter().any(|r| r.state != CheckState::Passed)
                })
                .cloned()
                .collect(),
        };
        if *self == Self::All && results.is_empty() {
            pending.push("any check to report".to_owned());
        }
        pending.dedup();
        if pending.is_empty() {
            Verdict::Green
        } else {
            Verdict::Pending(pending)
        }
    }
}

/// A merge that deploys only once its checks are green.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub required: Required,
    pub timeout: Duration,
    /// `Latest`: a newer merge into the branch supersedes this wait.
    pub policy: Policy,
    /// When the pull request was merged, which orders merges whatever order their
    /// deliveries arrive in.
    pub merged_at: Option<crate::model::MergedAt>,
}

/// A check result a webhook event reported for a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub repo: crate::model::RepoName,
    pub sha: crate::model::CommitSha,
    /// `None` for a `check_suite` event: it says only that the suite's runs changed, which
    /// a read of the commit's checks then tells.
    pub result: Option<CheckResult>,
    pub installation: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: CheckKind, name: &str, state: CheckState) -> CheckResult {
        CheckResult {
            kind,
            name: name.into(),
            state,
            detail: state.as_str().into(),
            url: Some(format!("https://ci.example/{name}")),
            source: CheckSource::default(),
            github_id: 1,
        }
    }

    fn named(names: &[&str]) -> Required {
        Required::Named(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn check_runs_and_statuses_map_to_the_documented_states() {
        for conclusion in ["success", "neutral", "skipped"] {
            assert_eq!(
                CheckState::of_run("completed", Some(conclusion)),
                CheckState::Passed
            );
        }
        for conclusion in ["failure", "cancelled", "timed_out", "action_required"] {
            assert_eq!(
                CheckState::of_run("completed", Some(conclusion)),
                CheckState::Failed
            );
        }
        assert_eq!(
            CheckState::of_run("completed", Some("stale")),
            CheckState::Pending
        );
        assert_eq!(CheckState::of_run("in_progress", None), CheckState::Pending);
        assert_eq!(CheckState::of_status("success"), CheckState::Passed);
        assert_eq!(CheckState::of_status("error"), CheckState::Failed);
        assert_eq!(CheckState::of_status("failure"), CheckState::Failed);
        assert_eq!(CheckState::of_status("pending"), CheckState::Pending);
    }

    #[test]
    fn named_checks_wait_for_every_name_and_ignore_the_others() {
        use CheckState::{Failed, Passed, Pending};
        let gate = named(&["test", "lint"]);
        assert_eq!(
            gate.verdict(&[]),
            Verdict::Pending(vec!["test".into(), "lint".into()])
        );
        let test = result(CheckKind::Run, "test", Passed);
        assert_eq!(
            gate.verdict(std::slice::from_ref(&test)),
            Verdict::Pending(vec!["lint".into()])
        );
        let lint = result(CheckKind::Status, "lint", Passed);
        let other = result(CheckKind::Run, "docs", Failed);
        assert_eq!(
            gate.verdict(&[test.clone(), lint.clone(), other]),
            Verdict::Green
        );
        let lint_running = result(CheckKind::Status, "lint", Pending);
        assert_eq!(
            gate.verdict(&[test.clone(), lint_running]),
            Verdict::Pending(vec!["lint".into()])
        );
        let lint_failed = result(CheckKind::Run, "lint", Failed);
        assert_eq!(
            gate.verdict(&[test, lint_failed.clone()]),
            Verdict::Failed(lint_failed)
        );
    }

    #[test]
    fn a_name_reported_by_two_sources_is_as_bad_as_the_worse_of_them() {
        use CheckState::{Failed, Passed, Pending};
        let from = |suite, state| CheckResult {
            source: CheckSource::of_app(Some(15368), None, Some(suite)),
            ..result(CheckKind::Run, "test", state)
        };
        let gate = named(&["test"]);
        let failed = from(1, Failed);
        assert_eq!(
            gate.verdict(&[failed.clone(), from(2, Passed)]),
            Verdict::Failed(failed.clone())
        );
        assert_eq!(
            gate.verdict(&[from(2, Passed), failed.clone()]),
            Verdict::Failed(failed)
        );
        assert_eq!(
            gate.verdict(&[from(1, Pending), from(2, Passed)]),
            Verdict::Pending(vec!["test".into()])
        );
        assert_eq!(
            Required::All.verdict(&[from(1, Pending), from(2, Pending)]),
            Verdict::Pending(vec!["test".into()])
        );
        assert_eq!(
            gate.verdict(&[from(1, Passed), from(2, Passed)]),
            Verdict::Green
        );
    }

    #[test]
    fn a_source_is_an_app_and_a_suite_and_nothing_when_neither_is_known() {
        assert_eq!(
            CheckSource::of_app(Some(15368), Some("github-actions"), Some(7)).as_str(),
            "app 15368 suite 7"
        );
        assert_eq!(
            CheckSource::of_app(None, Some("other-ci"), None).as_str(),
            "app other-ci suite ?"
        );
        assert_eq!(
            CheckSource::of_app(None, None, Some(7)).as_str(),
            "app ? suite 7"
        );
        assert_eq!(
            CheckSource::of_app(None, None, None),
            CheckSource::default()
        );
        let long = "s".repeat(500);
        assert_eq!(
            CheckSource::of_app(None, Some(&long), Some(1))
                .as_str()
                .len(),
            "app  suite 1".len() + MAX_SLUG
        );
    }

    #[test]
    fn all_needs_at_least_one_check_and_every_reported_one_green() {
        use CheckState::{Failed, Passed, Pending};
        assert!(matches!(Required::All.verdict(&[]), Verdict::Pending(_)));
        let a = result(CheckKind::Run, "a", Passed);
        let b = result(CheckKind::Status, "b", Pending);
        assert_eq!(
            Required::All.verdict(&[a.clone(), b]),
            Verdict::Pending(vec!["b".into()])
        );
        assert_eq!(
            Required::All.verdict(std::slice::from_ref(&a)),
            Verdict::Green
        );
        let c = result(CheckKind::Run, "c", Failed);
        assert_eq!(Required::All.verdict(&[a, c.clone()]), Verdict::Failed(c));
    }
}
