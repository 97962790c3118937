//! One `[[environment]]` table checked value by value and built into its
//! [`EnvironmentConfig`] — commands, durations, placeholders, variable names, the CI gate,
//! promotion and soak, approvals (in `approval.rs`) — and, once every table is read, the
//! promotions across them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::{FileChecks, FileEnvironment};
use crate::config::{
    DEFAULT_CHECKS_TIMEOUT, DEFAULT_LOG_LIMIT, DEFAULT_TIMEOUT, EnvironmentConfig, RepoPattern,
};
use crate::model::{DEPLOY_TASK, Environment, Required};

/// The smallest per-run log limit: room for a useful head and tail.
const MIN_LOG_LIMIT: u64 = 4 * 1024;
/// Placeholders `environment_url` may use.
const URL_PLACEHOLDERS: [&str; 3] = ["{sha}", "{ref}", "{environment}"];

/// Every `promote_from` names another environment, and following them never comes back
/// to where it started (each promotion would otherwise wait on itself).
pub(super) fn check_promotions(environments: &[EnvironmentConfig]) -> Result<(), (usize, String)> {
    for (index, environment) in environments.iter().enumerate() {
        let Some(from) = &environment.promote_from else {
            continue;
        };
        if crate::config::find_environment(environments, from.as_ref()).is_none() {
            let known: Vec<&str> = environments.iter().map(|e| e.name.as_ref()).collect();
            return Err((
                index,
                format!(
                    "environment {}: promote_from names {from}, which is not defined here \
                     (environments: {})",
                    environment.name,
                    known.join(", ")
                ),
            ));
        }
        let mut seen = vec![environment.name.as_ref()];
        let mut next = Some(from);
        while let Some(name) = next {
            if seen.contains(&name.as_ref()) {
                seen.push(name.as_ref());
                return Err((
                    index,
                    format!(
                        "environment {}: promotions go round in a circle ({}): each would \
                         wait for the other",
                        environment.name,
                        seen.join(" ← ")
                    ),
                ));
            }
            seen.push(name.as_ref());
            next = crate::config::find_environment(environments, name.as_ref())
                .and_then(|e| e.promote_from.as_ref());
        }
    }
    Ok(())
}

pub(super) type Invalid = (Range<usize>, String);

/// The environment's `roles` and `admins`, checked.
fn access(file: &FileEnvironment, name: &Environment) -> Result<crate::config::Access, Invalid> {
    let roles = file.roles.as_ref().map(Spanned::get_ref);
    let admins = file.admins.as_ref().map(Spanned::get_ref);
    crate::config::Access::parse(
        &roles.cloned().unwrap_or_default(),
        admins.map_or(&[], |a| a),
    )
    .map_err(|e| {
        let span = if e.starts_with("admins") {
            file.admins.as_ref().map(Spanned::span)
        } else {
            file.roles.as_ref().map(Spanned::span)
        };
        (
            span.unwrap_or_else(|| file.name.span()),
            format!("environment {name}: {e}"),
        )
    })
}

/// Checks one `[[environment]]` table's values and builds its configuration.
pub(super) fn validate(file: FileEnvironment) -> Result<EnvironmentConfig, Invalid> {
    let name =
        Environment::parse(file.name.get_ref()).map_err(|e| (file.name.span(), e.to_string()))?;
    let repositories = file
        .repositories
        .iter()
        .map(|r| RepoPattern::parse(r.get_ref()).map_err(|e| (r.span(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    if repositories.is_empty() {
        return Err((
            file.name.span(),
            format!("environment {name}: `repositories` is empty, so nothing would deploy"),
        ));
    }
    let approval = super::approval::approval_rule(&file, &name)?;
    let preview = super::preview::preview(&file, &name)?;
    let schedule = super::schedule::schedule(&file, &name)?;
    let verify = super::verify::verify(&file, &name)?;
    let command = argv(&file.command, "command")?;
    let rollback_command = file
        .rollback_command
        .as_ref()
        .map(|c| argv(c, "rollback_command"))
        .transpose()?;
    let mut tasks = BTreeMap::new();
    for (task, command) in &file.tasks {
        if task == DEPLOY_TASK {
            return Err((
                command.span(),
                "task \"deploy\" runs `command`; set it there".to_owned(),
            ));
        }
        tasks.insert(task.clone(), argv(command, "a task's command")?);
    }
    let access = access(&file, &name)?;
    let (deploy_on_merge, triggers) = super::triggers::triggers(&file, &name)?;
    let timeout = match &file.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => duration(text)?,
    };
    if let Some(url) = &file.environment_url {
        check_placeholders(url, preview.is_some())?;
    }
    let mut env = BTreeMap::new();
    for (key, value) in file.env {
        check_variable_name(&key)?;
        env.insert(key.into_inner(), value);
    }
    for name in &file.pass_env {
        check_variable_name(name)?;
    }
    let log_limit = match file.log_limit {
        None => DEFAULT_LOG_LIMIT,
        Some(limit) if *limit.get_ref() < MIN_LOG_LIMIT => {
            return Err((
                limit.span(),
                format!("log_limit must be at least {MIN_LOG_LIMIT} bytes"),
            ));
        }
        Some(limit) => usize::try_from(limit.into_inner()).unwrap_or(usize::MAX),
    };
    let checks = match &file.checks {
        None => None,
        Some(checks) => checks_gate(checks)?,
    };
    let checks_timeout = match &file.checks_timeout {
        None => DEFAULT_CHECKS_TIMEOUT,
        Some(text) => duration(text)?,
    };
    let promote_from = match &file.promote_from {
        None => None,
        Some(from) => {
            let parsed =
                Environment::parse(from.get_ref()).map_err(|e| (from.span(), e.to_string()))?;
            if parsed == name {
                return Err((
                    from.span(),
                    format!("environment {name} cannot be promoted from itself"),
                ));
            }
            if checks.is_some() {
                let span = file.checks.as_ref().map_or(from.span(), Spanned::span);
                return Err((
                    span,
                    format!(
                        "environment {name} is promoted from {parsed}: what reaches it already \
                         passed {parsed}; put `checks` on {parsed} instead"
                    ),
                ));
            }
            Some(parsed)
        }
    };
    let soak = match &file.soak {
        None => Duration::ZERO,
        Some(_) if promote_from.is_none() => {
            let soak = file.soak.as_ref().map(Spanned::span);
            return Err((
                soak.unwrap_or_else(|| file.name.span()),
                format!("environment {name}: `soak` needs `promote_from`"),
            ));
        }
        Some(text) => {
            crate::config::parse_duration(text.get_ref()).map_err(|e| (text.span(), e))?
        }
    };
    if checks.is_some() && !file.required_contexts.is_empty() {
        return Err((
            file.name.span(),
            format!(
                "environment {name}: `required_contexts` and `checks` both gate on CI; with \
                 `checks`, deployhook waits itself and creates the deployment with \
                 required_contexts = [] — remove `required_contexts`"
            ),
        ));
    }
    Ok(EnvironmentConfig {
        approval,
        preview,
        access,
        checks,
        checks_timeout,
        promote_from,
        soak,
        name,
        repositories,
        branch: file.branch.filter(|b| !b.trim().is_empty()),
        deploy_on_merge,
        triggers,
        required_contexts: file.required_contexts,
        command,
        rollback_command,
        tasks,
        working_directory: file.working_directory,
        timeout,
        environment_url: file.environment_url.map(Spanned::into_inner),
        policy: file.policy,
        on_interrupt: file.on_interrupt,
        env: crate::config::EnvVars(env),
        pass_env: file.pass_env.into_iter().map(Spanned::into_inner).collect(),
        production_environment: file.production_environment,
        transient_environment: file.transient_environment,
        log_limit,
        branch_deploys: file.branch_deploys,
        schedule,
        verify,
    })
}

/// The gate `checks` describes; `None` for `"none"`.
fn checks_gate(checks: &Spanned<FileChecks>) -> Result<Option<Required>, Invalid> {
    match checks.get_ref() {
        FileChecks::Word(word) if word == "none" => Ok(None),
        FileChecks::Word(word) if word == "all" => Ok(Some(Required::All)),
        FileChecks::Word(word) => Err((
            checks.span(),
            format!(
                "checks = {word:?}: expected \"none\", \"all\" or a list of check names, \
                 like [\"test\", \"lint\"]"
            ),
        )),
        FileChecks::Names(names)
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) =>
        {
            Err((
                checks.span(),
                "checks: a list of check names must name at least one, none empty \
                 (\"none\" turns the gate off)"
                    .to_owned(),
            ))
        }
        FileChecks::Names(names) => Ok(Some(Required::Named(names.clone()))),
    }
}

pub(super) fn argv(command: &Spanned<Vec<String>>, what: &str) -> Result<Vec<String>, Invalid> {
    match command.get_ref().first() {
        Some(program) if !program.trim().is_empty() => Ok(command.get_ref().clone()),
        _ => Err((
            command.span(),
            format!("{what} must name a program: [\"./deploy.sh\", \"--flag\"]"),
        )),
    }
}

pub(super) fn duration(text: &Spanned<String>) -> Result<Duration, Invalid> {
    let parsed = crate::config::parse_duration(text.get_ref()).map_err(|e| (text.span(), e))?;
    if parsed.is_zero() {
        return Err((text.span(), "timeout must be longer than 0s".to_owned()));
    }
    Ok(parsed)
}

/// `environment_url`'s placeholders are known ones; `{pr}` only in a preview environment.
fn check_placeholders(url: &Spanned<String>, preview: bool) -> Result<(), Invalid> {
    let mut rest = url.get_ref().as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e + 1);
        let placeholder = end.map(|end| &rest[start..end]);
        match placeholder {
            Some(p) if URL_PLACEHOLDERS.contains(&p) || (preview && p == "{pr}") => {
                rest = &rest[start + p.len()..];
            }
            _ => {
                return Err((
                    url.span(),
                    format!(
                        "environment_url: unknown placeholder {}; known: {}",
                        placeholder.unwrap_or(&rest[start..]),
                        URL_PLACEHOLDERS.join(", ")
                            + if preview {
                                ", {pr}"
                            } else {
                                " ({pr} in a preview environment)"
                            }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A variable the deploy command's environment can hold, and not one deployhook sets.
fn check_variable_name(name: &Spanned<String>) -> Result<(), Invalid> {
    match variable_name_problem(name.get_ref()) {
        Some(problem) => Err((name.span(), problem)),
        None => Ok(()),
    }
}

/// What is wrong with `text` as the name of a variable for the deploy command, if anything:
/// not a name, or one of deployhook's own (`DEPLOYHOOK_*`: the job's variables, and the
/// server's tokens, which must not be passed on).
pub fn variable_name_problem(text: &str) -> Option<String> {
    let valid = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Some(format!(
            "{text:?} is not a variable name (letters, digits and _)"
        ));
    }
    text.starts_with("DEPLOYHOOK_")
        .then(|| format!("{text} is deployhook's own variable; choose another name"))
}
