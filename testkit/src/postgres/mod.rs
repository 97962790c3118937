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
//! Files: `cluster` (one server: create, start, stop, restart, a database per test, the
//! watchdog), `binaries` (finding the server binaries, running them as `postgres` as root),
//! `os` (processes, ports, directories, commands).

mod binaries;
mod cluster;
mod os;

use std::sync::OnceLock;

pub use cluster::Cluster;

use binaries::binaries;

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
