//! Integration tests: the real HTTP server on a random port, signed deliveries, and a
//! wiremock GitHub. One test binary, so the crate is linked once.

mod browser;
mod catch_up;
mod checks;
mod cli;
mod config_file;
mod connections;
mod crash;
mod deliveries;
mod deployment;
mod disk;
mod durability;
mod fake_github;
mod github_api;
mod github_app;
mod given_up;
mod helpers;
mod hostile;
mod insights;
mod intake;
mod layout;
mod locks;
mod logs;
mod notify;
mod operations;
mod operator;
mod other_events;
mod postgres;
mod pull_request;
mod replicas;
mod runner;
