//! The guide's three handlers, still named after the sample's methods —
//! [`start_deployment`] (a merged pull request asks for a deployment),
//! [`process_deployment`] (a deployment becomes a job to run) and
//! [`update_deployment_status`] (a status is recorded) — [`tags`] (a pushed tag or a
//! published release asks for deployments of its commit) and the [`dispatch`] that routes a
//! delivery to them. They decide only: what they decide is recorded by the store and
//! carried out by the workers; they know nothing of HTTP, SQL or processes.
//!
//! May use: `webhook` (the events), `config`, `model`.

pub mod checks;
pub mod comment_command;
pub mod dispatch;
pub mod previews;
pub mod process_deployment;
pub mod rollback;
pub mod start_deployment;
pub mod tags;
pub mod update_deployment_status;

pub use dispatch::{Ack, dispatch};

/// Why a delivery needs no action. Not an error: it is answered 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored(pub String);
