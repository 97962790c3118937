//! Throwaway PostgreSQL servers for tests: finding the installed server binaries, making a
//! cluster in a fresh temporary directory, starting and stopping it, handing each test an
//! empty database of its own, and making sure no server outlives the test process.
//!
//! [`shared`] starts one cluster per test process, shared by every test in it; tests that
//! stop or restart the server take a cluster of their own with [`Cluster::start_private`].
//! Without the server binaries both skip loudly (they return `None`), unless
//! `DEPLOYHOOK_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes that a failure. The binaries are
//! looked for in `DEPLOYHOOK_PG_BIN`, then `pg_config --bindir`, then the newest
//! `/usr/lib/postgresql/*/bin`, then next to the `initdb` on `PATH`.
//!
//! PostgreSQL refuses to run as root: as root, the server side (`initdb`, `pg_ctl`, the
//! server) runs as the `postgres` user through `runuser`, in a directory chowned to it.
//!
//! Statics are never dropped and a killed test process runs no destructors, so each
//! cluster has a watchdog: a detached shell, in a process group of its own (a Ctrl-C to the
//! tests does not reach it), that waits for the test process to end, then stops the server
//! and removes the directory. A private cluster also does both when it is dropped.
//!
//! Only std, libc and anyhow: this is an ordinary (hidden) module of the library, since the
//! library's unit tests and the integration tests in `tests/api/` both use it.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};

/// Set to `1` to make missing server binaries a failure instead of a skip.
const REQUIRE_ENV: &str = "DEPLOYHOOK_REQUIRE_POSTGRES";
/// A directory holding `initdb`, `pg_ctl` and the rest, ahead of any other.
const BIN_ENV: &str = "DEPLOYHOOK_PG_BIN";
/// What each cluster needs from the bin directory.
const TOOLS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "psql", "pg_isready"];
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);
/// Fresh ports tried when the one picked is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;
/// Lines of the server log quoted in an error.
const LOG_TAIL_LINES: usize = 30;

/// A PostgreSQL server started for this test process, or `None` (after a loud message on
/// stderr saying the Postgres tests are SKIPPED and why) when the server binaries are not
/// installed. When the environment variable `DEPLOYHOOK_REQUIRE_POSTGRES=1` is set, their
/// absence panics instead (CI sets it). Started once per process, shared by all tests; it
/// stops when the process ends. Panics when the binaries are there but the server does not
/// start.
///
/// Use [`Cluster::database`] for a database of one's own; do not stop or restart this
/// server (every other test uses it): take [`Cluster::start_private`] for that.
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Result<Option<Cluster>, String>> = OnceLock::new();
    // A failed start is kept, so that every test reports it rather than each trying again.
    let started = SHARED.get_or_init(|| match binaries() {
        Some(bin) => Cluster::create(bin, false)
            .map(Some)
            .map_err(|e| format!("{e:#}")),
        None => Ok(None),
    });
    match started {
        Ok(cluster) => cluster.as_ref(),
        Err(message) => panic!("the shared PostgreSQL cluster did not start: {message}"),
    }
}

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
    fn create(bin: &'static Binaries, durable: bool) -> anyhow::Result<Cluster> {
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

/// The bin directory of a PostgreSQL installation, and how to run its server side.
#[derive(Debug)]
struct Binaries {
    dir: PathBuf,
    /// As root: run the server side as `postgres`.
    run_as: Option<Owner>,
}

#[derive(Debug)]
struct Owner {
    runuser: PathBuf,
    uid: u32,
    gid: u32,
}

impl Binaries {
    fn path(&self, tool: &str) -> PathBuf {
        self.dir.join(tool)
    }

    /// A server-side tool: as `postgres` through runuser when running as root.
    fn server(&self, tool: &str) -> Command {
        let mut cmd = match &self.run_as {
            Some(owner) => {
                let mut cmd = Command::new(&owner.runuser);
                cmd.args(["-u", "postgres", "--"]).arg(self.path(tool));
                cmd
            }
            None => Command::new(self.path(tool)),
        };
        clean_env(&mut cmd);
        cmd
    }

    /// A client tool, run as whoever we are.
    fn client(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.path(tool));
        clean_env(&mut cmd);
        cmd
    }
}

/// The server binaries, found once per process; `None` after a loud skip message when
/// they are missing, or a panic when they are required.
fn binaries() -> Option<&'static Binaries> {
    static FOUND: OnceLock<Option<Binaries>> = OnceLock::new();
    FOUND
        .get_or_init(|| match find_binaries() {
            Ok(found) => Some(found),
            Err(why) => {
                let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
                assert!(!required, "{REQUIRE_ENV}=1 but {why}");
                // Not eprintln!: the test harness captures that, and shows it only for
                // failing tests; a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED the PostgreSQL tests: {why}. Install the server \
                     (`apt-get install postgresql`) or point {BIN_ENV} at its bin \
                     directory. ***\n"
                );
                None
            }
        })
        .as_ref()
}

fn find_binaries() -> Result<Binaries, String> {
    let dir = bin_dir()?;
    // SAFETY: geteuid(2) takes nothing, cannot fail and touches no memory of ours.
    let root = unsafe { libc::geteuid() } == 0;
    let run_as = if root {
        let (uid, gid) = user_ids("postgres").ok_or(
            "running as root (PostgreSQL refuses to), and there is no `postgres` user to run it as",
        )?;
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| on_path("runuser"))
            .ok_or("running as root (PostgreSQL refuses to), and there is no `runuser`")?;
        Some(Owner { runuser, uid, gid })
    } else {
        None
    };
    Ok(Binaries { dir, run_as })
}

/// Where `initdb`, `pg_ctl` and the rest are, or why there is no such place.
fn bin_dir() -> Result<PathBuf, String> {
    let complete = |dir: &Path| TOOLS.iter().all(|tool| dir.join(tool).is_file());
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "{BIN_ENV}={} lacks one of {}",
                dir.display(),
                TOOLS.join(", ")
            ))
        };
    }
    // pg_config comes with the client library's headers too (libpq-dev), without a server.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if complete(&dir) {
            return Ok(dir);
        }
    }
    // Debian's layout: /usr/lib/postgresql/VERSION/bin; the newest complete one.
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    // Elsewhere: wherever the initdb on PATH really lives (it may be a symlink).
    if let Some(dir) = on_path("initdb")
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|dir| complete(dir))
    {
        return Ok(dir);
    }
    Err(format!(
        "no PostgreSQL server binaries ({}) in {BIN_ENV}, `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or next to an initdb on PATH",
        TOOLS.join(", ")
    ))
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The uid and gid of a user, through getpwnam_r(3).
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is a plain C struct of integers and pointers; all zeroes is a valid
    // value of it, and getpwnam_r overwrites it before we read it.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of ours: a NUL-terminated name, the entry,
    // a buffer with its true length (the entry's strings point into it, and we read none
    // of them), and the result pointer. Unlike getpwnam, no static storage is shared.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// Whether a process with this pid exists (a zombie counts; the caller also checks the
/// pid file, which the server removes as it exits).
fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 sends nothing and touches no memory of ours; it only
    // checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A new, empty directory under the system's temporary directory, named for this process.
fn fresh_dir() -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "deployhook-pg-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a command to its end; an error unless it succeeded, with what it printed.
fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// No PG* variable of ours (PGHOST, PGDATA, PGOPTIONS, …) reaches the tools, and their
/// messages are in English (the start recognises a taken port by its message).
fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("LANGUAGE").env("LC_ALL", "C");
}

/// What a file holds from `offset` on; empty if it does not exist.
fn read_from(path: &Path, offset: u64) -> String {
    let mut news = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut news);
    }
    String::from_utf8_lossy(&news).into_owned()
}

/// One word for sh: single-quoted, with any single quote spliced in.
fn shell_quote(word: &OsStr) -> String {
    format!("'{}'", word.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;

    fn databases(cluster: &Cluster) -> Vec<String> {
        let out = cluster
            .psql("postgres", "SELECT datname FROM pg_database")
            .unwrap();
        out.lines().map(str::to_owned).collect()
    }

    fn refuses(port: u16) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        matches!(
            TcpStream::connect_timeout(&address, Duration::from_secs(1)),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused
        )
    }

    fn name_of(url: &str) -> &str {
        let path = url.rsplit_once('/').unwrap().1;
        path.split_once('?').unwrap().0
    }

    #[test]
    fn the_shared_cluster_gives_each_test_a_database_of_its_own() {
        let Some(cluster) = shared() else { return };
        assert!(std::ptr::eq(cluster, shared().unwrap()), "started once");
        let (first, second) = (cluster.database(), cluster.database());
        assert_ne!(first, second);
        let prefix = format!("postgres://postgres@127.0.0.1:{}/", cluster.port());
        for url in [&first, &second] {
            assert!(
                url.starts_with(&prefix) && url.ends_with("?sslmode=disable"),
                "{url}"
            );
        }
        let listed = databases(cluster);
        for url in [&first, &second] {
            assert!(
                listed.iter().any(|d| d == name_of(url)),
                "{url} in {listed:?}"
            );
        }
        // Empty, and usable.
        let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
        assert_eq!(cluster.psql(name_of(&first), tables).unwrap().trim(), "0");
    }

    #[test]
    fn a_private_cluster_stops_starts_and_restarts_on_its_port_with_its_data() {
        let Some(cluster) = Cluster::start_private() else {
            return;
        };
        let port = cluster.port();
        let url = cluster.database();
        let name = name_of(&url);
        cluster.psql(name, "CREATE TABLE kept (n int)").unwrap();

        cluster.stop().unwrap();
        assert!(
            refuses(port),
            "stopped, port {port} still accepts connections"
        );
        let error = format!("{:#}", cluster.psql(name, "SELECT 1").unwrap_err());
        assert!(
            error.contains("last lines of"),
            "the log is quoted: {error}"
        );

        cluster.start().unwrap();
        assert!(!refuses(port));
        cluster.psql(name, "INSERT INTO kept VALUES (1)").unwrap();

        cluster.restart().unwrap();
        assert_eq!(cluster.port(), port);
        assert_eq!(
            cluster.psql(name, "SELECT n FROM kept").unwrap().trim(),
            "1"
        );
    }

    #[test]
    fn a_start_on_a_taken_port_fails_quoting_the_log() {
        let Some(cluster) = Cluster::start_private() else {
            return;
        };
        cluster.stop().unwrap();
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, cluster.port())).unwrap();
        let error = format!("{:#}", cluster.start().unwrap_err());
        assert!(error.contains("was taken"), "{error}");
        assert!(error.contains("Address already in use"), "{error}");
        drop(squatter);
        cluster.start().unwrap();
        cluster.psql("postgres", "SELECT 1").unwrap();
    }

    #[test]
    fn dropping_a_private_cluster_stops_it_and_removes_its_directory() {
        let Some(cluster) = Cluster::start_private() else {
            return;
        };
        let (port, base) = (cluster.port(), cluster.base.clone());
        assert!(base.join("data/postmaster.pid").is_file());
        drop(cluster);
        assert!(!base.exists(), "{} is still there", base.display());
        assert!(
            refuses(port),
            "dropped, port {port} still accepts connections"
        );
    }
}
