//! The server's validated configuration: built once at start from the `serve` arguments and
//! the two secrets in the environment, then shared read-only. Tests build it directly.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::cli::ServeArgs;
use crate::deploy_worker::QueueConfig;
use crate::ids::Environment;
use crate::outbox_worker::OutboxConfig;
use crate::signature::WebhookSecrets;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` only when started with `--insecure-skip-signature`.
    pub webhook_secrets: Option<WebhookSecrets>,
    pub github: GitHubConfig,
    pub deploy: DeployConfig,
    /// Path of the SQLite database, or [`crate::store::IN_MEMORY`].
    pub database: String,
    pub database_sync: crate::store::Sync,
    pub queue: QueueConfig,
    pub outbox: OutboxConfig,
    /// How long shutdown waits for running deploys.
    pub shutdown_timeout: Duration,
}

/// How to reach GitHub's REST API.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// Without a trailing slash.
    pub api_url: String,
    /// `SecretString`'s `Debug` prints `[REDACTED]`.
    pub token: SecretString,
}

/// What to deploy and how.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub environment: Environment,
    /// `None`: each repository's default branch.
    pub branch: Option<String>,
    pub required_contexts: Vec<String>,
    /// The deploy command's argv; never empty.
    pub command: Vec<String>,
    pub timeout: Duration,
    /// Server environment variables copied into the deploy command's environment.
    pub pass_env: Vec<String>,
}

/// Reads one of the environment-only settings (the secrets).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Validates `args`, reading `GITHUB_WEBHOOK_SECRET` and `GITHUB_TOKEN` through `env`.
    pub fn from_args(args: ServeArgs, env: EnvLookup<'_>) -> anyhow::Result<Self> {
        let webhook_secrets = env("GITHUB_WEBHOOK_SECRET")
            .as_deref()
            .and_then(WebhookSecrets::from_list);
        if webhook_secrets.is_none() && !args.insecure_skip_signature {
            bail!(
                "GITHUB_WEBHOOK_SECRET is not set: set it to the secret of the GitHub webhook \
                 (or pass --insecure-skip-signature to accept unsigned deliveries, for local \
                 experiments only)"
            );
        }
        let token = env("GITHUB_TOKEN")
            .filter(|t| !t.trim().is_empty())
            .context(
                "GITHUB_TOKEN is not set: deployhook needs a token with Deployments: write \
                 to create deployments and post their statuses",
            )?;
        anyhow::ensure!(
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_ok(),
            "GITHUB_TOKEN contains characters that cannot be sent in a header (a stray \
             newline or quote?)"
        );
        let command = match args.deploy_command.as_deref().map(str::trim) {
            None | Some("") => bail!(
                "DEPLOY_COMMAND is not set: set it to the command that deploys \
                 (for a first try, DEPLOY_COMMAND=examples/deploy.sh)"
            ),
            Some(line) => shell_words::split(line)
                .with_context(|| format!("DEPLOY_COMMAND {line:?} cannot be split into words"))?,
        };
        let environment = Environment::parse(&args.environment)
            .context("DEPLOYHOOK_ENVIRONMENT is not a valid environment name")?;
        Ok(Self {
            listen: args.listen,
            webhook_secrets: if args.insecure_skip_signature {
                None
            } else {
                webhook_secrets
            },
            github: GitHubConfig {
                api_url: args.github_api_url.trim_end_matches('/').to_owned(),
                token: SecretString::from(token),
            },
            deploy: DeployConfig {
                environment,
                branch: args.branch.filter(|b| !b.trim().is_empty()),
                required_contexts: non_empty(args.required_contexts),
                command,
                timeout: args.deploy_timeout,
                pass_env: non_empty(args.pass_env),
            },
            database: args.database,
            database_sync: args.database_sync,
            queue: QueueConfig {
                max_concurrent: usize::from(args.max_concurrent_deploys),
                policy: args.policy,
                on_interrupt: args.on_interrupt,
            },
            outbox: OutboxConfig {
                max_age: args.outbox_max_age,
                ..OutboxConfig::default()
            },
            shutdown_timeout: args.shutdown_timeout,
        })
    }
}

/// Drops the empty entries a comma-separated setting yields for "" or "a,,b".
fn non_empty(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let argv = [
            "deployhook",
            "serve",
            "--deploy-command",
            "./deploy.sh --fast 'two words'",
        ];
        let cli = Cli::try_parse_from(argv.iter().chain(extra)).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        args
    }

    fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const BOTH: &[(&str, &str)] = &[
        ("GITHUB_WEBHOOK_SECRET", "s3cret"),
        ("GITHUB_TOKEN", "ghp_x"),
    ];

    #[test]
    fn the_deploy_command_is_split_like_a_shell_would() {
        let config = Config::from_args(args(&[]), &env_with(BOTH)).unwrap();
        assert_eq!(
            config.deploy.command,
            ["./deploy.sh", "--fast", "two words"]
        );
    }

    #[test]
    fn serve_refuses_to_start_without_a_secret_unless_told_to_skip_signatures() {
        let env = env_with(&[("GITHUB_TOKEN", "ghp_x")]);
        let err = Config::from_args(args(&[]), &env).unwrap_err();
        assert!(err.to_string().contains("GITHUB_WEBHOOK_SECRET"), "{err}");
        let config = Config::from_args(args(&["--insecure-skip-signature"]), &env).unwrap();
        assert!(config.webhook_secrets.is_none());
    }

    #[test]
    fn serve_refuses_to_start_without_a_token() {
        let env = env_with(&[("GITHUB_WEBHOOK_SECRET", "s3cret")]);
        let err = Config::from_args(args(&[]), &env).unwrap_err();
        assert!(err.to_string().contains("GITHUB_TOKEN"), "{err}");
    }

    #[test]
    fn comma_separated_settings_drop_empty_entries() {
        let extra = ["--required-contexts", "ci/build,, lint", "--pass-env", ""];
        let config = Config::from_args(args(&extra), &env_with(BOTH)).unwrap();
        assert_eq!(config.deploy.required_contexts, ["ci/build", "lint"]);
        assert!(config.deploy.pass_env.is_empty());
    }

    #[test]
    fn debug_output_of_the_config_shows_no_secret() {
        let config = Config::from_args(args(&[]), &env_with(BOTH)).unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("ghp_x"),
            "{shown}"
        );
    }
}
