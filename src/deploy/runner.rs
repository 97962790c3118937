//! Runs the deploy command for one job: argv without a shell, in the environment's working
//! directory, with a clean environment carrying the job in `DEPLOYHOOK_*` variables, output
//! captured line by line into the deploy's log, and a timeout that stops the command's
//! whole process group, children and grandchildren included.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::EnvironmentConfig;
use crate::deploy::log::{LogSender, MAX_LINE};
use crate::model::DeployJob;
use crate::model::DeploymentState;
use crate::model::text;
use crate::store::logs::Stream;

/// Between SIGTERM and SIGKILL when a deploy times out: time for it to clean up.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// After the command exits, how long a reader may go without a line before it is given up
/// (a daemon the command started may hold its stdout/stderr open forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// The longest the readers are waited for after the command exits, even while lines keep
/// coming (a daemon the command started that keeps writing to its stdout).
const MAX_OUTPUT_DRAIN: Duration = Duration::from_secs(30);
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
            env: &environment.env.0,
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
        let end = format!("{}: {}", outcome.state().as_str(), outcome.description());
        log.line(Stream::Deployhook, &end).await;
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
            let _ = spawned.send(pid);
        }
        let progress = Arc::new(AtomicU64::new(0));
        let readers = [
            child
                .stdout
                .take()
                .map(|out| forward_lines(out, Stream::Stdout, log.clone(), progress.clone())),
            child
                .stderr
                .take()
                .map(|err| forward_lines(err, Stream::Stderr, log.clone(), progress.clone())),
        ];
        let status = tokio::select! {
            status = child.wait() => status,
            () = tokio::time::sleep(self.timeout) => {
                let message = format!("timed out after {}: stopping the command's process group (SIGTERM, then SIGKILL after {})", seconds(self.timeout), seconds(KILL_GRACE));
                tracing::warn!("{message}");
                log.line(Stream::Deployhook, &message).await;
                stop_group(&mut child).await;
                drain(readers, &progress).await;
                return RunOutcome::TimedOut { after: self.timeout };
            }
            () = abort.cancelled() => {
                let message = "deployhook is shutting down: stopping the deploy";
                tracing::warn!("{message}");
                log.line(Stream::Deployhook, message).await;
                stop_group(&mut child).await;
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
    progress: Arc<AtomicU64>,
) -> JoinHandle<()> {
    let task = async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(true) = read_line_capped(&mut reader, &mut line).await {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            tracing::debug!(stream = name.as_str(), "{text}");
            log.line(name, text).await;
            progress.fetch_add(1, Ordering::Relaxed);
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()))
}

/// Reads one line into `line`, keeping at most [`MAX_LINE`] + 1 bytes of it (the rest up to
/// the newline is read and dropped: a progress bar drawn with `\r`, or binary output, must
/// not grow a buffer without bound). `false` at the end of the stream.
async fn read_line_capped<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    line.clear();
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let newline = buffer.iter().position(|b| *b == b'\n');
        let chunk = newline.map_or(buffer, |i| &buffer[..=i]);
        let room = (MAX_LINE + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        if newline.is_some() {
            return Ok(true);
        }
    }
}

/// Waits for the output readers to reach the end of their pipes, as long as they make
/// progress: output the command wrote before it exited is stored, however much, while a
/// child that keeps the pipe open (a daemon it started) is given up on after
/// [`OUTPUT_DRAIN`] of silence, or [`MAX_OUTPUT_DRAIN`] in all.
async fn drain(readers: [Option<JoinHandle<()>>; 2], progress: &AtomicU64) {
    let deadline = tokio::time::Instant::now() + MAX_OUTPUT_DRAIN;
    for mut reader in readers.into_iter().flatten() {
        loop {
            let before = progress.load(Ordering::Relaxed);
            match tokio::time::timeout(OUTPUT_DRAIN, &mut reader).await {
                Ok(_) => break,
                Err(_)
                    if progress.load(Ordering::Relaxed) != before
                        && tokio::time::Instant::now() < deadline => {}
                Err(_) => {
                    reader.abort();
                    break;
                }
            }
        }
    }
}
