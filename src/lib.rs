//! deployhook: GitHub's "Delivering deployments" guide, made real.
//!
//! The folders, from the edge inward; each may use only those below it (`ARCHITECTURE.md`
//! draws the path of a delivery through them):
//!
//! | folder | owns |
//! |---|---|
//! | [`cli`] | the command line: its arguments, `serve`'s configuration, the other commands |
//! | [`web`] | the HTTP server: routes, lifecycle, `POST /event_handler`, health, metrics, logs, the dashboard |
//! | [`guide`] | the guide's handlers: [`guide::start_deployment`], [`guide::process_deployment`], [`guide::update_deployment_status`], and the [`guide::dispatch`] between them — deciding only |
//! | [`webhook`] | what GitHub sends: intake (limits, content types, headers), signatures, events |
//! | [`deploy`] | the deploy worker, the runner of deploy commands, deploy logs |
//! | [`github`] | GitHub's REST API: the client, App authentication, the endpoints, the outbox worker |
//! | [`notify`] | notifications to Slack and webhooks: who receives an event, the messages, one send |
//! | [`store`] | the embedded SQLite database: deliveries, the deploy queue, the outbox, logs |
//! | [`config`] | the validated configuration and the config file |
//! | [`metrics`], [`health`] | the Prometheus counters every layer bumps; the workers' liveness |
//! | [`model`] | the vocabulary every layer shares: ids, deployments, effects, policies |
//!
//! A delivery's path: [`web`] receives it through the [`webhook`] intake, [`guide`] decides
//! what it means, and the [`store`] commits the delivery with the work it sets in motion
//! before the answer goes back. Two workers then do the slow part: the outbox worker in
//! [`github`] makes the calls to GitHub, and the deploy worker in [`deploy`] runs the deploy
//! command.

pub mod cli;
pub mod config;
pub mod deploy;
pub mod github;
pub mod guide;
pub mod health;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod store;
pub mod web;
pub mod webhook;
