//! One throwaway PostgreSQL server: its directory, `initdb`, starting it on a free port and
//! waiting until it accepts connections, stopping and restarting it, a fresh database per
//! test, `psql` for looking behind the application's back, and the watchdog that removes
//! it when the test process ends however it ends.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use super::binaries::{Binaries, binaries};
use super::os::{clean_env, free_port, fresh_dir, process_exists, read_from, run, shell_quote};

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);
/// Fresh ports tried when the one picked is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;
/// Lines of the server log quoted in an error.
const LOG_TAIL_LINES: usize = 30;

/// One PostgreSQL server, its data directory and log in a temporary directory of its own,
/// listening on 127.0.0.1 only, with trust authentication for the `postgres` superuser.
#[derive(Debug)]
pub struct Cluster {
    bin: &'static Binaries,
    /// The temporary directory: `data/`, `server.log` and the Unix socket.
    base: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// Serialises stop and start.
    control: Mutex<()>,
    /// The watchdog shell; a private cluster ends it once it has cleaned up itself.
    watchdog: Mutex<Option<Child>>,
    /// Whether commits reach the disk (`fsync` on): for benchmarks, whose figures would
    /// otherwise flatter PostgreSQL. Tests run without, for speed.
    durable: bool,
}

impl Cluster {
    /// A cluster of its own (not shared), for tests that stop or restart the server;
    /// dropping it stops it and removes its directory. `None`, after the same loud skip
    /// message as [`shared`], when the server binaries are not installed. Panics when they
    /// are but the server does not start.
    pub fn start_private() -> Option<Cluster> {
        let bin = binaries()?;
        Some(Cluster::create(bin, false).unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// A private cluster whose commits reach the disk (`fsync`, `synchronous_commit` and
    /// `full_page_writes` on, checked), for benchmarks. `None` as [`Cluster::start_private`].
    pub fn start_durable() -> Option<Cluster> {
        let bin = binaries()?;
        let cluster = Cluster::create(bin, true).unwrap_or_else(|e| panic!("{e:#}"));
        let settings = cluster
            .psql(
                "postgres",
                "SELECT current_setting('fsync') || current_setting('synchronous_commit') \
                 || current_setting('full_page_writes')",
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(settings.trim(), "ononon", "a durable PostgreSQL server");
        Some(cluster)
    }

    /// The server's main process (for a benchmark's CPU count), while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The directory holding the data, the log and the socket.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// A fresh, empty database on this cluster, for one test; its URL:
    /// `postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable`. Panics when the server
    /// refuses it.
    pub fn database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = self.psql("postgres", &format!("CREATE DATABASE {name}")) {
            panic!("{e:#}");
        }
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// The TCP port the server listens on, on 127.0.0.1; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL with `psql` as `postgres` on one database of this cluster (stopping at the
    /// first error) and returns what it printed: unaligned rows, one a line, fields
    /// separated by `|`. For tests that look behind the application's back, e.g.
    /// `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '…'`.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let mut cmd = self.bin.client("psql");
        cmd.args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-c", sql]);
        let out = run(&mut cmd).map_err(|e| self.with_log(e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (fast shutdown: open connections are ended) and starts it again
    /// on the same port and data, for tests of a database restart. Returns once it accepts
    /// connections again.
    pub fn restart(&self) -> anyhow::Result<()> {
        let _control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_locked("fast")?;
        self.start_locked()
    }

    /// Stops the server (fast shutdown), without starting it again; the port then refuses
    /// connections until [`Cluster::start`].
    pub fn stop(&self) -> anyhow::Result<()> {
        let _control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_locked("fast")
    }

    /// Starts the server again after [`Cluster::stop`], on the same port and data. Returns
    /// once it accepts connections; fails should the port have been taken meanwhile.
    pub fn start(&self) -> anyhow::Result<()> {
        let _control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.start_locked()
    }

    /// Makes the directory, sets the watchdog on it, runs initdb and starts the server on
    /// a free port. On failure, dropping the half-made cluster cleans up.
    pub(super) fn create(bin: &'static Binaries, durable: bool) -> anyhow::Result<Cluster> {
        let base = fresh_dir()?;
        let mut cluster = Cluster {
            bin,
            data: base.join("data"),
            log: base.join("server.log"),
            base,
            port: 0,
            control: Mutex::new(()),
            watchdog: Mutex::new(None),
            durable,
        };
        if let Some(owner) = &bin.run_as {
            std::os::unix::fs::chown(&cluster.base, Some(owner.uid), Some(owner.gid))
                .with_context(|| format!("chown {} to postgres", cluster.base.display()))?;
        }
        // Before anything else runs in the directory, so that nothing is left behind even
        // when the test process dies during initdb or the start.
        *cluster
            .watchdog
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = Some(cluster.spawn_watchdog()?);

        let mut initdb = bin.server("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .current_dir(&cluster.base);
        run(&mut initdb).with_context(|| {
            let mut hint = format!("initdb in {}", cluster.base.display());
            if bin.run_as.is_some() {
                hint.push_str(" (as root, it runs as `postgres`, which must be able to reach it)");
            }
            hint
        })?;

        for attempt in 1..=PORT_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.start_on_port() {
                Ok(()) => return Ok(cluster),
                Err(Start::PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(Start::PortTaken) => {
                    return Err(cluster.with_log(anyhow!(
                        "PostgreSQL found the port taken {PORT_ATTEMPTS} times in a row"
                    )));
                }
                Err(Start::Failed(e)) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn start_locked(&self) -> anyhow::Result<()> {
        match self.start_on_port() {
            Ok(()) => Ok(()),
            Err(Start::PortTaken) => Err(self.with_log(anyhow!(
                "could not start PostgreSQL again: port {} was taken while it was stopped",
                self.port
            ))),
            Err(Start::Failed(e)) => Err(e),
        }
    }

    fn stop_locked(&self, mode: &str) -> anyhow::Result<()> {
        let mut cmd = self.bin.server("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "30", "stop"])
            .current_dir(&self.base);
        run(&mut cmd)
            .map(drop)
            .map_err(|e| self.with_log(e.context("stopping PostgreSQL")))
    }

    /// Starts the server on `self.port` and waits until it accepts connections.
    fn start_on_port(&self) -> Result<(), Start> {
        // The log is appended to across restarts; only what this start writes counts.
        let log_start = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let sync = if self.durable {
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        } else {
            "-c fsync=off"
        };
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} {sync} -c max_connections=200",
            self.port,
            shell_quote(self.base.as_os_str())
        );
        let mut cmd = self.bin.server("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-W", "-o", &options, "start"])
            .current_dir(&self.base);
        if let Err(e) = run(&mut cmd) {
            return Err(Start::Failed(
                self.with_log(e.context("starting PostgreSQL")),
            ));
        }
        self.wait_ready(log_start)
    }

    /// Polls until the server accepts connections (its `postmaster.pid` says ready, the
    /// port takes a TCP connection and `pg_isready` agrees), the server has died, or the
    /// time is up. `pg_ctl -W` returned at once, so the server may not even exist yet.
    fn wait_ready(&self, log_start: u64) -> Result<(), Start> {
        let started = Instant::now();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let pid_file = self.data.join("postmaster.pid");
        // When the log first had news while there was no pid file.
        let mut gone_since: Option<Instant> = None;
        loop {
            // The log before the pid file: the server creates that file before it logs
            // anything but errors, and removes it when it exits.
            let news = read_from(&self.log, log_start);
            match std::fs::read_to_string(&pid_file) {
                Ok(pid_file) => {
                    gone_since = None;
                    let lines: Vec<&str> = pid_file.lines().collect();
                    // Only a whole first line: the file may be half written.
                    let pid = (lines.len() > 1)
                        .then(|| lines[0].trim().parse::<i32>().ok())
                        .flatten();
                    if pid.is_some_and(|pid| !process_exists(pid)) {
                        return Err(self.died(&news));
                    }
                    let ready = lines.get(7).is_some_and(|status| status.trim() == "ready");
                    if ready
                        && TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
                        && self.pg_isready()
                    {
                        return Ok(());
                    }
                }
                Err(_) if !news.is_empty() => {
                    // Dead, unless it logged an early warning and is about to write the
                    // file: give it a moment.
                    let since = *gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(200) {
                        return Err(self.died(&news));
                    }
                }
                Err(_) => {}
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Start::Failed(self.with_log(anyhow!(
                    "PostgreSQL did not accept connections on port {} within {START_TIMEOUT:?}",
                    self.port
                ))));
            }
            std::thread::sleep(POLL);
        }
    }

    fn died(&self, news: &str) -> Start {
        if news.contains("could not bind") || news.contains("Address already in use") {
            Start::PortTaken
        } else {
            Start::Failed(self.with_log(anyhow!(
                "PostgreSQL exited while starting on port {}",
                self.port
            )))
        }
    }

    fn pg_isready(&self) -> bool {
        let mut cmd = self.bin.client("pg_isready");
        cmd.args([
            "-q",
            "-t",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
        ])
        // As the superuser, so the log is not littered with "role root does not exist".
        .args(["-U", "postgres", "-d", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    /// A shell in a process group of its own that waits for this process to end, then
    /// stops the server at once and removes the directory. Passing the paths as arguments
    /// spares quoting them. As root, it stops the server as `postgres` but removes the
    /// directory as root (the socket directory is postgres's, but `/tmp` is not).
    fn spawn_watchdog(&self) -> anyhow::Result<Child> {
        let stop = match &self.bin.run_as {
            Some(owner) => format!("{} -u postgres -- ", shell_quote(owner.runuser.as_os_str())),
            None => String::new(),
        };
        let script = format!(
            "trap '' HUP INT; \
             while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
             {stop}\"$2\" -D \"$3\" -m immediate stop; \
             rm -rf \"$4\""
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("deployhook-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(self.bin.path("pg_ctl"))
            .arg(&self.data)
            .arg(&self.base)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        clean_env(&mut cmd);
        cmd.spawn().context("starting the watchdog shell (sh)")
    }

    /// `error`, followed by the tail of the server log.
    fn with_log(&self, error: anyhow::Error) -> anyhow::Error {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        let mut message = format!("\n--- last lines of {}:", self.log.display());
        if tail.is_empty() {
            message.push_str(" (empty or missing)");
        }
        for line in tail {
            let _ = write!(message, "\n{line}");
        }
        error.context(message)
    }
}

impl Drop for Cluster {
    /// Stops the server at once (immediate shutdown) and removes the directory, then ends
    /// the watchdog. Only private clusters are ever dropped.
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.stop_locked("immediate");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.base)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("could not remove {}: {e}", self.base.display());
        }
        let watchdog = self.watchdog.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut watchdog) = watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

enum Start {
    /// Someone else bound the port first; another port may do.
    PortTaken,
    Failed(anyhow::Error),
}
