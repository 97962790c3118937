//! The benchmarks' PostgreSQL server: a throwaway one whose commits reach the disk, and the
//! CPU time its processes use.

use std::time::Duration;

use deployhook_testkit::postgres::Cluster;

use super::process::Stat;

/// The bench's PostgreSQL server: a throwaway one whose commits reach the disk
/// (`Cluster::start_durable`: the tests' servers run with `fsync=off`, which would flatter
/// PostgreSQL against SQLite's `sync=full`). `None`, after a note, with `BENCH_POSTGRES=0`
/// or without the server binaries (the harness says so loudly).
pub fn durable_postgres() -> Option<Cluster> {
    if std::env::var("BENCH_POSTGRES").is_ok_and(|v| v == "0") {
        println!("PostgreSQL skipped (BENCH_POSTGRES=0)");
        return None;
    }
    let cluster = Cluster::start_durable()?;
    println!(
        "PostgreSQL: the bench's own server in {}, fsync, synchronous_commit and \
         full_page_writes on",
        cluster.base().display()
    );
    Some(cluster)
}

/// CPU time (user + system) the server's processes have used so far: the postmaster's
/// own and its reaped children's, and its live children's (the backends).
pub fn postgres_cpu_time(cluster: &Cluster) -> Duration {
    let Some(postmaster) = cluster.postmaster_pid().map(|pid| pid.to_string()) else {
        return Duration::ZERO;
    };
    let mut used = Duration::ZERO;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = Stat::read(&entry.path());
        if entry.file_name().to_string_lossy() == postmaster {
            used += stat.cpu() + stat.children_cpu();
        } else if stat.parent() == Some(postmaster.as_str()) {
            used += stat.cpu();
        }
    }
    used
}
