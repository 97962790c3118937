//! Finding PostgreSQL's server binaries (`DEPLOYHOOK_PG_BIN`, `pg_config --bindir`, the
//! newest `/usr/lib/postgresql/*/bin`, next to `initdb` on `PATH`), and running them: as root,
//! the server side runs as `postgres` through `runuser`, since PostgreSQL refuses root.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::os::clean_env;

/// Set to `1` to make missing server binaries a failure instead of a skip.
const REQUIRE_ENV: &str = "DEPLOYHOOK_REQUIRE_POSTGRES";
/// A directory holding `initdb`, `pg_ctl` and the rest, ahead of any other.
const BIN_ENV: &str = "DEPLOYHOOK_PG_BIN";
/// What each cluster needs from the bin directory.
const TOOLS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "psql", "pg_isready"];

/// The bin directory of a PostgreSQL installation, and how to run its server side.
#[derive(Debug)]
pub(super) struct Binaries {
    pub(super) dir: PathBuf,
    /// As root: run the server side as `postgres`.
    pub(super) run_as: Option<Owner>,
}

#[derive(Debug)]
pub(super) struct Owner {
    pub(super) runuser: PathBuf,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl Binaries {
    pub(super) fn path(&self, tool: &str) -> PathBuf {
        self.dir.join(tool)
    }

    /// A server-side tool: as `postgres` through runuser when running as root.
    pub(super) fn server(&self, tool: &str) -> Command {
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
    pub(super) fn client(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.path(tool));
        clean_env(&mut cmd);
        cmd
    }
}

/// The server binaries, found once per process; `None` after a loud skip message when
/// they are missing, or a panic when they are required.
pub(super) fn binaries() -> Option<&'static Binaries> {
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
