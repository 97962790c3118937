//! `process_deployment`, the guide's handler for `deployment`: decide whether a new
//! deployment is one for deployhook to run, describe the job, and whether it first waits
//! for its environment's approvals. The job is queued with the
//! delivery; the [`crate::deploy::worker`] runs it in the background and reports its statuses
//! (the guide's sample did this inline, with sleeps, while GitHub waited for an answer).
//!
//! Deployments made by a person (through the API, `gh`, or deployhook with a personal token)
//! are deployhook's to run: that is how a user redeploys or rolls back. Deployments made by
//! a GitHub App or a bot (GitHub Pages, Actions workflows, other deploy tools) are someone
//! else's, and running them would deploy twice.

use crate::config::{EnvironmentConfig, find_environment};
use crate::guide::Ignored;
use crate::model::approval::Asked;
use crate::model::{Actor, AuditAction, AuditEntry, DEPLOY_TASK, DeployJob, Via};
use crate::webhook::events::{Deployment, DeploymentEvent};

/// What to do with a deployment that is deployhook's to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run(DeployJob),
    /// Its environment asks for approvals: the job waits for them before it is queued.
    AwaitApproval(DeployJob, Asked),
    /// Its task is not one the environment runs: report `error` with this description.
    Refuse(DeployJob, String),
}

/// Decides whether `event` is a deployment deployhook should run.
///
/// `own_app` is deployhook's GitHub App id (numeric or client id) in App mode: the
/// deployments it made through its app are its own to run.
pub fn process_deployment(
    event: &DeploymentEvent,
    environments: &[EnvironmentConfig],
    own_app: Option<&str>,
) -> Result<Decision, Ignored> {
    let deployment = &event.deployment;
    let id = deployment.id;
    // GitHub only sends `created`; an absent action (older servers) means the same.
    if let Some(action) = event.action.as_deref().filter(|a| *a != "created") {
        return Err(Ignored(format!(
            "deployment {id} was {action}; nothing to run"
        )));
    }
    let Some(repository) = &event.repository else {
        return Err(Ignored(format!(
            "deployment {id}: the payload names no repository"
        )));
    };
    let Some(environment) = find_environment(environments, deployment.environment.as_ref()) else {
        let known: Vec<&str> = environments.iter().map(|e| e.name.as_ref()).collect();
        return Err(Ignored(format!(
            "deployment {id} is for environment {}; this server deploys {}",
            deployment.environment,
            known.join(", ")
        )));
    };
    if !environment.accepts(&repository.full_name) {
        let message = format!(
            "deployment {id}: environment {} does not list {}",
            environment.name, repository.full_name
        );
        // Worth a line: someone asked for a deploy that will not happen.
        tracing::info!(answer = message.as_str(), "a deployment not run");
        return Err(Ignored(message));
    }
    if let Some(creator) = foreign_creator(deployment, own_app) {
        return Err(Ignored(format!(
            "deployment {id} was made by {creator}, not by a person or deployhook; \
             it is not deployhook's to run"
        )));
    }
    let mut job = DeployJob {
        id,
        repo: repository.full_name.clone(),
        environment: deployment.environment.clone(),
        sha: deployment.sha.clone(),
        git_ref: deployment.git_ref.clone(),
        task: deployment
            .task
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEPLOY_TASK.to_owned()),
        deploy_user: deploy_user(deployment),
        payload: payload_text(&deployment.payload),
        environment_url: None,
        log_url: None,
        installation: event.installation.as_ref().map(|i| i.id),
    };
    if let Some(problem) = ref_problem(&job.git_ref) {
        // Signed by GitHub, so a real deployment: refused with a status that says why,
        // rather than a ref reaching the deploy command's environment and the log.
        let reason = format!("not deployed: {problem}");
        return Ok(Decision::Refuse(job, reason));
    }
    job.environment_url = environment.environment_url_for(&job);
    if environment.command_for(&job.task).is_none() {
        let reason = format!(
            "unknown task {:?}; {} runs: {}",
            job.task,
            environment.name,
            environment.task_names()
        );
        return Ok(Decision::Refuse(job, reason));
    }
    // Every deployment waits where approvals are asked for, rollbacks and forced ones
    // too: that is what required reviewers mean.
    Ok(match &environment.approval {
        Some(rule) => {
            let mut authors = vec![job.deploy_user.to_ascii_lowercase()];
            if let Some(creator) = &deployment.creator {
                authors.push(creator.login.to_ascii_lowercase());
            }
            authors.dedup();
            Decision::AwaitApproval(
                job,
                Asked {
                    rule: rule.clone(),
                    authors,
                },
            )
        }
        None => Decision::Run(job),
    })
}

/// The audit line of a deployment a person asked for on GitHub (`deployhook deploy`, the
/// API, `gh`): `deploy`, or `force` when it passes locks, by its creator — GitHub's word for
/// who made it. Deployments deployhook made itself (a merge's, a promotion's, a rollback,
/// which has its own line) are automation, not an operator's action: `None`. So is one a
/// pull-request comment asked for: the command worker wrote its line, naming the comment's
/// author rather than the token that created it.
pub fn audited(event: &DeploymentEvent, job: &DeployJob, now: i64) -> Option<AuditEntry> {
    let payload = &event.deployment.payload;
    let automatic = [
        "pull_request",
        "promoted_from",
        "rollback",
        "command",
        "preview",
    ]
    .iter()
    .any(|key| payload.get(*key).is_some_and(|v| !v.is_null()));
    let creator = event.deployment.creator.as_ref()?;
    if automatic || creator.is_bot() {
        return None;
    }
    let forced = payload.get("force") == Some(&serde_json::Value::Bool(true));
    let action = if forced {
        AuditAction::Force
    } else {
        AuditAction::Deploy
    };
    let actor = Actor::person(&creator.login, Via::GitHub);
    Some(
        AuditEntry::new(now, &actor, action, "github")
            .with_repository(job.repo.as_ref())
            .with_environment(job.environment.as_ref())
            .with_target(&job.id.to_string())
            .with_detail(&format!(
                "{} ({}) {}",
                job.sha.short(),
                job.git_ref,
                job.task
            )),
    )
}

/// The longest ref deployhook runs: GitHub's limit on a branch name.
const MAX_REF_BYTES: usize = 255;

/// Why `git_ref` cannot be a git ref, if it cannot: git's own rules (`git check-ref-format`)
/// on the characters that could reach a log or a command line as something else.
fn ref_problem(git_ref: &str) -> Option<String> {
    let shown: String = git_ref.chars().take(60).collect();
    let problem = if git_ref.is_empty() {
        "it is empty"
    } else if git_ref.len() > MAX_REF_BYTES {
        "it is longer than 255 bytes"
    } else if git_ref.chars().any(|c| c.is_control() || c == ' ') {
        "it holds a control character or a space"
    } else if git_ref.starts_with('-') {
        "it begins with '-'"
    } else if git_ref.contains(['~', '^', ':', '?', '*', '[', '\\'])
        || git_ref.contains("..")
        || git_ref.contains("@{")
    {
        "it holds characters git does not allow in a ref"
    } else {
        return None;
    };
    Some(format!("ref {shown:?} is not a git ref: {problem}"))
}

/// Names who made a deployment that deployhook must leave alone, or `None` when it is
/// deployhook's to run.
fn foreign_creator(deployment: &Deployment, own_app: Option<&str>) -> Option<String> {
    if let Some(app) = &deployment.performed_via_github_app {
        let ours = own_app
            .is_some_and(|own| own == app.id.to_string() || app.client_id.as_deref() == Some(own));
        if ours {
            return None;
        }
        let name = app.name.as_deref().or(app.slug.as_deref()).unwrap_or("?");
        return Some(format!("the GitHub App {name} (id {})", app.id));
    }
    let creator = deployment.creator.as_ref()?;
    creator
        .is_bot()
        .then(|| format!("the bot {}", creator.login))
}

/// Who asked for the deploy: the `deploy_user` deployhook put in the payload (the pull
/// request's author), or else the deployment's creator.
fn deploy_user(deployment: &Deployment) -> String {
    deployment
        .payload
        .get("deploy_user")
        .and_then(|u| u.as_str())
        .or(deployment.creator.as_ref().map(|c| c.login.as_str()))
        .unwrap_or("unknown")
        .to_owned()
}

/// Older API clients sent the payload as a JSON-encoded string; pass its text as it is.
fn payload_text(payload: &serde_json::Value) -> String {
    match payload {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepoPattern;
    use crate::model::{DeploymentId, Environment};
    use crate::webhook::events::Event;
    use serde_json::{Value, json};

    fn production() -> EnvironmentConfig {
        let mut environment = EnvironmentConfig::new(
            Environment::parse("production").unwrap(),
            vec!["true".into()],
        );
        environment.repositories = vec![RepoPattern::parse("acme/*").unwrap()];
        environment
            .tasks
            .insert("deploy:migrate".into(), vec!["./migrate.sh".into()]);
        environment.environment_url = Some("https://{environment}.example.com/{sha}".into());
        environment
    }

    fn config() -> Vec<EnvironmentConfig> {
        vec![production()]
    }

    fn run(result: Result<Decision, Ignored>) -> DeployJob {
        match result.unwrap() {
            Decision::Run(job) => job,
            other => panic!("{other:?}"),
        }
    }

    fn event(edit: impl FnOnce(&mut Value)) -> DeploymentEvent {
        let mut json = json!({
            "action": "created",
            "deployment": {
                "id": 880001, "sha": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b",
                "ref": "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b", "task": "deploy",
                "environment": "production",
                "payload": {"environment": "production", "deploy_user": "octo-dev", "pull_request": 42},
                "creator": {"login": "maria-merge", "type": "User"},
                "performed_via_github_app": null,
            },
            "repository": {"full_name": "acme/widgets", "default_branch": "main"},
        });
        edit(&mut json);
        match Event::parse("deployment", json.to_string().as_bytes()).unwrap() {
            Event::Deployment(event) => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deployment_made_by_a_person_becomes_a_job() {
        let job = run(process_deployment(&event(|_| {}), &config(), None));
        assert_eq!(job.id, DeploymentId::from(880_001));
        assert_eq!(job.repo.to_string(), "acme/widgets");
        assert_eq!(job.task, "deploy");
        assert_eq!(job.deploy_user, "octo-dev");
        let payload: Value = serde_json::from_str(&job.payload).unwrap();
        assert_eq!(payload["pull_request"], 42);
        assert_eq!(
            job.environment_url.as_deref(),
            Some("https://production.example.com/6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b")
        );
    }

    #[test]
    fn a_known_task_runs_and_an_unknown_one_is_refused_naming_the_tasks() {
        let migrate = event(|e| e["deployment"]["task"] = json!("deploy:migrate"));
        assert_eq!(
            run(process_deployment(&migrate, &config(), None)).task,
            "deploy:migrate"
        );

        let seed = event(|e| e["deployment"]["task"] = json!("deploy:seed"));
        let Decision::Refuse(job, reason) = process_deployment(&seed, &config(), None).unwrap()
        else {
            panic!("an unknown task must be refused");
        };
        assert_eq!(job.task, "deploy:seed");
        assert!(reason.contains("deploy, deploy:migrate"), "{reason}");
    }

    #[test]
    fn in_an_environment_with_approvals_every_deployment_waits_for_them() {
        let mut environment = production();
        environment.approval = Some(crate::model::ApprovalRule::new(2));
        let forced_rollback = event(|e| {
            e["deployment"]["payload"] = json!({"force": true, "rollback": true});
        });
        for deployment in [event(|_| {}), forced_rollback] {
            let decision = process_deployment(&deployment, &[environment.clone()], None);
            let Ok(Decision::AwaitApproval(job, asked)) = decision else {
                panic!("{decision:?}");
            };
            assert_eq!(job.id, DeploymentId::from(880_001));
            assert_eq!(asked.rule.required, 2);
        }
        // A task it does not run is refused at once: there is nothing to approve.
        let unknown = event(|e| e["deployment"]["task"] = json!("deploy:seed"));
        assert!(matches!(
            process_deployment(&unknown, &[environment], None),
            Ok(Decision::Refuse(..))
        ));
    }

    #[test]
    fn a_repository_the_environment_does_not_list_is_ignored() {
        let other = event(|e| e["repository"]["full_name"] = json!("umbrella/widgets"));
        let Ignored(reason) = process_deployment(&other, &config(), None).unwrap_err();
        assert!(
            reason.contains("does not list umbrella/widgets"),
            "{reason}"
        );
        let differently_cased = event(|e| e["repository"]["full_name"] = json!("ACME/Widgets"));
        assert!(process_deployment(&differently_cased, &config(), None).is_ok());
    }

    #[test]
    fn without_deploy_user_in_the_payload_the_creator_deploys() {
        let job = run(process_deployment(
            &event(|e| e["deployment"]["payload"] = json!({})),
            &config(),
            None,
        ));
        assert_eq!(job.deploy_user, "maria-merge");
    }

    #[test]
    fn a_string_payload_is_passed_as_it_is() {
        let job = run(process_deployment(
            &event(|e| e["deployment"]["payload"] = json!("{\"deploy\":\"migrate\"}")),
            &config(),
            None,
        ));
        assert_eq!(job.payload, "{\"deploy\":\"migrate\"}");
    }

    #[test]
    fn deployments_made_by_an_app_or_a_bot_are_foreign() {
        let by_app = event(|e| {
            e["deployment"]["performed_via_github_app"] =
                json!({"id": 15368, "slug": "github-actions", "name": "GitHub Actions"});
        });
        let Ignored(reason) = process_deployment(&by_app, &config(), None).unwrap_err();
        assert!(reason.contains("GitHub Actions"), "{reason}");

        let by_bot = event(|e| {
            e["deployment"]["creator"] = json!({"login": "github-pages[bot]", "type": "Bot"});
        });
        let Ignored(reason) = process_deployment(&by_bot, &config(), None).unwrap_err();
        assert!(reason.contains("github-pages[bot]"), "{reason}");
    }

    #[test]
    fn other_environments_and_actions_are_ignored_with_a_reason() {
        let staging = event(|e| e["deployment"]["environment"] = json!("staging"));
        let Ignored(reason) = process_deployment(&staging, &config(), None).unwrap_err();
        assert!(
            reason.contains("staging") && reason.contains("production"),
            "{reason}"
        );

        let no_action = event(|e| {
            e.as_object_mut()
                .unwrap()
                .remove("action")
                .map(drop)
                .unwrap()
        });
        assert!(process_deployment(&no_action, &config(), None).is_ok());
    }

    #[test]
    fn a_deployment_made_through_deployhooks_own_app_is_its_own() {
        let by_app = |id: u64, client_id: &str| {
            event(|e| {
                e["deployment"]["performed_via_github_app"] = json!({
                    "id": id, "client_id": client_id, "slug": "deployhook-acme", "name": "deployhook (acme)"
                });
            })
        };
        let ours = by_app(123_456, "Iv23liAbCdEf");
        assert!(process_deployment(&ours, &config(), Some("123456")).is_ok());
        assert!(process_deployment(&ours, &config(), Some("Iv23liAbCdEf")).is_ok());
        let Ignored(reason) = process_deployment(&ours, &config(), Some("999")).unwrap_err();
        assert!(reason.contains("deployhook (acme)"), "{reason}");
        assert!(process_deployment(&ours, &config(), None).is_err());
    }
}
