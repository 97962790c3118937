//! `rollback`: an operator puts the last good version back. Decided here, beside the
//! guide's handlers, like every decision: which commit to deploy (the last success before
//! the current one, or the one asked for), the deployment that says it is a rollback, and
//! the lock that keeps the next merge from rolling forward by itself. The store supplies
//! the history; the admin API records what is decided.

use serde_json::json;

use crate::config::EnvironmentConfig;
use crate::model::{CommitSha, DEPLOY_TASK, DeploymentRequest, NewDeployment, RepoName, text};

/// A successful deploy of the environment, newest first, as the store remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    pub sha: String,
    /// The App installation that made it (App mode).
    pub installation: Option<u64>,
}

/// A rollback to create, with the lock that holds the environment afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub new: NewDeployment,
    /// The commit running now, which is rolled back.
    pub from: CommitSha,
    pub lock_reason: String,
}

/// Decides the rollback of `repo` in `environment` to `to` (a SHA, or its first 7+ digits
/// among those deployed), or to the last success before the current one.
pub fn rollback(
    environment: &EnvironmentConfig,
    repo: &RepoName,
    successes: &[Success],
    to: Option<&str>,
    by: &str,
) -> Result<Rollback, String> {
    let name = &environment.name;
    let Some(current) = successes.first() else {
        return Err(format!(
            "{repo} has no successful deploy to {name} that deployhook remembers: nothing to \
             roll back from (deploy a commit by hand: deployhook deploy {repo} SHA -e {name})"
        ));
    };
    let from = CommitSha::parse(&current.sha).map_err(|e| e.to_string())?;
    let target = match to.map(str::trim) {
        Some(wanted) => {
            let wanted = wanted.to_ascii_lowercase();
            let deployed = (wanted.len() >= 7)
                .then(|| successes.iter().find(|s| s.sha.starts_with(&wanted)))
                .flatten();
            match deployed {
                Some(success) => success.sha.clone(),
                None => CommitSha::parse(&wanted)
                    .map_err(|_| {
                        format!(
                            "{wanted} is not a commit deployed to {name} here; give its full \
                             SHA to deploy it anyway"
                        )
                    })?
                    .to_string(),
            }
        }
        None => successes
            .iter()
            .find(|s| s.sha != current.sha)
            .map(|s| s.sha.clone())
            .ok_or_else(|| {
                format!(
                    "{} is the only commit of {repo} deployed successfully to {name}: nothing \
                     earlier to roll back to",
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

    fn history() -> Vec<Success> {
        // Newest first; C was deployed twice (a redeploy).
        [C, C, B, A]
            .iter()
            .map(|sha| Success {
                sha: (*sha).to_owned(),
                installation: None,
            })
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
        assert!(err.contains("nothing to roll back from"), "{err}");
    }
}
