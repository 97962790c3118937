//! The CI gate's handler: `check_run`, `check_suite` and `status` events become check
//! reports on a commit, recorded whether or not a merge waits on that commit yet (a check
//! may finish before the merge's own delivery arrives). Whether a wait is now green is the
//! gate's rule ([`crate::model::Required::verdict`]), applied where the report is recorded.

use crate::config::EnvironmentConfig;
use crate::guide::Ignored;
use crate::model::{CheckKind, CheckReport, CheckResult, CheckSource, CheckState, RepoName};
use crate::webhook::events::{CheckRunEvent, CheckSuiteEvent, Repository, StatusEvent};

/// A check run changed: its latest result on its commit.
pub fn check_run_reported(
    event: &CheckRunEvent,
    environments: &[EnvironmentConfig],
) -> Result<CheckReport, Ignored> {
    let run = &event.check_run;
    let repo = gated_repository(event.repository.as_ref(), environments, "check run")?;
    let suite = run.check_suite.as_ref();
    let app = run
        .app
        .as_ref()
        .or_else(|| suite.and_then(|s| s.app.as_ref()));
    Ok(CheckReport {
        repo,
        sha: run.head_sha.clone(),
        result: Some(CheckResult {
            kind: CheckKind::Run,
            name: run.name.clone(),
            source: CheckSource::of_app(
                app.map(|a| a.id),
                app.and_then(|a| a.slug.as_deref()),
                suite.map(|s| s.id),
            ),
            state: CheckState::of_run(&run.status, run.conclusion.as_deref()),
            detail: run.conclusion.clone().unwrap_or_else(|| run.status.clone()),
            url: run.html_url.clone().or_else(|| run.details_url.clone()),
            github_id: run.id,
        }),
        installation: event.installation.as_ref().map(|i| i.id),
    })
}

/// A commit status was set: the latest result of its context.
pub fn status_reported(
    event: &StatusEvent,
    environments: &[EnvironmentConfig],
) -> Result<CheckReport, Ignored> {
    let repo = gated_repository(event.repository.as_ref(), environments, "commit status")?;
    Ok(CheckReport {
        repo,
        sha: event.sha.clone(),
        result: Some(CheckResult {
            kind: CheckKind::Status,
            name: event.context.clone(),
            state: CheckState::of_status(&event.state),
            detail: event.state.clone(),
            url: event.target_url.clone().filter(|u| !u.is_empty()),
            source: CheckSource::default(),
            github_id: event.id,
        }),
        installation: event.installation.as_ref().map(|i| i.id),
    })
}

/// A check suite changed: a reason to read the commit's checks again, and, for a suite with
/// runs, a result of its own that `"all"` waits for until the suite completes (its later
/// runs — jobs that need earlier ones — may not exist yet). A suite with no runs is no
/// check: it stays `queued` forever.
pub fn check_suite_reported(
    event: &CheckSuiteEvent,
    environments: &[EnvironmentConfig],
) -> Result<CheckReport, Ignored> {
    let repo = gated_repository(event.repository.as_ref(), environments, "check suite")?;
    let suite = &event.check_suite;
    let status = suite.status.as_deref().unwrap_or("queued");
    let result = (suite.latest_check_runs_count.unwrap_or(0) > 0).then(|| CheckResult {
        kind: CheckKind::Suite,
        name: CheckResult::suite_name(
            suite
                .app
                .as_ref()
                .and_then(|a| a.name.as_deref().or(a.slug.as_deref())),
        ),
        source: CheckSource::of_app(
            suite.app.as_ref().map(|a| a.id),
            suite.app.as_ref().and_then(|a| a.slug.as_deref()),
            Some(suite.id),
        ),
        // Its runs say whether it passed; the suite says only whether more may come.
        state: if status == "completed" {
            CheckState::Passed
        } else {
            CheckState::Pending
        },
        detail: suite
            .conclusion
            .clone()
            .unwrap_or_else(|| status.to_owned()),
        url: None,
        github_id: suite.id,
    });
    Ok(CheckReport {
        repo,
        sha: suite.head_sha.clone(),
        result,
        installation: event.installation.as_ref().map(|i| i.id),
    })
}

/// The event's repository, when an environment gates its merges on checks.
fn gated_repository(
    repository: Option<&Repository>,
    environments: &[EnvironmentConfig],
    what: &str,
) -> Result<RepoName, Ignored> {
    let Some(repository) = repository else {
        return Err(Ignored(format!("{what}: the payload names no repository")));
    };
    let repo = &repository.full_name;
    if environments
        .iter()
        .any(|e| e.checks.is_some() && e.accepts(repo))
    {
        Ok(repo.clone())
    } else {
        Err(Ignored(format!(
            "{what} of {repo}: no environment waits for the checks of {repo}"
        )))
    }
}

/// One line saying what a report is.
pub fn describe(report: &CheckReport) -> String {
    match &report.result {
        // A suite's own result says only whether it is done: its runs say how it went.
        Some(result) if result.kind == CheckKind::Suite => format!(
            "check {} on {}@{} {} ({})",
            result.name,
            report.repo,
            report.sha.short(),
            if result.state == CheckState::Pending {
                "is still running"
            } else {
                "completed"
            },
            result.detail
        ),
        Some(result) => format!(
            "check {:?} of {}@{} {} ({})",
            result.name,
            report.repo,
            report.sha.short(),
            match result.state {
                CheckState::Passed => "passed",
                CheckState::Failed => "failed",
                CheckState::Pending => "is pending",
            },
            result.detail
        ),
        None => format!(
            "a check suite of {}@{} changed; its checks will be read",
            report.repo,
            report.sha.short()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Environment, Required};
    use crate::webhook::events::Event;
    use serde_json::json;

    fn gated() -> Vec<EnvironmentConfig> {
        let mut staging =
            EnvironmentConfig::new(Environment::parse("staging").unwrap(), vec!["true".into()]);
        staging.checks = Some(Required::Named(vec!["test".into()]));
        vec![staging]
    }

    #[test]
    fn a_completed_check_run_reports_its_conclusion_and_link() {
        let json = json!({
            "action": "completed",
            "check_run": {"id": 4001, "name": "test", "head_sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                          "status": "completed", "conclusion": "timed_out",
                          "html_url": "https://github.com/acme/widgets/runs/4001"},
            "repository": {"full_name": "acme/widgets"},
        });
        let Event::CheckRun(event) =
            Event::parse("check_run", json.to_string().as_bytes()).unwrap()
        else {
            panic!("not a check run");
        };
        let report = check_run_reported(&event, &gated()).unwrap();
        let result = report.result.unwrap();
        assert_eq!(result.state, CheckState::Failed);
        assert_eq!(result.detail, "timed_out");
        assert_eq!(
            result.url.as_deref(),
            Some("https://github.com/acme/widgets/runs/4001")
        );
        // No app or suite in this payload: no source.
        assert_eq!(result.source, CheckSource::default());
    }

    #[test]
    fn a_check_runs_source_is_its_app_and_suite_or_its_suites_app() {
        let event = |run: serde_json::Value| {
            let json = json!({"action": "completed", "check_run": run,
                              "repository": {"full_name": "acme/widgets"}});
            let Event::CheckRun(event) =
                Event::parse("check_run", json.to_string().as_bytes()).unwrap()
            else {
                panic!("not a check run");
            };
            let report = check_run_reported(&event, &gated()).unwrap();
            report.result.unwrap().source
        };
        let run = json!({"id": 4001, "name": "test",
                         "head_sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                         "status": "completed", "conclusion": "success",
                         "app": {"id": 15368, "slug": "github-actions"},
                         "check_suite": {"id": 118578147}});
        assert_eq!(event(run.clone()).as_str(), "app 15368 suite 118578147");
        let mut from_suite = run;
        from_suite.as_object_mut().unwrap().remove("app");
        from_suite["check_suite"]["app"] = json!({"id": 90210, "slug": "other-ci"});
        assert_eq!(event(from_suite).as_str(), "app 90210 suite 118578147");
    }

    #[test]
    fn checks_of_a_repository_no_environment_gates_are_ignored() {
        let json = json!({
            "id": 5001, "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b", "context": "ci/lint",
            "state": "success", "repository": {"full_name": "acme/widgets"},
        });
        let Event::Status(event) = Event::parse("status", json.to_string().as_bytes()).unwrap()
        else {
            panic!("not a status");
        };
        assert!(status_reported(&event, &gated()).is_ok());
        let ungated = vec![EnvironmentConfig::new(
            Environment::parse("staging").unwrap(),
            vec!["true".into()],
        )];
        let Ignored(reason) = status_reported(&event, &ungated).unwrap_err();
        assert!(reason.contains("no environment waits"), "{reason}");
    }
}
