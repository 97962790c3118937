//! The `deployhook` binary: reads `--env-file` or `.env`, parses the command line, and hands over to the
//! library's [`deployhook::cli::run`].

use std::process::ExitCode;

use clap::Parser;
use deployhook::cli::{self, Cli, env_file, telemetry, terminal};

/// mimalloc: in profiles, glibc's allocator took about a tenth of the server's CPU per
/// delivery; the request path makes many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Before clap reads the environment, so the file's settings count as environment ones.
    let loaded = env_file::load(env_file::from_args(std::env::args_os()).as_deref());
    let cli = Cli::parse();
    let default_level = match cli.command {
        cli::Command::Try(_) => "warn",
        _ => "info",
    };
    telemetry::init(cli.log_format, default_level);
    if let Err(err) = loaded {
        terminal::print_error(format_args!("{err}"));
        return ExitCode::FAILURE;
    }
    match cli::run(cli.command).await {
        Ok(code) => code,
        Err(err) => {
            terminal::print_error(format_args!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}
