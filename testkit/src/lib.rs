//! Test support for deployhook's tests and benchmarks, kept out of the shipped binary: a
//! workspace member that only `[dev-dependencies]` name, so `cargo build --release` never
//! compiles it while `cargo test` and `cargo bench` find it with no extra flag.
//!
//! `postgres`: throwaway PostgreSQL servers (one shared per test process, or private ones
//! to stop and restart), each test a fresh database of its own.

pub mod postgres;
