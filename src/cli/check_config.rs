//! `deployhook check-config`: validates a config file and prints the environments it
//! describes and who is notified; errors name the line and column.

use std::process::ExitCode;

use crate::cli::CheckConfigArgs;
use crate::config::file;

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let file = file::load(&args.config)?;
    println!("{}: OK", args.config.display());
    for environment in &file.environments {
        println!("{}", file::summary(environment));
    }
    for table in &file.notify {
        println!("{}", crate::config::notify::summary(table));
    }
    Ok(ExitCode::SUCCESS)
}
