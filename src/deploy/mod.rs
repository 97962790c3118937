//! Running deploys: the [`worker`] claims queued jobs from the store (one at a time per
//! repository and environment) and records how they end, the [`runner`] runs a job's
//! command (argv, clean environment, process group, timeout), and [`log`] keeps its output,
//! bounded, and serves it live. After a deploy, [`verify`] checks (with `check`) that
//! it works before it is reported a success, and may roll back through [`on_failure`].
//!
//! May use: `github` (to wake the outbox worker), `store`, `config`, `metrics`, `health`,
//! `model`.

mod check;
pub mod log;
pub mod on_failure;
mod output;
pub mod preflight;
mod process;
pub mod runner;
pub mod verify;
pub mod worker;
