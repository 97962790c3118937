//! `deployhook try`.
use std::process::ExitCode;
pub async fn run(_args: crate::cli::TryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deployhook try` is not finished yet")
}
