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

/// `deployhook stand-in`: a stand-in for GitHub's REST API on this machine.
#[derive(Debug, Clone, Args)]
#[command(after_help = STAND_IN_AFTER_HELP)]
pub struct StandInArgs {
    /// Address and port to listen on; loopback only (127.0.0.1, ::1, localhost): the
    /// stand-in checks no credentials and is not for production.
    #[arg(long, default_value = "127.0.0.1:4568")]
    pub listen: String,

    /// The webhook URL the stand-in delivers its `deployment` and `deployment_status`
    /// events to [default: http://DEPLOYHOOK_LISTEN/event_handler, or
    /// http://127.0.0.1:4567/event_handler when DEPLOYHOOK_LISTEN is unset].
    #[arg(long)]
    pub deliver_to: Option<String>,

    /// The secret its deliveries are signed with (X-Hub-Signature-256): the server's
    /// webhook secret (of several comma-separated ones, the first). Without one, deliveries
    /// go unsigned (for `serve --insecure-skip-signature`).
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

/// Shown under `stand-in --help`: how to point a server at it.
const STAND_IN_AFTER_HELP: &str = "\
For trying deployhook and for tests; not for production. Point a server at it:
  GITHUB_API_URL=http://127.0.0.1:4568 GITHUB_TOKEN=any-value deployhook serve
It creates deployments (201) and delivers their signed `deployment` webhook, records
statuses (201) and delivers `deployment_status`, lists both back
(GET /repos/OWNER/REPO/deployments, …/deployments/ID/statuses), and answers the CI gate's
reads with no checks. Anything else: 404. State is kept in memory only.";

/// `deployhook try`: the whole round trip on this machine, without GitHub.
#[derive(Debug, Clone, Args)]
#[command(after_help = TRY_AFTER_HELP)]
pub struct TryArgs {
    /// Where the trial's server listens; when that port is taken, a free one is used
    /// instead (and said).
    #[arg(long, default_value = "127.0.0.1:4567")]
    pub listen: String,
    /// Run this deploy command instead of the demo (split into words like a shell would).
    /// Only this flag: a DEPLOY_COMMAND in the environment or `.env` is not used, so a
    /// trial in a project's folder never runs its real deploy by accident.
    #[arg(long, value_name = "COMMAND")]
    pub deploy_command: Option<String>,
}

/// Shown under `try --help`: what it sets up, and what of the environment it uses.
const TRY_AFTER_HELP: &str = "\
The server is `serve` with its defaults, except: its database is in a directory made under
$TMPDIR (removed at exit), GitHub is a stand-in on a free loopback port (as `deployhook
stand-in`), the webhook secret and admin token are made up for the run (both printed), and
the deploy command is a demo that prints what it deploys and sleeps 2 s, unless
--deploy-command names another (DEPLOY_COMMAND and DEPLOYHOOK_PASS_ENV of the environment
are not used). It listens on loopback only. It then sends the server a signed merged pull request of
acme/widgets and shows the deployment, the deploy's log and its statuses. Ctrl-C stops it.";
