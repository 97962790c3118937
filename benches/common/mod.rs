//! The benchmarks' one load generator, shared by `intake`, `backlog` and `claim` (each
//! includes it with `mod common;`; cargo makes no benchmark of a folder under `benches/`
//! without a `main.rs`): signed deliveries and how they are sent (`delivery`), the
//! closed-loop keep-alive connections and the open-loop steady rate (`load`), deployhook as
//! a process of its own and what `/proc` says of it (`process`), the benchmarks' durable
//! PostgreSQL server (`postgres`), and the settings and figures every benchmark reads and
//! prints (this file).

// Each benchmark is its own crate and uses a part of this module: what one leaves unused is
// not dead for the others.
#![allow(dead_code)]

pub mod delivery;
pub mod load;
pub mod postgres;
pub mod process;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The webhook secret every benchmarked server is started with and every delivery signed
/// with.
pub const SECRET: &str = "bench-secret";

/// The number in the environment variable `name` (surrounding spaces ignored), else
/// `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The value at fraction `p` (0.99 for p99) of `sorted`, in milliseconds; NaN when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// How a target's verdict reads.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Success when every check `ok`ed.
pub fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The cores this machine offers, for the benchmarks' headers.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// An empty directory `name` under cargo's scratch directory for benchmarks, emptied of
/// what an earlier run left.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a bench directory");
    dir
}

/// Runs `slice(target, round)` for each of `targets` in turn, round after round, and
/// returns each target's results in round order. The machine is noisy: targets that take
/// turns in short slices meet a slow moment alike.
pub async fn in_turns<R>(
    targets: usize,
    rounds: u64,
    mut slice: impl AsyncFnMut(usize, u64) -> R,
) -> Vec<Vec<R>> {
    let mut results: Vec<Vec<R>> = (0..targets).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (target, results) in results.iter_mut().enumerate() {
            results.push(slice(target, round).await);
        }
    }
    results
}
