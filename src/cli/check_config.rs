//! `deployhook check-config`: validates a config file and prints the environments it
//! describes and who is notified; errors name the line and column. It also looks at what
//! the file points to on this machine — each environment's working directory and commands
//! (`deploy::preflight`) — and prints what would stop a deploy from starting: as warnings,
//! or, with `--strict`, as errors (for CI, or an install script on the deploy host).

use std::process::ExitCode;

use crate::cli::CheckConfigArgs;
use crate::cli::terminal::{errln, outln};
use crate::config::file;
use crate::deploy::preflight;

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let file = file::load(&args.config)?;
    let problems = preflight::check_all(&file.environments);
    match (problems.len(), args.strict) {
        (0, _) => outln!("{}: OK", args.config.display()),
        (n, false) => outln!(
            "{}: valid, with {n} warning{} about this machine (deploys would fail to start \
             here; --strict makes this an error)",
            args.config.display(),
            if n == 1 { "" } else { "s" }
        ),
        (n, true) => outln!(
            "{}: valid, but {n} problem{} on this machine would stop deploys from starting",
            args.config.display(),
            if n == 1 { "" } else { "s" }
        ),
    }
    for environment in &file.environments {
        outln!("{}", file::summary(environment));
    }
    for table in &file.notify {
        outln!("{}", crate::config::notify::summary(table));
    }
    let label = if args.strict { "error" } else { "warning" };
    for problem in &problems {
        errln!("{label}: {problem}");
    }
    Ok(if args.strict && !problems.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
