//! The `deployhook` binary: reads `.env`, parses the command line, and hands over to the
//! library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use deployhook::cli::{CheckConfigArgs, Cli, Command, ReplayArgs, ServeArgs};
use deployhook::config::Config;
use deployhook::server::{Application, shutdown_signal};
use deployhook::{replay, telemetry};

/// mimalloc: in profiles, glibc's allocator took about a tenth of the server's CPU per
/// delivery; the request path makes many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Before clap reads the environment, so `.env` settings count as environment ones.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Err(err) = dotenv
        && !err.not_found()
    {
        eprintln!("error: could not read .env: {err}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Replay(args) => replay(args).await,
        Command::CheckConfig(args) => check_config(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args, &|name| std::env::var(name).ok())?;
    let app = Application::build(config).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let environments = deployhook::config_file::load(&args.config)?;
    println!("{}: OK", args.config.display());
    for environment in &environments {
        println!("{}", deployhook::config_file::summary(environment));
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let env_secret = std::env::var("GITHUB_WEBHOOK_SECRET").ok();
    // Of several secrets (a rotation), GitHub signs with the one set on the hook: the first.
    let secret = args.secret.clone().or_else(|| {
        env_secret
            .as_deref()
            .and_then(|list| list.split(',').map(str::trim).find(|s| !s.is_empty()))
            .map(str::to_owned)
    });
    let reply = replay::replay(&args, secret.as_deref())
        .await
        .context("replay failed")?;
    println!("{}", reply.status);
    println!("{}", reply.body);
    Ok(if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
