//! `deployhook check-config`: validates a config file and prints the environments it
//! describes; errors name the line and column.

use std::process::ExitCode;

use crate::cli::CheckConfigArgs;
use crate::config::file;

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let environments = file::load(&args.config)?;
    println!("{}: OK", args.config.display());
    for environment in &environments {
        println!("{}", file::summary(environment));
    }
    Ok(ExitCode::SUCCESS)
}
