//! `deployhook.toml`: the environments deployhook deploys, one `[[environment]]` table each,
//! and who is told about them, one `[[notify]]` table per receiver (`config::notify`).
//! Parsing is strict — an unknown key, a bad value or a duplicate environment is an error
//! naming the file, line and column — because a typo in a deploy server's configuration
//! should stop it at start, not surface as a deploy that quietly did something else.
//! `deployhook check-config` and `serve` both read the file through [`load`].
//!
//! This file has the file's shape as serde reads it, [`load`] and [`parse`], and where an
//! error is. The rest, by what it owns:
//! - `explain.rs`: what a TOML error means in the file's terms, and [`closest`], the name
//!   a typo most likely meant;
//! - `validate.rs`: one environment's values checked and built into its configuration,
//!   and the promotions across environments;
//! - `approval.rs`: an environment's approvals (`approvals`, `reviewers`, `self_approval`,
//!   `approval_timeout`) checked and built into its rule;
//! - `triggers.rs`: what deploys an environment besides merges (`tags`, `releases`), and
//!   which merges do (`paths`, `deploy_on_merge`);
//! - `preview.rs`: a preview environment's settings (`preview`, `destroy_command`,
//!   `preview_name`, `preview_limit`, `preview_forks`, `preview_check`), and names that
//!   lead to one table only;
//! - `schedule.rs`: when deployments may start (`timezone`, `windows`, `freezes`);
//! - `verify.rs`: the check after a deploy (`verify`, `on_verify_failure`);
//! - `summary.rs`: [`summary`], the line `check-config` prints for an environment;
//! - `tests.rs`: every key, and errors that name the line and column.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::EnvironmentConfig;
use crate::config::notify::{self, FileNotify, NotifyTable};
use crate::model::{OnInterrupt, Policy};

mod approval;
mod explain;
mod preview;
mod schedule;
mod summary;
mod triggers;
mod validate;
mod verify;

pub use explain::closest;
pub use summary::summary;
pub use validate::variable_name_problem;

use explain::explain;
use validate::{check_promotions, validate};

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
    /// Unset: yes, unless `tags` or `releases` are set (see `triggers.rs`).
    deploy_on_merge: Option<bool>,
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
    approvals: Option<Spanned<i64>>,
    reviewers: Option<Spanned<Vec<Spanned<String>>>>,
    self_approval: Option<Spanned<bool>>,
    approval_timeout: Option<Spanned<String>>,
    /// Action → role, where this environment asks more or less than the defaults.
    roles: Option<Spanned<BTreeMap<String, String>>>,
    /// People (`octocat`) and teams (`@acme/sre`) with the admin role here.
    admins: Option<Spanned<Vec<String>>>,
    /// What `.deploy` in a pull request may send here: `green` heads, `any`, or `off`.
    #[serde(default)]
    branch_deploys: crate::config::environment::BranchDeploys,
    paths: Option<Spanned<Vec<String>>>,
    tags: Option<Spanned<Vec<String>>>,
    releases: Option<Spanned<bool>>,
    prereleases: Option<Spanned<bool>>,
    /// A preview environment: each open pull request deploys to its own (`preview.rs`).
    preview: Option<Spanned<bool>>,
    preview_name: Option<Spanned<String>>,
    destroy_command: Option<Spanned<Vec<String>>>,
    preview_limit: Option<Spanned<i64>>,
    preview_forks: Option<Spanned<bool>>,
    preview_check: Option<Spanned<String>>,
    /// When deployments may start (`schedule.rs`).
    timezone: Option<Spanned<String>>,
    windows: Option<Vec<Spanned<schedule::FileWindow>>>,
    freezes: Option<Vec<Spanned<schedule::FileFreeze>>>,
    /// A check after the deploy (`verify.rs`).
    verify: Option<Spanned<verify::FileVerify>>,
    on_verify_failure: Option<Spanned<crate::config::verify::OnVerifyFailure>>,
}

/// `checks = "none" | "all" | ["name", …]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileChecks {
    Word(String),
    Names(Vec<String>),
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
    preview::check_names(&environments).map_err(|(i, m)| error(spans[i].clone(), m))?;
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

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;
