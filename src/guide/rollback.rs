//! `rollback`: an operator puts the last good version back. Decided here, beside the
//! guide's handlers, like every decision: which commit to deploy (the last success before
//! the current one, or the one asked for), the deployment that says it is a rollback, and
//! the lock that keeps the next merge from rolling forward by itself. The store supplies
//! the history; the admin API records what is decided.

use serde_json::json;

use crate::config::EnvironmentConfig;
use crate::model::{CommitSha, DEPLOY_TASK, DeploymentRequest, NewDeployment, RepoName, text};

/// A deploy of the environment that ran, newest first, as the store remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub sha: String,
    /// `success`, `failure` or `error`.
    pub result: String,
    /// For a rollback: the commit it rolled back from.
    pub rolled_back: Option<String>,
    /// The App installation that made it (App mode).
    pub installation: Option<u64>,
}

/// A rollback to create, with the lock that holds the environment afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub new: NewDeployment,
    /// The commit running now (deployed last, whether it succeeded or not), rolled back.
    pub from: CommitSha,
    pub lock_reason: String,
}

/// Decides the rollback of `repo` in `environment` to `to` (a SHA, or its first 7+ digits
/// among those deployed), or to the last good commit before the current one: the newest
/// success that is not the current commit and that no later rollback rolled back from (a
/// second rollback goes further back, not forward to what the first one undid).
pub fn rollback(
    environment: &EnvironmentConfig,
    repo: &RepoName,
    history: &[Deployed],
    to: Option<&str>,
    by: &str,
) -> Result<Rollback, String> {
    let name = &environment.name;
    let Some(current) = history.first() else {
        return Err(format!(
            "{repo} has no deploy to {name} that deployhook remembers: nothing to roll back \
             from (deploy a commit by hand: deployhook deploy {repo} SHA -e {name})"
        ));
    };
    let from = CommitSha::parse(&current.sha).map_err(|e| e.to_string())?;
    let undone: Vec<&str> = history
        .iter()
        .filter_map(|d| d.rolled_back.as_deref())
        .collect();
    let good = |d: &&Deployed| d.result == "success" && d.sha != current.sha;
    let target = match to.map(str::trim) {
        Some(wanted) => {
            let wanted = wanted.to_ascii_lowercase();
            let mut matches: Vec<&str> = history
                .iter()
                .filter(|d| wanted.len() >= 7 && d.sha.starts_with(&wanted))
                .map(|d| d.sha.as_str())
                .collect();
            matches.dedup();
            match matches.as_slice() {
                [one] => (*one).to_owned(),
                [] => CommitSha::parse(&wanted)
                    .map_err(|_| {
                        format!(
                            "{wanted} is not a commit deployed to {name} here; give its full \
                             SHA to deploy it anyway"
                        )
                    })?
                    .to_string(),
                _ => {
                    return Err(format!(
                        "{wanted} could be several commits deployed to {name}: give more digits"
                    ));
                }
            }
        }
        None => history
            .iter()
            .filter(good)
            .find(|d| !undone.contains(&d.sha.as_str()))
            .map(|d| d.sha.clone())
            .ok_or_else(|| {
                format!(
                    "no successful deploy of {repo} to {name} before {} that was not rolled \
                     back: nothing earlier to roll back to (--to SHA names one)",
                    from.short()
                )
            })?,
    };
    let target = CommitSha::parse(&target).map_err(|e| e.to_string())?;
    if target == from {
        return Err(format!("{} is what {name} runs now", target.short()));
    }
    let payload = json!({
        "environment": name,
        "deploy_user": by,
        "rollback": true,
        "rolled_back": from,
        // A rollback runs although it locks the environment.
        "force": true,
    });
    let request = DeploymentRequest {
        git_ref: target.clone(),
        task: DEPLOY_TASK.to_owned(),
        auto_merge: false,
        required_contexts: vec![],
        environment: name.clone(),
        payload,
        description: text::description(&format!(
            "Roll back {name} to {} (from {}) by {by}",
            target.short(),
            from.short()
        )),
        production_environment: environment.production_environment,
        transient_environment: environment.transient_environment,
    };
    Ok(Rollback {
        new: NewDeployment {
            repo: repo.clone(),
            pull_request: 0,
            installation: current.installation,
            request,
            gate: None,
        },
        lock_reason: format!(
            "rolled back by {by} to {} (from {})",
            target.short(),
            from.short()
        ),
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Environment;

    const A: &str = "aaaaaaa1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbb2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "ccccccc3cccccccccccccccccccccccccccccccc";

    fn deployed(sha: &str, result: &str, rolled_back: Option<&str>) -> Deployed {
        Deployed {
            sha: sha.to_owned(),
            result: result.to_owned(),
            rolled_back: rolled_back.map(str::to_owned),
            installation: None,
        }
    }

    fn history() -> Vec<Deployed> {
        // Newest first; C was deployed twice (a redeploy).
        [C, C, B, A]
            .iter()
            .map(|sha| deployed(sha, "success", None))
            .collect()
    }

    fn production() -> EnvironmentConfig {
        EnvironmentConfig::new(Environment::parse("production").unwrap(), vec!["x".into()])
    }

    #[test]
    fn the_last_success_before_the_current_commit_is_deployed_as_a_forced_rollback() {
        let repo = RepoName::parse("acme/widgets").unwrap();
        let decided = rollback(&production(), &repo, &history(), None, "maria").unwrap();
        assert_eq!(decided.new.request.git_ref.as_ref(), B);
        assert_eq!(decided.from.as_ref(), C);
        assert_eq!(
            decided.new.request.payload,
            json!({"environment": "production", "deploy_user": "maria", "rollback": true,
                   "rolled_back": C, "force": true})
        );
        assert_eq!(
            decided.lock_reason,
            "rolled back by maria to bbbbbbb (from ccccccc)"
        );
        assert!(decided.new.request.required_contexts.is_empty());
    }

    #[test]
    fn to_names_a_deployed_commit_by_prefix_or_any_commit_in_full() {
        let repo = RepoName::parse("acme/widgets").unwrap();
        let to_a = rollback(&production(), &repo, &history(), Some("aaaaaaa1"), "m").unwrap();
        assert_eq!(to_a.new.request.git_ref.as_ref(), A);
        let other = "dddddddddddddddddddddddddddddddddddddddd";
        let to_d = rollback(&production(), &repo, &history(), Some(other), "m").unwrap();
        assert_eq!(to_d.new.request.git_ref.as_ref(), other);
        for (to, why) in [
            (Some("ddddddd"), "not a commit deployed to production"),
            (Some(C), "what production runs now"),
        ] {
            let err = rollback(&production(), &repo, &history(), to, "m").unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let err = rollback(&production(), &repo, &[], None, "m").unwrap_err();
        assert!(err.contains("nothing to roll back"), "{err}");
    }

    #[test]
    fn a_second_rollback_goes_further_back_and_a_failed_deploy_counts_as_current() {
        let repo = RepoName::parse("acme/widgets").unwrap();
        // A, B, C deployed; rolled back to B (from C): the next rollback goes to A, not C.
        let mut after = vec![deployed(B, "success", Some(C))];
        after.extend(history());
        let again = rollback(&production(), &repo, &after, None, "m").unwrap();
        assert_eq!(again.new.request.git_ref.as_ref(), A);
        // C failed to deploy: what runs is C's mess; the last good version is B.
        let failed = vec![deployed(C, "failure", None), deployed(B, "success", None)];
        let decided = rollback(&production(), &repo, &failed, None, "m").unwrap();
        assert_eq!(decided.new.request.git_ref.as_ref(), B);
        assert_eq!(decided.from.as_ref(), C);
    }
}
