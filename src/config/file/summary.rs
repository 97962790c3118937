//! The one line `check-config` prints for each environment: what deploys it, from where,
//! with which command, under what timeout and policy, and whose approval it waits for.

use crate::config::EnvironmentConfig;

/// One line describing an environment, for `check-config`.
pub fn summary(environment: &EnvironmentConfig) -> String {
    let repositories: Vec<String> = environment
        .repositories
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut on_merge = match (&environment.branch, environment.deploy_on_merge) {
        (_, false) => "deployments made by hand only".to_owned(),
        (Some(branch), true) => format!("merges into {branch}"),
        (None, true) => "merges into the default branch".to_owned(),
    };
    if let Some(from) = &environment.promote_from {
        on_merge = format!(
            "what succeeded in {from}, after a soak of {}",
            humantime::format_duration(environment.soak)
        );
    } else if let Some(checks) = &environment.checks {
        on_merge = format!(
            "{on_merge} once {checks} passed (waits up to {})",
            humantime::format_duration(environment.checks_timeout)
        );
    }
    let rollback = match &environment.rollback_command {
        Some(argv) => format!(", rolls back with {argv:?}"),
        None => String::new(),
    };
    let approval = match &environment.approval {
        Some(rule) => format!("; every deployment {}", rule.summary()),
        None => String::new(),
    };
    format!(
        "  {}: {} from {}; runs {:?}{rollback} (tasks: {}), timeout {}, policy {}{approval}",
        environment.name,
        on_merge,
        repositories.join(", "),
        environment.command,
        environment.task_names(),
        humantime::format_duration(environment.timeout),
        format!("{:?}", environment.policy).to_lowercase(),
    )
}
