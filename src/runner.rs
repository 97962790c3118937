//! Runs the deploy command for one job: argv without a shell, in the environment's working
//! directory, with a clean environment carrying the job in `DEPLOYHOOK_*` variables, output
//! captured line by line into the deploy's log, and a timeout that stops the command's
//! whole process group, children and grandchildren included.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::EnvironmentConfig;
use crate::deploy_log::{LogSender, MAX_LINE};
use crate::github::DeploymentState;
use crate::process_deployment::DeployJob;
use crate::store::logs::Stream;
use crate::text;

/// Between SIGTERM and SIGKILL when a deploy times out: time for it to clean up.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// After the command exits, how long to keep reading output from children that still hold
/// its stdout/stderr open (a daemon it started, say) before giving up on them.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// Server variables every deploy command gets, so ordinary scripts work.
const BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];
/// `PATH` when the server has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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

    /// A status description of at most 140 characters.
    pub fn description(&self) -> String {
        text::description(&match self {
            Self::Succeeded { elapsed } => format!("deployed in {}", seconds(*elapsed)),
            Self::Failed {
                code: Some(code),
                elapsed,
                ..
            } => format!("exit code {code} after {} — see log", seconds(*elapsed)),
            Self::Failed {
                signal, elapsed, ..
            } => format!(
                "killed by signal {} after {} — see log",
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
}

impl<'a> RunSpec<'a> {
    /// The spec for `task` in `environment`, if the environment runs that task.
    pub fn new(environment: &'a EnvironmentConfig, task: &str) -> Option<Self> {
        Some(Self {
            argv: environment.command_for(task)?,
            working_directory: environment.working_directory.as_deref(),
            timeout: environment.timeout,
            env: &environment.env,
            pass_env: &environment.pass_env,
        })
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
        spawned: oneshot::Sender<u32>,
        log: LogSender,
    ) -> RunOutcome {
        let outcome = self.run_logged(job, abort, spawned, &log).await;
        log.line(
            Stream::Deployhook,
            &format!("{}: {}", outcome.state().as_str(), outcome.description()),
        );
        outcome
    }

    async fn run_logged(
        &self,
        job: &DeployJob,
        abort: &CancellationToken,
        spawned: oneshot::Sender<u32>,
        log: &LogSender,
    ) -> RunOutcome {
        let started = Instant::now();
        let program = self.program().to_owned();
        let place = self
            .working_directory
            .map(|d| format!(" in {}", d.display()))
            .unwrap_or_default();
        log.line(
            Stream::Deployhook,
            &format!(
                "running {:?}{place} for {} (task {}, timeout {})",
                self.argv,
                job.sha.short(),
                job.task,
                seconds(self.timeout)
            ),
        );
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
            let _ = spawned.send(pid);
        }
        let readers = [
            child
                .stdout
                .take()
                .map(|out| forward_lines(out, Stream::Stdout, log.clone())),
            child
                .stderr
                .take()
                .map(|err| forward_lines(err, Stream::Stderr, log.clone())),
        ];
        let status = tokio::select! {
            status = child.wait() => status,
            () = tokio::time::sleep(self.timeout) => {
                let message = format!("timed out after {}: stopping the command's process group (SIGTERM, then SIGKILL after {})", seconds(self.timeout), seconds(KILL_GRACE));
                tracing::warn!("{message}");
                log.line(Stream::Deployhook, &message);
                stop_group(&mut child).await;
                drain(readers).await;
                return RunOutcome::TimedOut { after: self.timeout };
            }
            () = abort.cancelled() => {
                let message = "deployhook is shutting down: stopping the deploy";
                tracing::warn!("{message}");
                log.line(Stream::Deployhook, message);
                stop_group(&mut child).await;
                drain(readers).await;
                return RunOutcome::Interrupted;
            }
        };
        drain(readers).await;
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
        command
    }
}

/// What the deploy command learns about the job. Webhook data reaches it only this way,
/// never interpolated into its command line.
pub fn job_env(job: &DeployJob) -> [(&'static str, String); 8] {
    [
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

/// SIGTERM to the command's process group, then SIGKILL after [`KILL_GRACE`].
async fn stop_group(child: &mut Child) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    tracing::warn!(pid, "sending SIGTERM to the deploy's process group");
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "deploy still running after SIGTERM; sending SIGKILL");
    }
    // Children may outlive the leader; SIGKILL the group whatever the leader did.
    signal_group(pid, libc::SIGKILL);
    let _ = child.wait().await;
}

/// A process's identity: this boot's id and the process's start time. A pid alone may name
/// another process after the first exits, or after a reboot.
pub fn process_identity(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, start time; counted after the command name, which may hold spaces.
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(format!("{}:{start}", boot.trim()))
}

/// SIGKILLs a deploy command's process group left running by a previous deployhook, if its
/// leader is still the very process that was recorded. Returns whether it did.
pub fn kill_leftover(pgid: u32, identity: &str) -> bool {
    if process_identity(pgid).as_deref() != Some(identity) {
        return false;
    }
    signal_group(pgid, libc::SIGKILL);
    true
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group id is
    // the pid of a child we spawned with `process_group(0)`. A group id stays taken while
    // any member lives; once none does, the call finds nobody (ESRCH). Naming an unrelated
    // group would need the pid space to wrap within the grace period.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends each line the command writes to `stream` to the deploy's log (and, at debug level,
/// to the server's log under the deploy's span).
fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: Stream,
    log: LogSender,
) -> JoinHandle<()> {
    let task = async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let end = line.len().min(MAX_LINE + 1);
                    let text = String::from_utf8_lossy(&line[..end]);
                    let text = text.trim_end_matches(['\n', '\r']);
                    tracing::debug!(stream = name.as_str(), "{text}");
                    log.line(name, text);
                }
            }
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()))
}

/// Waits briefly for the output readers, then abandons them.
async fn drain(readers: [Option<JoinHandle<()>>; 2]) {
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(OUTPUT_DRAIN, reader).await.is_err() {
            abort.abort();
        }
    }
}
