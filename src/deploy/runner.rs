//! Runs the deploy command for one job: argv without a shell, in the environment's working
//! directory, with a clean environment carrying the job in `DEPLOYHOOK_*` variables, output
//! captured line by line into the deploy's log, and a timeout that stops the command's
//! whole process group, children and grandchildren included.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::EnvironmentConfig;
use crate::deploy::log::LogSender;
use crate::deploy::output::{drain, forward_lines};
use crate::deploy::process::{KILL_GRACE, guard_group, stop_group};
use crate::model::{DeployJob, DeploymentState, text};
use crate::store::logs::Stream;

/// Server variables every deploy command gets, so ordinary scripts work.
const BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];
/// `PATH` when the server has none.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded {
        elapsed: Duration,
    },
    /// Exited non-zero, or was killed by a signal it did not get from us.
    Failed {
        code: Option<i32>,
        signal: Option<i32>,
        elapsed: Duration,
    },
    TimedOut {
        after: Duration,
    },
    /// Stopped because deployhook was shutting down and could wait no longer.
    Interrupted,
    CouldNotStart {
        program: String,
        error: String,
    },
    /// Its environment or task was removed from the configuration while it waited.
    NotConfigured {
        environment: String,
        task: String,
    },
}

impl RunOutcome {
    /// The deployment status that reports this outcome.
    pub fn state(&self) -> DeploymentState {
        match self {
            Self::Succeeded { .. } => DeploymentState::Success,
            Self::Failed { .. } => DeploymentState::Failure,
            Self::TimedOut { .. }
            | Self::Interrupted
            | Self::CouldNotStart { .. }
            | Self::NotConfigured { .. } => DeploymentState::Error,
        }
    }

    /// How long the command ran, when it did.
    pub fn ran(&self) -> Option<Duration> {
        match self {
            Self::Succeeded { elapsed } | Self::Failed { elapsed, .. } => Some(*elapsed),
            Self::TimedOut { after } => Some(*after),
            Self::Interrupted | Self::CouldNotStart { .. } | Self::NotConfigured { .. } => None,
        }
    }

    /// A status description of at most 140 characters. A failure's points at the log,
    /// where the command said why.
    pub fn description(&self) -> String {
        match self {
            Self::Failed { .. } => text::description(&format!("{} — see log", self.summary())),
            _ => self.summary(),
        }
    }

    /// [`Self::description`], said of `job`: a rollback's success says it rolled back,
    /// so that GitHub's history, the dashboard and the notifications tell it from a deploy.
    pub fn description_for(&self, job: &DeployJob) -> String {
        match self {
            Self::Succeeded { elapsed } if is_rollback(job) => rolled_back(job, *elapsed),
            _ => self.description(),
        }
    }

    /// [`Self::summary`], said of `job`, as [`Self::description_for`].
    pub fn summary_for(&self, job: &DeployJob) -> String {
        match self {
            Self::Succeeded { elapsed } if is_rollback(job) => rolled_back(job, *elapsed),
            _ => self.summary(),
        }
    }

    /// What happened, in a sentence of at most 140 characters: the last line of the log
    /// itself, which must not point at itself.
    pub fn summary(&self) -> String {
        text::description(&match self {
            Self::Succeeded { elapsed } => format!("deployed in {}", seconds(*elapsed)),
            Self::Failed {
                code: Some(code),
                elapsed,
                ..
            } => format!("exit code {code} after {}", seconds(*elapsed)),
            Self::Failed {
                signal, elapsed, ..
            } => format!(
                "killed by signal {} after {}",
                signal.unwrap_or_default(),
                seconds(*elapsed)
            ),
            Self::TimedOut { after } => format!("timed out after {}", seconds(*after)),
            Self::Interrupted => "interrupted: deployhook shut down during the deploy".to_owned(),
            Self::CouldNotStart { program, error } => format!("could not start {program}: {error}"),
            Self::NotConfigured { environment, task } => format!(
                "not run: environment {environment} no longer runs task {task} (configuration changed)"
            ),
        })
    }
}

/// `rolled back to 6f1e3c9 (from 0a1b2c3) in 3s`.
fn rolled_back(job: &DeployJob, elapsed: Duration) -> String {
    let from = rolled_back_from(job)
        .map(|from| format!(" (from {})", from.chars().take(7).collect::<String>()))
        .unwrap_or_default();
    text::description(&format!(
        "rolled back to {}{from} in {}",
        job.sha.short(),
        seconds(elapsed)
    ))
}

/// For a rollback, the commit it rolls back from (`rolled_back` in its payload).
fn rolled_back_from(job: &DeployJob) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_str(&job.payload).ok()?;
    crate::model::rollback::rolled_back(&payload)
}

/// A duration rounded to whole seconds, written like `2m 5s`.
fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// How to run one job: its environment's settings for its task.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// Never empty.
    pub argv: &'a [String],
    pub working_directory: Option<&'a Path>,
    pub timeout: Duration,
    /// Extra variables, set as they are.
    pub env: &'a BTreeMap<String, String>,
    /// Server variables copied when the server has them.
    pub pass_env: &'a [String],
    /// Whether the output's lines are copied into the server's log at info level.
    pub echo_output: bool,
    /// The commit of the environment's previous successful deploy of the repository, as
    /// the claim found it: `DEPLOYHOOK_PREVIOUS_SHA`, empty when none is known.
    pub previous_sha: Option<String>,
}

impl<'a> RunSpec<'a> {
    /// The spec for `task` in `environment`, if the environment runs that task.
    pub fn new(environment: &'a EnvironmentConfig, task: &str) -> Option<Self> {
        Some(Self {
            argv: environment.command_for(task)?,
            working_directory: environment.working_directory.as_deref(),
            timeout: environment.timeout,
            env: &environment.env.0,
            pass_env: &environment.pass_env,
            echo_output: false,
            previous_sha: None,
        })
    }

    /// The spec that runs `job`: its task's command, or for a rollback of the `deploy` task
    /// the environment's `rollback_command` when it names one.
    pub fn for_job(environment: &'a EnvironmentConfig, job: &DeployJob) -> Option<Self> {
        let mut spec = Self::new(environment, &job.task)?;
        if job.task == crate::model::DEPLOY_TASK
            && is_rollback(job)
            && let Some(rollback) = &environment.rollback_command
        {
            spec.argv = rollback;
        }
        Some(spec)
    }

    /// The program the deploy command runs.
    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// Runs the command for `job` to its end, its timeout, or until `abort` is cancelled,
    /// writing its output, and notes of what happened, to `log`. `spawned` learns the
    /// command's pid (its process group's id) once it runs.
    pub async fn run(
        &self,
        job: &DeployJob,
        abort: &CancellationToken,
        hurry: &CancellationToken,
        spawned: oneshot::Sender<u32>,
        log: LogSender,
    ) -> RunOutcome {
        let outcome = self.run_logged(job, abort, hurry, spawned, &log).await;
        let end = format!("{}: {}", outcome.state().as_str(), outcome.summary_for(job));
        log.line(Stream::Deployhook, &end).await;
        outcome
    }

    async fn run_logged(
        &self,
        job: &DeployJob,
        abort: &CancellationToken,
        hurry: &CancellationToken,
        spawned: oneshot::Sender<u32>,
        log: &LogSender,
    ) -> RunOutcome {
        let started = Instant::now();
        let program = self.program().to_owned();
        let place = self
            .working_directory
            .map(|d| format!(" in {}", d.display()))
            .unwrap_or_default();
        if is_rollback(job) {
            let from = rolled_back_from(job).map_or_else(String::new, |f| format!(" from {f}"));
            let line = format!("rollback: to {}{from}", job.sha);
            log.line(Stream::Deployhook, &line).await;
        }
        log.line(
            Stream::Deployhook,
            &format!(
                "running {:?}{place} for {} (task {}, timeout {})",
                self.argv,
                job.sha.short(),
                job.task,
                seconds(self.timeout)
            ),
        )
        .await;
        if let Some(dir) = self.working_directory.filter(|d| !d.is_dir()) {
            return RunOutcome::CouldNotStart {
                program,
                error: format!("working directory {} does not exist", dir.display()),
            };
        }
        let mut child = match self.command(job).spawn() {
            Ok(child) => child,
            Err(err) => {
                return RunOutcome::CouldNotStart {
                    program,
                    error: os_error_text(&err),
                };
            }
        };
        tracing::info!(pid = child.id(), command = ?self.argv, "deploy started");
        if let Some(pid) = child.id() {
            guard_group(pid);
            let _ = spawned.send(pid);
        }
        let progress = Arc::new(AtomicU64::new(0));
        let echo = self.echo_output;
        let readers =
            [
                child.stdout.take().map(|out| {
                    forward_lines(out, Stream::Stdout, log.clone(), progress.clone(), echo)
                }),
                child.stderr.take().map(|err| {
                    forward_lines(err, Stream::Stderr, log.clone(), progress.clone(), echo)
                }),
            ];
        let status = tokio::select! {
            status = child.wait() => status,
            () = tokio::time::sleep(self.timeout) => {
                let message = format!("timed out after {}: stopping the command's process group (SIGTERM, then SIGKILL after {})", seconds(self.timeout), seconds(KILL_GRACE));
                tracing::warn!("{message}");
                log.line(Stream::Deployhook, &message).await;
                stop_group(&mut child, hurry).await;
                drain(readers, &progress).await;
                return RunOutcome::TimedOut { after: self.timeout };
            }
            () = abort.cancelled() => {
                let message = if hurry.is_cancelled() {
                    "this replica lost the database: killing the deploy"
                } else {
                    "deployhook is shutting down: stopping the deploy"
                };
                tracing::warn!("{message}");
                log.line(Stream::Deployhook, message).await;
                stop_group(&mut child, hurry).await;
                drain(readers, &progress).await;
                return RunOutcome::Interrupted;
            }
        };
        drain(readers, &progress).await;
        let elapsed = started.elapsed();
        match status {
            Ok(status) if status.success() => RunOutcome::Succeeded { elapsed },
            Ok(status) => failed(status, elapsed),
            Err(err) => {
                tracing::error!("could not wait for the deploy command: {err}");
                RunOutcome::Failed {
                    code: None,
                    signal: None,
                    elapsed,
                }
            }
        }
    }

    /// The command with its clean environment, in a process group of its own.
    fn command(&self, job: &DeployJob) -> Command {
        let mut command = Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout can stop the children it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = self.working_directory {
            command.current_dir(dir);
        }
        command.env("PATH", DEFAULT_PATH);
        for name in BASE_ENV
            .iter()
            .copied()
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(self.env);
        command.envs(job_env(job));
        // Always set, empty when unknown: a script under `set -u` need not test for it.
        command.env(
            "DEPLOYHOOK_PREVIOUS_SHA",
            self.previous_sha.as_deref().unwrap_or_default(),
        );
        command
    }
}

/// What the deploy command learns about the job. Webhook data reaches it only this way,
/// never interpolated into its command line.
pub fn job_env(job: &DeployJob) -> [(&'static str, String); 9] {
    [
        (
            "DEPLOYHOOK_ROLLBACK",
            u8::from(is_rollback(job)).to_string(),
        ),
        ("DEPLOYHOOK_DEPLOYMENT_ID", job.id.to_string()),
        ("DEPLOYHOOK_REPOSITORY", job.repo.to_string()),
        ("DEPLOYHOOK_REF", job.git_ref.clone()),
        ("DEPLOYHOOK_SHA", job.sha.to_string()),
        ("DEPLOYHOOK_ENVIRONMENT", job.environment.to_string()),
        ("DEPLOYHOOK_TASK", job.task.clone()),
        ("DEPLOYHOOK_DEPLOY_USER", job.deploy_user.clone()),
        ("DEPLOYHOOK_PAYLOAD", job.payload.clone()),
    ]
}

/// Whether `job` rolls back (`"rollback": true` in its payload, as `deployhook rollback`
/// makes it).
pub fn is_rollback(job: &DeployJob) -> bool {
    serde_json::from_str::<serde_json::Value>(&job.payload)
        .is_ok_and(|p| crate::model::rollback::is_rollback(&p))
}

fn failed(status: ExitStatus, elapsed: Duration) -> RunOutcome {
    use std::os::unix::process::ExitStatusExt;
    RunOutcome::Failed {
        code: status.code(),
        signal: status.signal(),
        elapsed,
    }
}

/// `No such file or directory`, without Rust's ` (os error 2)` suffix.
fn os_error_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}
