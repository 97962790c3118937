//! One deploy environment's settings, as validated from the config file or the
//! single-environment variables: which repositories and merges deploy to it, who must
//! approve its deployments, and how its deploy command runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Access, DEFAULT_LOG_LIMIT, DEFAULT_TIMEOUT, Patterns};
use crate::model::{
    ApprovalRule, DEPLOY_TASK, DeployJob, Environment, OnInterrupt, Policy, RepoName, Required,
};

/// How long a merge waits for its checks unless configured otherwise.
pub const DEFAULT_CHECKS_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// One environment: which merges deploy to it, and how its deploys run.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentConfig {
    pub name: Environment,
    /// Repositories whose deployments this environment runs; never empty.
    pub repositories: Vec<RepoPattern>,
    /// `None`: each repository's default branch.
    pub branch: Option<String>,
    /// Whether a merged pull request creates a deployment to this environment (otherwise
    /// only deployments made by hand, and `triggers`' tags or releases, run here). The
    /// config file's default: yes, unless `tags` or `releases` are set.
    pub deploy_on_merge: bool,
    pub required_contexts: Vec<String>,
    /// The `deploy` task's argv; never empty.
    pub command: Vec<String>,
    /// The argv a rollback runs instead of `command`; `None`: `command` (which learns it
    /// is a rollback from `DEPLOYHOOK_ROLLBACK`).
    pub rollback_command: Option<Vec<String>>,
    /// Other tasks' argvs, by task name.
    pub tasks: BTreeMap<String, Vec<String>>,
    /// `None`: the server's working directory.
    pub working_directory: Option<PathBuf>,
    pub timeout: Duration,
    /// With `{sha}`, `{ref}` and `{environment}` placeholders, filled in percent-encoded.
    pub environment_url: Option<String>,
    pub policy: Policy,
    pub on_interrupt: OnInterrupt,
    /// Extra variables for the deploy command.
    pub env: EnvVars,
    /// Server environment variables copied into the deploy command's environment.
    pub pass_env: Vec<String>,
    pub production_environment: Option<bool>,
    pub transient_environment: Option<bool>,
    /// Bytes of output kept per run: the first and the last half of it.
    pub log_limit: usize,
    /// The CI gate: a merge deploys only once these checks are green. `None`: at once.
    pub checks: Option<Required>,
    /// How long a merge waits for its checks before it is given up as `timed_out`.
    pub checks_timeout: Duration,
    /// Deploy what succeeded in this environment (after `soak`) instead of merges.
    pub promote_from: Option<Environment>,
    /// How long a commit runs in `promote_from` before it is promoted here.
    pub soak: Duration,
    /// Approvals every deployment here waits for before it runs (rollbacks and forced
    /// deployments too). `None`: deployments run without.
    pub approval: Option<ApprovalRule>,
    /// Who may do what here, beyond the defaults of their repository permission.
    pub access: Access,
    /// Whether a pull request's head (or a branch) may be deployed here by a comment
    /// command before it is merged, and whether its checks must be green first.
    pub branch_deploys: BranchDeploys,
    /// What deploys here besides (or instead of) merges; see [`Triggers`].
    pub triggers: Triggers,
    /// Set: a preview environment, deploying each open pull request to its own environment
    /// (see [`crate::config::preview`]) instead of merges.
    pub preview: Option<crate::config::preview::PreviewConfig>,
    /// When deployments may start: weekly windows and dated freezes in a time zone (see
    /// [`crate::model::window`]). Default: always open.
    pub schedule: crate::model::Schedule,
    /// Set: after the `deploy` task's command succeeds, this check must hold before the
    /// deployment is reported `success` (see [`crate::config::verify`]).
    pub verify: Option<crate::config::verify::VerifyConfig>,
}

/// `branch_deploys`: what `.deploy` in a pull request may send to an environment before
/// the code is merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchDeploys {
    /// Only a commit whose checks all passed (none failed, none still running).
    #[default]
    Green,
    /// Whatever its checks say.
    Any,
    /// Never: only merges (and deployments made by hand) reach this environment.
    Off,
}

/// Where merges deploy, and what else does: `paths` narrow the merges that deploy here to
/// those that change a matching file; `tags` and `releases` deploy a tag's commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triggers {
    /// A merge deploys here only when it changes a file matching one of these since the
    /// environment's last successful deploy of its repository (read with GitHub's compare
    /// API by the outbox worker). Empty: every merge deploys.
    pub paths: Patterns,
    /// A pushed tag whose name matches one of these deploys its commit here. Empty: none.
    pub tags: Patterns,
    /// A published release deploys its tag's commit here.
    pub releases: bool,
    /// With `releases`: prereleases deploy too (by default only full releases do).
    pub prereleases: bool,
}

impl EnvironmentConfig {
    /// An environment with the defaults, running `command` for any repository.
    pub fn new(name: Environment, command: Vec<String>) -> Self {
        Self {
            name,
            repositories: vec![RepoPattern::Any],
            branch: None,
            deploy_on_merge: true,
            required_contexts: vec![],
            command,
            rollback_command: None,
            tasks: BTreeMap::new(),
            working_directory: None,
            timeout: DEFAULT_TIMEOUT,
            environment_url: None,
            policy: Policy::default(),
            on_interrupt: OnInterrupt::default(),
            env: EnvVars::default(),
            pass_env: vec![],
            production_environment: None,
            transient_environment: None,
            log_limit: DEFAULT_LOG_LIMIT,
            checks: None,
            checks_timeout: DEFAULT_CHECKS_TIMEOUT,
            promote_from: None,
            soak: Duration::ZERO,
            approval: None,
            access: Access::default(),
            branch_deploys: BranchDeploys::default(),
            triggers: Triggers::default(),
            preview: None,
            schedule: crate::model::Schedule::open(),
            verify: None,
        }
    }

    /// Whether deployments of `repo` run here.
    pub fn accepts(&self, repo: &RepoName) -> bool {
        self.repositories.iter().any(|p| p.matches(repo))
    }

    /// The branch this environment takes pull requests into: its `branch`, else the
    /// repository's default (`default_branch`, from the payload); why not, when neither is
    /// known.
    pub fn branch_of<'a>(&'a self, default_branch: Option<&'a str>) -> Result<&'a str, String> {
        self.branch.as_deref().or(default_branch).ok_or_else(|| {
            format!(
                "{}: the payload names no default branch; set the environment's branch",
                self.name
            )
        })
    }

    /// The argv that runs `task`.
    pub fn command_for(&self, task: &str) -> Option<&[String]> {
        if task == DEPLOY_TASK {
            return Some(&self.command);
        }
        if let Some(preview) = &self.preview
            && task == crate::config::preview::DESTROY_TASK
        {
            return Some(&preview.destroy_command);
        }
        self.tasks.get(task).map(Vec::as_slice)
    }

    /// The tasks this environment runs, for an error message.
    pub fn task_names(&self) -> String {
        std::iter::once(DEPLOY_TASK)
            .chain(
                self.preview
                    .as_ref()
                    .map(|_| crate::config::preview::DESTROY_TASK),
            )
            .chain(self.tasks.keys().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `environment_url` for `job`, placeholders filled in.
    pub fn environment_url_for(&self, job: &DeployJob) -> Option<String> {
        let url = self.environment_url.as_deref()?;
        Some(
            url.replace("{sha}", &url_component(job.sha.as_ref()))
                .replace("{ref}", &url_component(&job.git_ref))
                .replace("{environment}", &url_component(job.environment.as_ref()))
                .replace(
                    "{pr}",
                    &url_component(
                        &self
                            .preview_number(job.environment.as_ref())
                            .map_or_else(String::new, |n| n.to_string()),
                    ),
                ),
        )
    }
}

/// `text` percent-encoded but for RFC 3986's unreserved characters: a value filled into a
/// URL stays one component, so a branch named `evil.example/#` cannot turn the link into
/// another host's (`feature/x` becomes `feature%2Fx`).
fn url_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The environment named `name`, if configured — or the preview environment whose
/// `preview_name` makes it (`pr-42`). The file is refused when a name could be both, so
/// the answer is one; callers still check the repository with [`EnvironmentConfig::accepts`].
pub fn find_environment<'a>(
    environments: &'a [EnvironmentConfig],
    name: &str,
) -> Option<&'a EnvironmentConfig> {
    environments
        .iter()
        .find(|e| e.name.as_ref() == name)
        .or_else(|| crate::config::preview::find_preview(environments, name))
}

/// What holds deployments to the environment named `name` at `now` (Unix milliseconds):
/// its deploy window closed, or a freeze; `None` when none does (or it is not configured).
pub fn hold_of(
    environments: &[EnvironmentConfig],
    name: &str,
    now: i64,
) -> Option<crate::model::Hold> {
    find_environment(environments, name)?
        .schedule
        .hold_at(crate::model::window::instant(now))
}

/// The `env` of an environment. Its values may be credentials, so `Debug` shows the names
/// only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvVars(pub BTreeMap<String, String>);

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// An entry of `repositories`: `owner/name`, `owner/*`, or (environment-variable setup) any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPattern {
    Any,
    /// Lowercase: GitHub's names are case-insensitive.
    Exact(String),
    /// Every repository of this owner, lowercase.
    Owner(String),
}

impl RepoPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let pattern = match s.strip_suffix("/*") {
            Some(owner) => {
                RepoName::parse(&format!("{owner}/x")).map(|_| Self::Owner(owner.into()))
            }
            None => RepoName::parse(s).map(|_| Self::Exact(s.into())),
        };
        pattern
            .map(|p| match p {
                Self::Exact(s) => Self::Exact(s.to_ascii_lowercase()),
                Self::Owner(s) => Self::Owner(s.to_ascii_lowercase()),
                Self::Any => Self::Any,
            })
            .map_err(|_| format!("{s:?} is not a repository: expected owner/name or owner/*"))
    }

    pub fn matches(&self, repo: &RepoName) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => repo.as_ref().eq_ignore_ascii_case(name),
            Self::Owner(owner) => repo.owner().eq_ignore_ascii_case(owner),
        }
    }
}

impl std::fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any repository"),
            Self::Exact(name) => f.write_str(name),
            Self::Owner(owner) => write!(f, "{owner}/*"),
        }
    }
}
