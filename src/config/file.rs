//! `deployhook.toml`: the environments deployhook deploys, one `[[environment]]` table each,
//! and who is told about them, one `[[notify]]` table per receiver (`config::notify`).
//! Parsing is strict — an unknown key, a bad value or a duplicate environment is an error
//! naming the file, line and column — because a typo in a deploy server's configuration
//! should stop it at start, not surface as a deploy that quietly did something else.
//! `deployhook check-config` and `serve` both read the file through [`load`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::notify::{self, FileNotify, NotifyTable};
use crate::config::{
    DEFAULT_CHECKS_TIMEOUT, DEFAULT_LOG_LIMIT, DEFAULT_TIMEOUT, EnvironmentConfig, RepoPattern,
};
use crate::model::{DEPLOY_TASK, Environment, OnInterrupt, Policy, Required};

/// The smallest per-run log limit: room for a useful head and tail.
const MIN_LOG_LIMIT: u64 = 4 * 1024;
/// Placeholders `environment_url` may use.
const URL_PLACEHOLDERS: [&str; 3] = ["{sha}", "{ref}", "{environment}"];

/// A problem in the file, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ConfigFileError {
    pub origin: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What a valid file describes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// Never empty, names unique.
    pub environments: Vec<EnvironmentConfig>,
    /// The receivers of notifications, by the variables holding their URLs: `serve`
    /// reads those ([`crate::config::notify::resolve`]).
    pub notify: Vec<NotifyTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "environment", default)]
    environments: Vec<Spanned<FileEnvironment>>,
    #[serde(default)]
    notify: Vec<Spanned<FileNotify>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEnvironment {
    name: Spanned<String>,
    repositories: Vec<Spanned<String>>,
    command: Spanned<Vec<String>>,
    rollback_command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    tasks: BTreeMap<String, Spanned<Vec<String>>>,
    branch: Option<String>,
    #[serde(default = "yes")]
    deploy_on_merge: bool,
    #[serde(default)]
    required_contexts: Vec<String>,
    working_directory: Option<PathBuf>,
    timeout: Option<Spanned<String>>,
    environment_url: Option<Spanned<String>>,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    on_interrupt: OnInterrupt,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    pass_env: Vec<Spanned<String>>,
    production_environment: Option<bool>,
    transient_environment: Option<bool>,
    log_limit: Option<Spanned<u64>>,
    checks: Option<Spanned<FileChecks>>,
    checks_timeout: Option<Spanned<String>>,
    promote_from: Option<Spanned<String>>,
    soak: Option<Spanned<String>>,
}

/// `checks = "none" | "all" | ["name", …]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileChecks {
    Word(String),
    Names(Vec<String>),
}

fn yes() -> bool {
    true
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!("could not read the config file {}: {err}", path.display())
    })?;
    Ok(parse(&text, &path.display().to_string())?)
}

/// Validates the text of a config file; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigFileError> {
    let error = |span: Option<Range<usize>>, message: String| {
        let (line, column) = span.map_or((1, 1), |s| position(text, s.start));
        ConfigFileError {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    };
    let file: File =
        toml::from_str(text).map_err(|e| error(e.span(), explain(text, e.span(), e.message())))?;
    if file.environments.is_empty() {
        return Err(error(
            None,
            "no [[environment]] table: the file must describe at least one environment".into(),
        ));
    }
    let mut environments: Vec<EnvironmentConfig> = Vec::new();
    // Where each environment's `promote_from` is (else its name), for errors found once
    // every environment is known.
    let mut spans: Vec<Option<Range<usize>>> = Vec::new();
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    for table in file.environments {
        let name_span = table.get_ref().name.span();
        let promote_span = Some(
            table
                .get_ref()
                .promote_from
                .as_ref()
                .map_or(name_span.clone(), Spanned::span),
        );
        let environment = validate(table.into_inner()).map_err(|(span, m)| error(Some(span), m))?;
        let name = environment.name.to_string();
        if let Some(line) = first_seen.get(&name) {
            return Err(error(
                Some(name_span),
                format!("duplicate environment {name:?} (first defined at line {line})"),
            ));
        }
        first_seen.insert(name, position(text, name_span.start).0);
        spans.push(promote_span);
        environments.push(environment);
    }
    check_promotions(&environments).map_err(|(i, m)| error(spans[i].clone(), m))?;
    let notify = file
        .notify
        .iter()
        .map(|table| notify::validate(table, &environments))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|(span, m)| error(Some(span), m))?;
    notify::check_receivers(&notify).map_err(|(i, m)| error(Some(file.notify[i].span()), m))?;
    Ok(ConfigFile {
        environments,
        notify,
    })
}

/// What a TOML or serde error means in this file's terms: serde speaks of maps and
/// sequences, a reader thinks of `[[environment]]` and `command = [...]`.
fn explain(text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let line = span.map_or("", |s| {
        let start = text[..s.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        text[start..end].trim()
    });
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        let known: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
        if let Some(meant) = closest(field, &known) {
            return format!("unknown field `{field}`: did you mean `{meant}`?");
        }
        return message.to_owned();
    }
    if message.starts_with("invalid type: map, expected a sequence")
        && let Some(table) = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .filter(|t| !t.starts_with('['))
    {
        return format!(
            "[{table}] describes a single table, but a file may have several: write \
             [[{table}]] (two brackets), once before each {table}"
        );
    }
    if message.starts_with("invalid type: string")
        && message.ends_with("expected a sequence")
        && let Some((key, value)) = line.split_once('=')
    {
        let (key, value) = (key.trim(), value.trim());
        let words = value
            .trim_matches('"')
            .split_whitespace()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        return format!(
            "`{key}` is a list, one string per word (no shell runs it): write {key} = [{words}]"
        );
    }
    message.to_owned()
}

/// The name in `known` that `typo` most likely meant: at most two edits away (or one, for
/// short names), and nearer than any other.
pub fn closest<'a>(typo: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = if typo.len() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|name| (edit_distance(typo, name), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance, over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Every `promote_from` names another environment, and following them never comes back
/// to where it started (each promotion would otherwise wait on itself).
fn check_promotions(environments: &[EnvironmentConfig]) -> Result<(), (usize, String)> {
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

type Invalid = (Range<usize>, String);

/// Checks one `[[environment]]` table's values and builds its configuration.
fn validate(file: FileEnvironment) -> Result<EnvironmentConfig, Invalid> {
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
    let timeout = match &file.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => duration(text)?,
    };
    if let Some(url) = &file.environment_url {
        check_placeholders(url)?;
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
        checks,
        checks_timeout,
        promote_from,
        soak,
        name,
        repositories,
        branch: file.branch.filter(|b| !b.trim().is_empty()),
        deploy_on_merge: file.deploy_on_merge,
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

fn argv(command: &Spanned<Vec<String>>, what: &str) -> Result<Vec<String>, Invalid> {
    match command.get_ref().first() {
        Some(program) if !program.trim().is_empty() => Ok(command.get_ref().clone()),
        _ => Err((
            command.span(),
            format!("{what} must name a program: [\"./deploy.sh\", \"--flag\"]"),
        )),
    }
}

fn duration(text: &Spanned<String>) -> Result<Duration, Invalid> {
    let parsed = crate::config::parse_duration(text.get_ref()).map_err(|e| (text.span(), e))?;
    if parsed.is_zero() {
        return Err((text.span(), "timeout must be longer than 0s".to_owned()));
    }
    Ok(parsed)
}

fn check_placeholders(url: &Spanned<String>) -> Result<(), Invalid> {
    let mut rest = url.get_ref().as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e + 1);
        let placeholder = end.map(|end| &rest[start..end]);
        match placeholder {
            Some(p) if URL_PLACEHOLDERS.contains(&p) => rest = &rest[start + p.len()..],
            _ => {
                return Err((
                    url.span(),
                    format!(
                        "environment_url: unknown placeholder {}; known: {}",
                        placeholder.unwrap_or(&rest[start..]),
                        URL_PLACEHOLDERS.join(", ")
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

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

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
    format!(
        "  {}: {} from {}; runs {:?}{rollback} (tasks: {}), timeout {}, policy {}",
        environment.name,
        on_merge,
        repositories.join(", "),
        environment.command,
        environment.task_names(),
        humantime::format_duration(environment.timeout),
        format!("{:?}", environment.policy).to_lowercase(),
    )
}

#[cfg(test)]
mod tests;
