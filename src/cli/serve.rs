//! `deployhook serve`'s settings turned into a [`Config`]: the arguments (flags or their
//! environment variables), the config file when one is named, and the secrets, which are
//! read from the environment only. Every refusal says what to set and how.

use std::process::ExitCode;

use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::cli::ServeArgs;
use crate::config::{
    CommandsConfig, Config, ConnectionLimits, DEFAULT_TIMEOUT, EnvironmentConfig, GitHubAuth,
    GitHubConfig, MIN_TOKEN_CHARS, OutboxConfig, Retention, SignInConfig, TrustedProxies,
};
use crate::model::{DatabaseLocation, Environment};
use crate::web::Application;
use crate::webhook::signature::WebhookSecrets;

/// The environment of the single-environment setup when none is named.
const DEFAULT_ENVIRONMENT: &str = "production";

/// The command: builds the configuration, binds, and serves until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = build_config(args, &super::process_env)?;
    // Warnings, not errors: the directory may be mounted, or the script deployed, later.
    for problem in crate::deploy::preflight::check_all(&config.environments) {
        tracing::warn!("{problem} (deploys there will fail until this is fixed)");
    }
    let app = Application::build(config).await?;
    app.run_until_signalled().await?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one of the environment-only settings (the secrets).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Validates `args`, reading `GITHUB_WEBHOOK_SECRET` and `GITHUB_TOKEN` through `env`.
/// Every problem found is reported at once: a first run should not take one start per
/// missing setting.
pub fn build_config(args: ServeArgs, env: EnvLookup<'_>) -> anyhow::Result<Config> {
    let mut problems: Vec<anyhow::Error> = Vec::new();
    let listen = listen_address(&args.listen, env).unwrap_or_else(|err| {
        problems.push(err);
        std::net::SocketAddr::from(([127, 0, 0, 1], 4567))
    });
    let webhook_secrets = env("GITHUB_WEBHOOK_SECRET")
        .as_deref()
        .and_then(WebhookSecrets::from_list);
    if webhook_secrets.is_none() && !args.insecure_skip_signature {
        problems.push(anyhow::anyhow!(
            "GITHUB_WEBHOOK_SECRET is not set: set it to the secret of the GitHub webhook \
             (or pass --insecure-skip-signature to accept unsigned deliveries, for local \
             experiments only)"
        ));
    }
    let auth = github_auth(env).map_err(|err| problems.push(err)).ok();
    let environments = match &args.config {
        Some(path) => refuse_environment_settings(&args).and_then(|()| {
            let file = crate::config::file::load(path)?;
            let notify = crate::config::notify::resolve(&file.notify, env)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok((file.environments, notify))
        }),
        None => environment_from_args(&args).map(|e| (vec![e], vec![])),
    };
    let environments = environments.map_err(|err| problems.push(err)).ok();
    let (admin_token, metrics_token) = (
        secret(env, "DEPLOYHOOK_ADMIN_TOKEN")
            .map_err(|err| problems.push(err))
            .ok(),
        secret(env, "DEPLOYHOOK_METRICS_TOKEN")
            .map_err(|err| problems.push(err))
            .ok(),
    );
    let trusted_proxies = TrustedProxies::parse(args.trusted_proxies.iter().map(String::as_str))
        .map_err(|err| problems.push(anyhow::anyhow!("DEPLOYHOOK_TRUSTED_PROXIES: {err}")))
        .unwrap_or_default();
    let public_url = match args.public_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => public_url(url).map_err(|err| problems.push(err)).ok(),
    };
    let sign_in = sign_in(&args, env)
        .map_err(|err| problems.push(err))
        .ok()
        .flatten();
    let database = DatabaseLocation::parse(&args.database)
        .map_err(|err| problems.push(err.into()))
        .ok();
    let (
        Some(auth),
        Some((environments, notify)),
        Some(admin_token),
        Some(metrics_token),
        Some(database),
    ) = (auth, environments, admin_token, metrics_token, database)
    else {
        return Err(all_of(problems));
    };
    if let (None, Some(asking)) = (&sign_in, environments.iter().find(|e| e.approval.is_some())) {
        problems.push(anyhow::anyhow!(
            "environment {} asks for approvals, which people give signed in with GitHub: set \
             DEPLOYHOOK_GITHUB_CLIENT_ID and DEPLOYHOOK_GITHUB_CLIENT_SECRET (README, \"People\")",
            asking.name
        ));
    }
    let commands = match commands(&args, &environments) {
        Ok(commands) => commands,
        Err(problem) => {
            problems.push(problem);
            CommandsConfig::default()
        }
    };
    if !problems.is_empty() {
        return Err(all_of(problems));
    }
    Ok(Config {
        listen,
        webhook_secrets: if args.insecure_skip_signature {
            None
        } else {
            webhook_secrets
        },
        github: GitHubConfig {
            api_url: args.github_api_url.trim_end_matches('/').to_owned(),
            auth,
        },
        environments,
        public_url,
        database,
        database_sync: args.database_sync,
        database_log_limit: args.database_log_limit,
        retention: Retention {
            deliveries: args.retain_deliveries,
            deploys: args.retain_deploys,
        },
        max_concurrent_deploys: usize::from(args.max_concurrent_deploys),
        outbox: OutboxConfig {
            max_age: args.outbox_max_age,
            ..OutboxConfig::default()
        },
        checks_poll: args.checks_poll.max(std::time::Duration::from_secs(1)),
        connections: ConnectionLimits {
            max_connections: args.max_connections as usize,
            max_connections_per_client: args.max_connections_per_client as usize,
            header_timeout: args.header_timeout,
            ..ConnectionLimits::default()
        },
        shutdown_timeout: args.shutdown_timeout,
        lease: args.lease.max(std::time::Duration::from_secs(3)),
        admin_token,
        metrics_token,
        trusted_proxies,
        notify,
        log_deploy_output: args.log_deploy_output,
        sign_in,
        permission_cache: args
            .permission_cache
            .min(std::time::Duration::from_secs(60 * 60)),
        commands,
    })
}

/// The comment commands' prefix and default environment, checked.
fn commands(
    args: &ServeArgs,
    environments: &[crate::config::EnvironmentConfig],
) -> anyhow::Result<CommandsConfig> {
    let prefix = args.command_prefix.trim().to_owned();
    CommandsConfig::valid_prefix(&prefix).map_err(anyhow::Error::msg)?;
    let default_environment = match args.command_environment.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => {
            let Some(found) = crate::config::find_environment(environments, name) else {
                let names: Vec<&str> = environments.iter().map(|e| e.name.as_ref()).collect();
                bail!(
                    "DEPLOYHOOK_COMMAND_ENVIRONMENT={name}: no such environment; configured: {}",
                    names.join(", ")
                );
            };
            Some(found.name.clone())
        }
    };
    Ok(CommandsConfig {
        prefix,
        default_environment,
    })
}

/// Signing in with GitHub: a client id and its secret, both or neither.
fn sign_in(args: &ServeArgs, env: EnvLookup<'_>) -> anyhow::Result<Option<SignInConfig>> {
    let id = args.github_client_id.as_deref().map(str::trim);
    let secret = env("DEPLOYHOOK_GITHUB_CLIENT_SECRET").filter(|s| !s.trim().is_empty());
    let (id, secret) = match (id.filter(|i| !i.is_empty()), secret) {
        (None, None) => return Ok(None),
        (Some(id), Some(secret)) => (id, secret),
        (Some(_), None) => bail!(
            "DEPLOYHOOK_GITHUB_CLIENT_ID is set but DEPLOYHOOK_GITHUB_CLIENT_SECRET is not: \
             signing in with GitHub needs both (the OAuth client's id and its secret)"
        ),
        (None, Some(_)) => bail!(
            "DEPLOYHOOK_GITHUB_CLIENT_SECRET is set but DEPLOYHOOK_GITHUB_CLIENT_ID is not: \
             signing in with GitHub needs both"
        ),
    };
    anyhow::ensure!(
        id.len() <= 100
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_'),
        "DEPLOYHOOK_GITHUB_CLIENT_ID {id:?} is not a client id (Iv1.… or Ov23…)"
    );
    let web_url = match args.github_web_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            anyhow::ensure!(
                url.starts_with("https://") || url.starts_with("http://"),
                "GITHUB_WEB_URL {url:?} is not an http(s) address"
            );
            url.trim_end_matches('/').to_owned()
        }
        _ => GitHubConfig {
            api_url: args.github_api_url.trim_end_matches('/').to_owned(),
            auth: GitHubAuth::Token(SecretString::from(String::new())),
        }
        .web_url(),
    };
    Ok(Some(SignInConfig {
        client_id: id.to_owned(),
        client_secret: SecretString::from(secret),
        web_url,
    }))
}

/// One error saying everything found: the problem itself when there is one, else a list.
fn all_of(mut problems: Vec<anyhow::Error>) -> anyhow::Error {
    if problems.len() == 1 {
        return problems.remove(0);
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  - {p:#}")).collect();
    anyhow::anyhow!(
        "{} settings need attention before deployhook can start:\n{}",
        problems.len(),
        list.join("\n")
    )
}

/// `DEPLOYHOOK_LISTEN` / `--listen`: an IP address or a host name (`localhost`), and a port.
/// A name is resolved once, at start; IPv4 is preferred when it has both (the guide's
/// `localhost:4567` then listens where browsers and `gh webhook forward` look first).
fn listen_address(text: &str, env: EnvLookup<'_>) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    let setting = if env("DEPLOYHOOK_LISTEN").is_some_and(|v| v.trim() == text) {
        "DEPLOYHOOK_LISTEN"
    } else {
        "--listen"
    };
    let shape = "write HOST:PORT, such as 127.0.0.1:4567 (this machine only), \
                 0.0.0.0:4567 (every interface) or localhost:4567";
    let Some((host, port)) = text.rsplit_once(':') else {
        bail!("{setting} {text:?} has no port: {shape}");
    };
    if port.parse::<u16>().is_err() {
        bail!("{setting} {text:?}: {port:?} is not a port number (0-65535): {shape}");
    }
    if host.is_empty() {
        bail!("{setting} {text:?} has no host: {shape}");
    }
    let addresses: Vec<std::net::SocketAddr> = text
        .to_socket_addrs()
        .with_context(|| format!("{setting} {text:?}: the host {host:?} is not known here"))?
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .with_context(|| format!("{setting} {text:?}: the host {host:?} has no address"))
}

/// An optional secret from the environment; too short a one is refused: its length is what
/// makes guessing it hopeless, since wrong guesses are limited per address, not in all
/// (`web::guesses`).
fn secret(env: EnvLookup<'_>, name: &str) -> anyhow::Result<Option<SecretString>> {
    let Some(value) = env(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let length = value.chars().count();
    // The API tells personal tokens by this prefix: an admin token with it would never
    // be taken for itself.
    anyhow::ensure!(
        !value.starts_with("dhp_"),
        "{name} begins with dhp_, which marks personal tokens: make another with \
         `openssl rand -hex 32`"
    );
    anyhow::ensure!(
        length >= MIN_TOKEN_CHARS,
        "{name} is {length} characters long; it must have at least {MIN_TOKEN_CHARS}, random, \
         so that guessing it is hopeless: make one with `openssl rand -hex 32`"
    );
    Ok(Some(SecretString::from(value)))
}

/// A token, or a GitHub App's id and key: exactly one of the two.
pub fn github_auth(env: EnvLookup<'_>) -> anyhow::Result<GitHubAuth> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let token = set("GITHUB_TOKEN");
    let app_id = set("GITHUB_APP_ID");
    let key_file = set("GITHUB_APP_PRIVATE_KEY_FILE");
    let key = match (set("GITHUB_APP_PRIVATE_KEY"), &key_file) {
        (Some(_), Some(_)) => {
            bail!("GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_FILE are both set: keep one")
        }
        // A PEM squeezed onto one line (systemd, .env) keeps its line breaks as `\n`.
        (Some(pem), None) => Some(pem.replace("\\n", "\n")),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("could not read GITHUB_APP_PRIVATE_KEY_FILE {path}"))?,
        ),
        (None, None) => None,
    };
    match (token, app_id, key) {
        (Some(_), Some(_), _) | (Some(_), None, Some(_)) => bail!(
            "both GITHUB_TOKEN and a GitHub App (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY…) are \
             set: keep the App's settings and unset GITHUB_TOKEN to act as the App, or unset \
             the GITHUB_APP_* variables to use the token"
        ),
        (Some(token), None, None) => {
            anyhow::ensure!(
                reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_ok(),
                "GITHUB_TOKEN contains characters that cannot be sent in a header (a stray \
                 newline or quote?)"
            );
            Ok(GitHubAuth::Token(SecretString::from(token)))
        }
        (None, Some(app_id), Some(key)) => {
            // Parsed now so a wrong key stops the server at start, not at the first deploy.
            crate::github::AppCredentials::from_pem(&app_id, key.as_bytes())?;
            Ok(GitHubAuth::App {
                app_id: app_id.trim().to_owned(),
                private_key: SecretString::from(key),
            })
        }
        (None, Some(_), None) => bail!(
            "GITHUB_APP_ID is set but not the App's private key: set GITHUB_APP_PRIVATE_KEY_FILE \
             to the .pem file downloaded from the App's settings"
        ),
        (None, None, Some(_)) => bail!(
            "the GitHub App's private key is set but not GITHUB_APP_ID: set it to the App's id \
             (or client id), shown on the App's settings page"
        ),
        (None, None, None) => bail!(
            "GITHUB_TOKEN is not set: deployhook needs a token with Deployments: write to \
             create deployments and post their statuses (or a GitHub App: GITHUB_APP_ID and \
             GITHUB_APP_PRIVATE_KEY_FILE)"
        ),
    }
}

/// The single environment described by flags and environment variables.
fn environment_from_args(args: &ServeArgs) -> anyhow::Result<EnvironmentConfig> {
    let command = match args.deploy_command.as_deref().map(str::trim) {
        None | Some("") => bail!(
            "DEPLOY_COMMAND is not set: set it to the command that deploys \
             (for a first try, DEPLOY_COMMAND=examples/deploy.sh), or describe your \
             environments in a config file (DEPLOYHOOK_CONFIG=deployhook.toml)"
        ),
        Some(line) => shell_words::split(line)
            .with_context(|| format!("DEPLOY_COMMAND {line:?} cannot be split into words"))?,
    };
    let name = args.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
    let name = Environment::parse(name)
        .context("DEPLOYHOOK_ENVIRONMENT is not a valid environment name")?;
    let mut environment = EnvironmentConfig::new(name, command);
    environment.branch = args.branch.clone().filter(|b| !b.trim().is_empty());
    environment.required_contexts = non_empty(args.required_contexts.clone().unwrap_or_default());
    environment.timeout = args.deploy_timeout.unwrap_or(DEFAULT_TIMEOUT);
    environment.pass_env = non_empty(args.pass_env.clone().unwrap_or_default());
    if let Some(problem) = environment
        .pass_env
        .iter()
        .find_map(|name| crate::config::file::variable_name_problem(name))
    {
        bail!("DEPLOYHOOK_PASS_ENV: {problem}");
    }
    environment.policy = args.policy.unwrap_or_default();
    environment.on_interrupt = args.on_interrupt.unwrap_or_default();
    if let Some(checks) = &args.checks {
        environment.checks = checks_gate(checks)?;
    }
    if let Some(timeout) = args.checks_timeout {
        anyhow::ensure!(
            !timeout.is_zero(),
            "DEPLOYHOOK_CHECKS_TIMEOUT must be longer than 0s"
        );
        environment.checks_timeout = timeout;
    }
    if environment.checks.is_some() && !environment.required_contexts.is_empty() {
        bail!(
            "DEPLOYHOOK_REQUIRED_CONTEXTS and DEPLOYHOOK_CHECKS both gate on CI; with \
             DEPLOYHOOK_CHECKS deployhook waits itself and creates the deployment with \
             required_contexts = [] — unset DEPLOYHOOK_REQUIRED_CONTEXTS"
        );
    }
    Ok(environment)
}

/// `DEPLOYHOOK_CHECKS`: `none`, `all`, or check names separated by commas.
fn checks_gate(text: &str) -> anyhow::Result<Option<crate::model::Required>> {
    use crate::model::Required;
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    match names.as_slice() {
        [] => bail!("DEPLOYHOOK_CHECKS is empty: set it to none, all, or check names (test,lint)"),
        [word] if word == "none" => Ok(None),
        [word] if word == "all" => Ok(Some(Required::All)),
        _ => Ok(Some(Required::Named(names))),
    }
}

/// With a config file, the per-environment settings live in it: a flag or variable that
/// would be silently ignored is an error instead.
fn refuse_environment_settings(args: &ServeArgs) -> anyhow::Result<()> {
    let set = [
        ("DEPLOY_COMMAND", args.deploy_command.is_some()),
        ("DEPLOYHOOK_ENVIRONMENT", args.environment.is_some()),
        ("DEPLOYHOOK_BRANCH", args.branch.is_some()),
        (
            "DEPLOYHOOK_REQUIRED_CONTEXTS",
            args.required_contexts.is_some(),
        ),
        ("DEPLOYHOOK_DEPLOY_TIMEOUT", args.deploy_timeout.is_some()),
        ("DEPLOYHOOK_PASS_ENV", args.pass_env.is_some()),
        ("DEPLOYHOOK_POLICY", args.policy.is_some()),
        ("DEPLOYHOOK_ON_INTERRUPT", args.on_interrupt.is_some()),
        ("DEPLOYHOOK_CHECKS", args.checks.is_some()),
        ("DEPLOYHOOK_CHECKS_TIMEOUT", args.checks_timeout.is_some()),
    ];
    let names: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    if !names.is_empty() {
        bail!(
            "{} set as well as the config file: with a config file, each environment's \
             settings go in its [[environment]] table; unset {}",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

/// `DEPLOYHOOK_PUBLIC_URL`: an http(s) URL, kept without its trailing slash.
fn public_url(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url)
        .with_context(|| format!("DEPLOYHOOK_PUBLIC_URL {url:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https") && parsed.query().is_none(),
        "DEPLOYHOOK_PUBLIC_URL {url:?} must be an http(s) URL without a query, such as \
         https://deploy.example.com"
    );
    Ok(url.trim_end_matches('/').to_owned())
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
        let config = build_config(args(&[]), &env_with(BOTH)).unwrap();
        assert_eq!(
            config.environments[0].command,
            ["./deploy.sh", "--fast", "two words"]
        );
    }

    #[test]
    fn serve_refuses_to_start_without_a_secret_unless_told_to_skip_signatures() {
        let env = env_with(&[("GITHUB_TOKEN", "ghp_x")]);
        let err = build_config(args(&[]), &env).unwrap_err();
        assert!(err.to_string().contains("GITHUB_WEBHOOK_SECRET"), "{err}");
        let config = build_config(args(&["--insecure-skip-signature"]), &env).unwrap();
        assert!(config.webhook_secrets.is_none());
    }

    #[test]
    fn serve_refuses_to_start_without_a_token() {
        let env = env_with(&[("GITHUB_WEBHOOK_SECRET", "s3cret")]);
        let err = build_config(args(&[]), &env).unwrap_err();
        assert!(err.to_string().contains("GITHUB_TOKEN"), "{err}");
    }

    #[test]
    fn comma_separated_settings_drop_empty_entries() {
        let extra = ["--required-contexts", "ci/build,, lint", "--pass-env", ""];
        let config = build_config(args(&extra), &env_with(BOTH)).unwrap();
        assert_eq!(
            config.environments[0].required_contexts,
            ["ci/build", "lint"]
        );
        assert!(config.environments[0].pass_env.is_empty());
    }

    #[test]
    fn debug_output_of_the_config_shows_no_secret() {
        let database = ["--database", "postgres://app:db-pa55@db.example/deployhook"];
        let config = build_config(args(&database), &env_with(BOTH)).unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("ghp_x") && !shown.contains("db-pa55"),
            "{shown}"
        );
        assert!(shown.contains("postgres://app:***@db.example"), "{shown}");
    }

    #[test]
    fn a_database_setting_that_cannot_work_is_refused_with_the_other_problems() {
        let keywords = ["--database", "host=db user=app password=db-pa55"];
        let err = build_config(args(&keywords), &env_with(&[])).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("GITHUB_TOKEN"), "{message}");
        assert!(
            message.contains("libpq keyword string (host=, user=, password=)"),
            "{message}"
        );
        assert!(!message.contains("db-pa55"), "{message}");
    }

    #[test]
    fn a_token_and_an_app_together_are_refused_saying_which_to_drop() {
        let env = env_with(&[
            ("GITHUB_WEBHOOK_SECRET", "s3cret"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("GITHUB_APP_ID", "123456"),
            ("GITHUB_APP_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----"),
        ]);
        let err = build_config(args(&[]), &env).unwrap_err().to_string();
        assert!(
            err.contains("unset GITHUB_TOKEN to act as the App"),
            "{err}"
        );
    }

    #[test]
    fn half_an_app_configuration_says_what_is_missing() {
        let id_only = env_with(&[("GITHUB_WEBHOOK_SECRET", "s"), ("GITHUB_APP_ID", "1")]);
        let err = build_config(args(&[]), &id_only).unwrap_err().to_string();
        assert!(err.contains("GITHUB_APP_PRIVATE_KEY_FILE"), "{err}");
        let missing_file = env_with(&[
            ("GITHUB_WEBHOOK_SECRET", "s"),
            ("GITHUB_APP_ID", "1"),
            ("GITHUB_APP_PRIVATE_KEY_FILE", "/nonexistent/app.pem"),
        ]);
        let err = format!("{:#}", build_config(args(&[]), &missing_file).unwrap_err());
        assert!(
            err.contains("could not read GITHUB_APP_PRIVATE_KEY_FILE /nonexistent/app.pem"),
            "{err}"
        );
        let bad_key = env_with(&[
            ("GITHUB_WEBHOOK_SECRET", "s"),
            ("GITHUB_APP_ID", "1"),
            ("GITHUB_APP_PRIVATE_KEY", "not a key"),
        ]);
        let err = build_config(args(&[]), &bad_key).unwrap_err().to_string();
        assert!(
            err.contains("not an RSA private key") && !err.contains("not a key"),
            "{err}"
        );
    }

    #[test]
    fn a_config_file_and_single_environment_settings_are_not_mixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployhook.toml");
        std::fs::write(
            &path,
            "[[environment]]\nname = \"staging\"\nrepositories = [\"acme/*\"]\ncommand = [\"./d\"]\n",
        )
        .unwrap();
        let config_arg = path.display().to_string();
        let err = build_config(args(&["--config", &config_arg]), &env_with(BOTH))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("DEPLOY_COMMAND set as well as the config file"),
            "{err}"
        );

        let cli = Cli::try_parse_from(["deployhook", "serve", "--config", &config_arg]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let config = build_config(args, &env_with(BOTH)).unwrap();
        assert_eq!(config.environments.len(), 1);
        assert_eq!(config.environments[0].name.as_ref(), "staging");
    }

    #[test]
    fn every_missing_setting_is_reported_in_one_go() {
        let cli = Cli::try_parse_from(["deployhook", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let err = build_config(args, &env_with(&[])).unwrap_err().to_string();
        assert!(
            err.starts_with("3 settings need attention before deployhook can start:"),
            "{err}"
        );
        for name in ["GITHUB_WEBHOOK_SECRET", "GITHUB_TOKEN", "DEPLOY_COMMAND"] {
            assert!(
                err.contains(&format!("  - {name} is not set")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn a_token_shorter_than_the_minimum_is_refused_saying_the_minimum_and_how_to_make_one() {
        let short = env_with(&[
            ("GITHUB_WEBHOOK_SECRET", "s3cret"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("DEPLOYHOOK_ADMIN_TOKEN", "sixteen-chars-ok"),
            (
                "DEPLOYHOOK_METRICS_TOKEN",
                "0123456789abcdef0123456789abcde",
            ),
        ]);
        let err = build_config(args(&[]), &short).unwrap_err().to_string();
        for expected in [
            "DEPLOYHOOK_ADMIN_TOKEN is 16 characters long; it must have at least 32",
            "DEPLOYHOOK_METRICS_TOKEN is 31 characters long",
            "openssl rand -hex 32",
        ] {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        assert!(
            !err.contains("sixteen-chars-ok"),
            "the token itself is not shown: {err}"
        );
        let long = env_with(&[
            ("GITHUB_WEBHOOK_SECRET", "s3cret"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("DEPLOYHOOK_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
        ]);
        assert!(
            build_config(args(&[]), &long)
                .unwrap()
                .admin_token
                .is_some()
        );
    }

    #[test]
    fn trusted_proxies_are_parsed_and_a_wrong_one_is_refused_by_name() {
        let config = build_config(
            args(&["--trusted-proxies", "10.0.0.0/8, ::1"]),
            &env_with(BOTH),
        )
        .unwrap();
        assert!(config.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert!(
            !config
                .trusted_proxies
                .contains("192.0.2.1".parse().unwrap())
        );
        let err = build_config(args(&["--trusted-proxies", "proxy.lan"]), &env_with(BOTH))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("DEPLOYHOOK_TRUSTED_PROXIES: \"proxy.lan\" is not an IP address"),
            "{err}"
        );
    }

    #[test]
    fn listen_addresses_may_name_a_host_and_errors_name_the_setting_used() {
        let config = build_config(args(&["--listen", "localhost:4621"]), &env_with(BOTH)).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4621");
        let from_env = env_with(&[
            ("GITHUB_WEBHOOK_SECRET", "s3cret"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("DEPLOYHOOK_LISTEN", "localhost"),
        ]);
        let err = build_config(args(&["--listen", "localhost"]), &from_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("DEPLOYHOOK_LISTEN \"localhost\" has no port: write HOST:PORT"),
            "{err}"
        );
        let err = build_config(args(&["--listen", "127.0.0.1:http"]), &env_with(BOTH))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--listen \"127.0.0.1:http\": \"http\" is not a port"),
            "{err}"
        );
    }
}
