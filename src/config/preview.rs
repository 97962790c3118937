//! A preview environment's settings (`preview = true` in the config file): every open pull
//! request's head deploys to a GitHub environment of its own, named from `preview_name`
//! (`pr-{pr}` by default), torn down by `destroy_command` when the pull request closes.
//! Here: the settings, the names they make and recognise, and the slots (how many previews
//! may be alive at once, and the CI gate) the store needs when one closes.

use std::time::Duration;

use crate::config::EnvironmentConfig;
use crate::model::{Environment, Gate, PreviewSlot};

/// The task a preview's teardown runs: `destroy_command`, with the deploy's variables.
pub const DESTROY_TASK: &str = "destroy";
/// The environment name a preview gets unless `preview_name` says otherwise.
pub const DEFAULT_PREVIEW_NAME: &str = "pr-{pr}";
/// Previews alive at once per preview environment unless `preview_limit` says otherwise.
pub const DEFAULT_PREVIEW_LIMIT: usize = 10;
/// How often deployhook asks GitHub whether a preview's pull request is still open,
/// unless `preview_check` says otherwise: the backstop for a `closed` delivery missed while
/// the server was down or the hook failed.
pub const DEFAULT_PREVIEW_CHECK: Duration = Duration::from_secs(5 * 60);

/// What makes an environment a preview environment.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewConfig {
    /// The GitHub environment of one pull request: `{pr}` is its number. Holds `{pr}`
    /// exactly once (checked when the file is read).
    pub name: String,
    /// The argv of the `destroy` task, run when the pull request closes.
    pub destroy_command: Vec<String>,
    /// Previews alive at once; a newer pull request waits for one to close.
    pub limit: usize,
    /// Whether pull requests from forks get a preview (their code then runs on this host).
    pub forks: bool,
    /// How often the open previews' pull requests are read again from GitHub.
    pub check_every: Duration,
}

impl PreviewConfig {
    pub fn new(destroy_command: Vec<String>) -> Self {
        Self {
            name: DEFAULT_PREVIEW_NAME.to_owned(),
            destroy_command,
            limit: DEFAULT_PREVIEW_LIMIT,
            forks: false,
            check_every: DEFAULT_PREVIEW_CHECK,
        }
    }

    /// The environment of pull request `number`'s preview.
    pub fn environment_for(&self, number: u64) -> Option<Environment> {
        Environment::parse(&self.name.replace("{pr}", &number.to_string())).ok()
    }

    /// The pull request whose preview `environment` is, if the name is one of this
    /// template's: its prefix and suffix around digits.
    pub fn number_of(&self, environment: &str) -> Option<u64> {
        let (prefix, suffix) = self.name.split_once("{pr}")?;
        let digits = environment.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

impl EnvironmentConfig {
    /// The CI gate a deployment here waits for, if `checks` sets one.
    pub fn gate(&self) -> Option<Gate> {
        self.checks.clone().map(|required| Gate {
            required,
            timeout: self.checks_timeout,
            policy: self.policy,
            merged_at: None,
        })
    }

    /// The preview environment configured by this table whose name `environment` is.
    pub fn preview_number(&self, environment: &str) -> Option<u64> {
        self.preview.as_ref()?.number_of(environment)
    }
}

/// Every preview environment's slot: what the store needs to start waiting previews when
/// one closes.
pub fn preview_slots(environments: &[EnvironmentConfig]) -> Vec<PreviewSlot> {
    environments
        .iter()
        .filter_map(|e| {
            let preview = e.preview.as_ref()?;
            Some(PreviewSlot {
                config: e.name.clone(),
                limit: preview.limit,
                gate: e.gate(),
            })
        })
        .collect()
}

/// The preview environment whose template makes `name`, if any.
pub fn find_preview<'a>(
    environments: &'a [EnvironmentConfig],
    name: &str,
) -> Option<&'a EnvironmentConfig> {
    environments
        .iter()
        .find(|e| e.preview_number(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_makes_names_and_recognises_only_its_own() {
        let mut preview = PreviewConfig::new(vec!["true".into()]);
        assert_eq!(preview.environment_for(42).unwrap().as_ref(), "pr-42");
        assert_eq!(preview.number_of("pr-42"), Some(42));
        for other in ["pr-", "pr-4x", "production", "pr-42-x", "xpr-42"] {
            assert_eq!(preview.number_of(other), None, "{other}");
        }
        preview.name = "review-{pr}.app".into();
        assert_eq!(preview.number_of("review-7.app"), Some(7));
        assert_eq!(preview.number_of("pr-7"), None);
    }
}
