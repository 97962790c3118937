//! The one line `check-config` prints for each environment: what deploys it (merges, the
//! files they must change, tags, releases), from where, with which command, under what
//! timeout and policy, who may do more or less there, and whose approval its deployments
//! wait for.

use crate::config::EnvironmentConfig;
use crate::config::environment::BranchDeploys;

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
    let triggers = &environment.triggers;
    if !triggers.paths.is_empty() {
        on_merge = format!("{on_merge} changing {}", triggers.paths);
    }
    let mut deliberate = Vec::new();
    if !triggers.tags.is_empty() {
        deliberate.push(format!("pushed tags matching {}", triggers.tags));
    }
    if triggers.releases {
        deliberate.push(
            if triggers.prereleases {
                "published releases and prereleases"
            } else {
                "published releases"
            }
            .to_owned(),
        );
    }
    if !deliberate.is_empty() {
        let tags = deliberate.join(", ");
        on_merge = if environment.deploy_on_merge {
            format!("{on_merge}, and {tags}")
        } else {
            tags
        };
    }
    if let Some(preview) = &environment.preview {
        let branch = environment
            .branch
            .as_deref()
            .unwrap_or("the default branch");
        on_merge = format!(
            "previews of pull requests into {branch} as {}, at most {} at once{}, destroyed \
             with {:?}, checked every {}",
            preview.name,
            preview.limit,
            if preview.forks { ", forks too" } else { "" },
            preview.destroy_command,
            humantime::format_duration(preview.check_every)
        );
        if let Some(checks) = &environment.checks {
            on_merge += &format!(" once {checks} passed");
        }
    } else if let Some(from) = &environment.promote_from {
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
    let mut access = String::new();
    if !environment.access.roles.is_empty() {
        let roles: Vec<String> = environment
            .access
            .roles
            .iter()
            .map(|(action, role)| format!("{action} needs {role}"))
            .collect();
        access += &format!("; {}", roles.join(", "));
    }
    if !environment.access.admins.is_empty() {
        let admins: Vec<String> = environment
            .access
            .admins
            .iter()
            .map(ToString::to_string)
            .collect();
        access += &format!("; admins: {}", admins.join(", "));
    }
    match environment.branch_deploys {
        BranchDeploys::Green => {}
        BranchDeploys::Any => access += "; pull requests may deploy here whatever their checks",
        BranchDeploys::Off => access += "; no deploys from pull requests",
    }
    if let Some(rule) = &environment.approval {
        access += &format!("; every deployment {}", rule.summary());
    }
    access += &super::schedule::summary(&environment.schedule);
    if let Some(verify) = &environment.verify {
        access += &format!("; {}", verify.summary());
    }
    format!(
        "  {}: {} from {}; runs {:?}{rollback} (tasks: {}), timeout {}, policy {}{access}",
        environment.name,
        on_merge,
        repositories.join(", "),
        environment.command,
        environment.task_names(),
        humantime::format_duration(environment.timeout),
        format!("{:?}", environment.policy).to_lowercase(),
    )
}
