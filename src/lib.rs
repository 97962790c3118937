//! deployhook: GitHub's "Delivering deployments" guide, made real.
//!
//! A webhook at `POST /event_handler` ([`server`]) passes every delivery through
//! [`intake`] (size, content type, signature, headers) and [`dispatch`]es it to the guide's
//! three handlers: [`start_deployment`] (a merged pull request creates a deployment),
//! [`process_deployment`] (a deployment is run) and [`update_deployment_status`] (statuses
//! are recorded). The [`worker`] does the slow part in the background: calls to GitHub
//! through [`github`] and the deploy command through [`runner`].

pub mod cli;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod github;
pub mod ids;
pub mod intake;
pub mod process_deployment;
pub mod replay;
pub mod runner;
pub mod server;
pub mod signature;
pub mod start_deployment;
pub mod telemetry;
pub mod text;
pub mod update_deployment_status;
pub mod worker;
