//! The servers a benchmark drives: deployhook started as a process of its own (a free port,
//! the benchmark's settings, its log to a file, waited for until it listens), what `/proc`
//! says of a process (memory, CPU time), and mock servers in the benchmark's own process.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SECRET;

/// How long a started server may take to listen.
const STARTUP: Duration = Duration::from_secs(30);

/// The environment deployhook starts with, besides what the benchmark sets.
#[derive(Clone, Copy, PartialEq)]
pub enum Environment {
    /// The benchmark's own.
    Inherited,
    /// Only `PATH`: nothing from the shell that runs the benchmark reaches the server.
    PathOnly,
}

/// A server process the benchmark started: killed when dropped.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

/// An address on 127.0.0.1 where nothing listened a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Starts `binary serve` on a free port with `settings` (its database among them), GitHub
/// at `github` and its log (stderr) written to `log`, as it would be to journald: written,
/// not shown. Returns once it listens.
pub fn start_deployhook(
    binary: &OsStr,
    environment: Environment,
    github: &str,
    settings: &[(&str, &str)],
    log: &Path,
) -> ServerProcess {
    let addr = free_addr();
    let mut command = Command::new(binary);
    if environment == Environment::PathOnly {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    }
    let log = std::fs::File::create(log).expect("a log file");
    let child = command
        .arg("serve")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", "bench-token")
        .env("GITHUB_API_URL", github)
        .env("DEPLOYHOOK_LISTEN", addr.to_string())
        .env("DEPLOYHOOK_LOG_FORMAT", "json")
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("deployhook starts");
    let deadline = Instant::now() + STARTUP;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "deployhook did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ServerProcess { child, addr }
}

impl ServerProcess {
    /// A server started otherwise, listening at `addr`.
    pub fn new(child: Child, addr: SocketAddr) -> Self {
        Self { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where deliveries go.
    pub fn url(&self) -> String {
        format!("http://{}/event_handler", self.addr)
    }

    /// Peak resident memory so far.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resident memory now.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        Stat::read(&Path::new("/proc").join(self.pid().to_string())).cpu()
    }

    /// CPU time (user + system) of the process's thread named `thread`; zero without one.
    pub fn thread_cpu(&self, thread: &str) -> Duration {
        let tasks = format!("/proc/{}/task", self.pid());
        let entries = std::fs::read_dir(tasks).into_iter().flatten().flatten();
        for entry in entries {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == thread {
                return Stat::read(&entry.path()).cpu();
            }
        }
        Duration::ZERO
    }

    /// SIGTERM, then wait: deployhook shuts down gracefully.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of a process's (or thread's) `stat` file, read once; all zero when it could
/// not be read.
pub struct Stat {
    /// From the state on (field 3 in proc(5)): the command name before it may hold spaces.
    fields: Vec<String>,
}

/// CPU time counted in the kernel's clock ticks (`USER_HZ`, 100 a second), as `stat`
/// counts it.
pub fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 10)
}

impl Stat {
    /// The `stat` file in `dir` (`/proc/PID` or `/proc/PID/task/TID`).
    pub fn read(dir: &Path) -> Self {
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        Self {
            fields: after_name.split_whitespace().map(str::to_owned).collect(),
        }
    }

    /// Field `number` as proc(5) numbers them (from 1), as a number; 0 if absent.
    pub fn number(&self, number: usize) -> u64 {
        number
            .checked_sub(3)
            .and_then(|i| self.fields.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The parent's pid (field 4), as the file has it.
    pub fn parent(&self) -> Option<&str> {
        self.fields.get(1).map(String::as_str)
    }

    /// CPU time used: utime and stime (fields 14 and 15).
    pub fn cpu(&self) -> Duration {
        ticks(self.number(14) + self.number(15))
    }

    /// CPU time its reaped children used: cutime and cstime (fields 16 and 17).
    pub fn children_cpu(&self) -> Duration {
        ticks(self.number(16) + self.number(17))
    }
}

/// Serves `app` on a free port of this process, in the background; its base URL.
pub async fn serve_here(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
