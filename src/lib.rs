//! deployhook: GitHub's "Delivering deployments" guide, made real.
//!
//! A webhook at `POST /event_handler` ([`server`]) passes every delivery through
//! [`intake`] (size, content type, signature, headers) and [`dispatch`]es it to the guide's
//! three handlers: [`start_deployment`] (a merged pull request creates a deployment),
//! [`process_deployment`] (a deployment is run) and [`update_deployment_status`] (statuses
//! are recorded). Each delivery is committed to the [`store`] (SQLite) with the work it
//! sets in motion before it is acknowledged; two background workers then do the slow part:
//! the [`outbox_worker`] makes the calls to GitHub through [`github`], and the
//! [`deploy_worker`] runs the deploy command through [`runner`]. A GitHub App's calls are
//! authenticated with the installation tokens of [`app_auth`].

pub mod app_auth;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod dashboard;
pub mod deploy_log;
pub mod deploy_worker;
pub mod dispatch;
pub mod events;
pub mod github;
pub mod ids;
pub mod intake;
pub mod manual;
pub mod metrics;
pub mod outbox_worker;
pub mod process_deployment;
pub mod redeliver;
pub mod replay;
pub mod runner;
pub mod server;
pub mod signature;
pub mod start_deployment;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod update_deployment_status;
