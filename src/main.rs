//! The `deployhook` binary: reads `.env`, parses the command line, and hands over to the
//! library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use deployhook::cli::{
    CheckConfigArgs, Cli, Command, DeployArgs, DeploymentsArgs, GitHubArgs, RedeliverArgs,
    ReplayArgs, ServeArgs,
};
use deployhook::config::Config;
use deployhook::github::GitHubClient;
use deployhook::ids::RepoName;
use deployhook::redeliver::{self, Hook};
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
        Command::Redeliver(args) => redeliver(args).await,
        Command::Deploy(args) => deploy(args).await,
        Command::Deployments(args) => deployments(args).await,
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

/// The GitHub client of the commands, with the credentials `serve` would use.
fn github(args: &GitHubArgs) -> anyhow::Result<GitHubClient> {
    let auth = deployhook::config::github_auth(&|name| std::env::var(name).ok())?;
    let config = deployhook::config::GitHubConfig {
        api_url: args.github_api_url.trim_end_matches('/').to_owned(),
        auth,
    };
    GitHubClient::new(&config)
}

fn repository(name: &str) -> anyhow::Result<RepoName> {
    RepoName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn redeliver(args: RedeliverArgs) -> anyhow::Result<ExitCode> {
    let hook = match (&args.repo, &args.org, args.hook_id) {
        (Some(repo), _, Some(id)) => Hook::Repository {
            repo: repository(repo)?,
            id,
        },
        (None, Some(org), Some(id)) => Hook::Organization {
            org: org.clone(),
            id,
        },
        _ => Hook::App,
    };
    let github = github(&args.github)?;
    anyhow::ensure!(
        !github.is_app() || matches!(hook, Hook::App),
        "with GitHub App credentials, redeliver reads the App's own webhook: use --app (or \
         GITHUB_TOKEN with admin access to the repository's or organisation's webhook)"
    );
    let database = deployhook::store::open_read_only(&args.database)?;
    let attempts = github
        .hook_deliveries(&hook, redeliver::cutoff(args.since))
        .await
        .context("could not list the hook's deliveries")?;
    let seen = attempts.len();
    let mut recorded = std::collections::HashSet::new();
    for attempt in &attempts {
        if deployhook::store::deliveries::is_recorded(&database, &attempt.guid, hook.id())
            .context("could not read deployhook's database")?
        {
            recorded.insert(attempt.guid.clone());
        }
    }
    let plan = redeliver::plan(attempts, &recorded);
    println!(
        "{seen} delivery attempts since {}: {} delivered, {} recorded by deployhook though \
         GitHub saw them fail, {} to redeliver",
        humantime::format_duration(args.since),
        plan.delivered,
        plan.recorded,
        plan.redeliver.len()
    );
    for attempt in &plan.redeliver {
        let line = redeliver::describe(attempt);
        if !args.apply {
            println!("would redeliver {line}");
            continue;
        }
        match github.redeliver(&hook, attempt.id).await {
            Ok(()) => println!("redelivered {line}"),
            Err(err) => {
                println!("could not redeliver {line}: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if !args.apply && !plan.redeliver.is_empty() {
        println!("dry run: pass --apply to redeliver");
    }
    Ok(ExitCode::SUCCESS)
}

async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let repo = repository(&args.repo)?;
    let github = github(&args.github)?.for_repository(&repo).await?;
    let who = std::env::var("USER").unwrap_or_else(|_| "deployhook-cli".to_owned());
    let mut request = deployhook::manual::ManualDeployment::new(
        &args.git_ref,
        &args.environment,
        &args.task,
        &who,
    );
    if let Some(description) = &args.description {
        request.description = deployhook::text::description(description);
    }
    match github.create_manual_deployment(&repo, &request).await? {
        Ok(id) => {
            println!(
                "created deployment {id} of {repo}@{} to {}; deployhook runs it when GitHub \
                 sends the deployment event",
                args.git_ref, args.environment
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            println!("GitHub created no deployment: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn deployments(args: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let repo = repository(&args.repo)?;
    let github = github(&args.github)?.for_repository(&repo).await?;
    let listed = github
        .recent_deployments(&repo, args.environment.as_deref(), args.limit)
        .await?;
    print!("{}", deployhook::manual::table(&listed));
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
