//! The arguments of the commands that need neither the admin token nor GitHub's
//! credentials: `replay` (sign a saved payload and post it, as GitHub would),
//! `check-config`, `completions`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// File holding the payload; its bytes are sent exactly as they are.
    pub file: PathBuf,

    /// The event name to send as X-GitHub-Event (pull_request, deployment, ping, …).
    #[arg(long)]
    pub event: String,

    /// The server's webhook URL [default: http://DEPLOYHOOK_LISTEN/event_handler, or
    /// http://127.0.0.1:4567/event_handler when DEPLOYHOOK_LISTEN is unset].
    #[arg(long)]
    pub url: Option<String>,

    /// Secret to sign with [default: the first of GITHUB_WEBHOOK_SECRET]. Without either,
    /// the request goes unsigned.
    #[arg(long)]
    pub secret: Option<String>,

    /// Send `application/x-www-form-urlencoded` with the JSON in the `payload` field instead
    /// of `application/json`.
    #[arg(long)]
    pub form: bool,

    /// Value for X-GitHub-Hook-ID.
    #[arg(long)]
    pub hook_id: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(env = "DEPLOYHOOK_CONFIG", default_value = "deployhook.toml")]
    pub config: PathBuf,
    /// Fail (exit 1) when a working directory or a command the file names is missing, not
    /// executable, or a script without a `#!` line on this machine; without it, those
    /// are warnings.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Install, for example:\n  \
    bash: deployhook completions bash > /etc/bash_completion.d/deployhook\n  \
    zsh:  deployhook completions zsh > \"${fpath[1]}/_deployhook\"\n  \
    fish: deployhook completions fish > ~/.config/fish/completions/deployhook.fish")]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
