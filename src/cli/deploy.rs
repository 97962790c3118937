//! `deployhook deploy` and `deployhook deployments`: manual deploys, rollbacks and a look
//! at what was deployed, from the command line, through GitHub's Deployments API. A manual
//! deploy is an ordinary GitHub deployment: GitHub sends its `deployment` event and the
//! server runs it like any other, with its queue, log and statuses.

use std::process::ExitCode;

use anyhow::bail;

use crate::cli::terminal::{field, out, outln, print_error};
use crate::cli::{DeployArgs, DeploymentsArgs};
use crate::config::find_environment;
use crate::github::deployments::{Listed, ManualDeployment};
use crate::model::{RepoName, text};

/// `deployhook deploy`: creates the deployment; the server runs it when GitHub sends the
/// deployment event.
pub async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&args.repo)?;
    if !args.anyway {
        refuse_unknown_environment(&args, &repo)?;
    }
    // Before anything is created: a follow that cannot reach the server must not leave a
    // deployment behind that the user then waits on blind.
    let server = match args.follow {
        true => Some(super::follow::Server::new(&args.server)?),
        false => None,
    };
    let github = super::github(&args.github)?;
    let explained = super::explained(github.is_app());
    let github = github.for_repository(&repo).await.map_err(&explained)?;
    let who = super::user::name();
    let mut request = ManualDeployment::new(&args.git_ref, &args.environment, &args.task, &who);
    if let Some(description) = &args.description {
        request.description = text::description(description);
    }
    if args.force {
        request.payload["force"] = serde_json::Value::Bool(true);
    }
    match github
        .create_manual_deployment(&repo, &request)
        .await
        .map_err(&explained)?
    {
        Ok(id) => {
            outln!(
                "created deployment {id} of {repo}@{} to {}; deployhook runs it when GitHub \
                 sends the deployment event",
                args.git_ref,
                args.environment
            );
            match server {
                Some(server) => Ok(super::follow::follow(&server, id.get())
                    .await
                    .unwrap_or_else(|err| {
                        print_error(format_args!("{err:#}"));
                        ExitCode::from(super::follow::COULD_NOT_FOLLOW)
                    })),
                None => Ok(ExitCode::SUCCESS),
            }
        }
        Err(message) => {
            outln!("GitHub created no deployment: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A deployment to an environment this machine's configuration does not run would sit
/// `pending` on GitHub for ever (a typo such as `prodcution`): refused, naming the
/// environments there are, unless `--anyway`.
fn refuse_unknown_environment(args: &DeployArgs, repo: &RepoName) -> anyhow::Result<()> {
    let wanted = args.environment.as_str();
    let anyway = "pass --anyway if the deployment is meant for another system";
    let Some(path) = &args.config else {
        let only = std::env::var("DEPLOYHOOK_ENVIRONMENT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "production".to_owned());
        if wanted != only {
            bail!(
                "deployhook here runs only environment {only} (DEPLOYHOOK_ENVIRONMENT; no \
                 DEPLOYHOOK_CONFIG), so nothing would run a deployment to {wanted:?}: use \
                 -e {only}, or {anyway}"
            );
        }
        return Ok(());
    };
    let file = crate::config::file::load(path)?;
    let names: Vec<&str> = file.environments.iter().map(|e| e.name.as_ref()).collect();
    let Some(environment) = find_environment(&file.environments, wanted) else {
        let meant = crate::config::file::closest(wanted, &names)
            .map(|name| format!("did you mean {name}? "))
            .unwrap_or_default();
        bail!(
            "{} defines no environment {wanted:?}, so nothing would run the deployment: \
             {meant}(environments: {}); {anyway}",
            path.display(),
            names.join(", ")
        );
    };
    if !environment.accepts(repo) {
        let patterns: Vec<String> = environment
            .repositories
            .iter()
            .map(ToString::to_string)
            .collect();
        bail!(
            "environment {wanted} does not deploy {repo} (its repositories: {}), so nothing \
             would run the deployment; {anyway}",
            patterns.join(", ")
        );
    }
    Ok(())
}

/// `deployhook deployments`: the recent deployments and their latest state.
pub async fn list(args: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&args.repo)?;
    let github = super::github(&args.github)?;
    let explained = super::explained(github.is_app());
    let github = github.for_repository(&repo).await.map_err(&explained)?;
    let listed = github
        .recent_deployments(&repo, args.environment.as_deref(), args.limit)
        .await
        .map_err(&explained)?;
    out!("{}", table(&listed));
    Ok(ExitCode::SUCCESS)
}

/// The table `deployhook deployments` prints. Every value is GitHub's, and anyone who can
/// create a deployment chose it: each is one [`field`], which no line break or escape
/// sequence leaves.
pub fn table(deployments: &[Listed]) -> String {
    let mut out = format!(
        "{:<12} {:<12} {:<12} {:<9} {:<20} {:<16} {}\n",
        "DEPLOYMENT", "ENVIRONMENT", "STATE", "SHA", "CREATED", "BY", "REF / DESCRIPTION"
    );
    for d in deployments {
        let sha: String = d.sha.chars().take(7).collect();
        let by = d.creator.as_ref().map_or("?", |c| c.login.as_str());
        let state = d.state.as_deref().unwrap_or("(no status)");
        let task = d.task.as_deref().filter(|t| *t != "deploy");
        let mut what = field(&d.git_ref).into_owned();
        if let Some(task) = task {
            what.push_str(&format!(" [{}]", field(task)));
        }
        if d.payload.get("rollback") == Some(&true.into()) {
            let from = d.payload["rolled_back"]
                .as_str()
                .map_or_else(String::new, |from| {
                    format!(" from {}", field(&from.chars().take(7).collect::<String>()))
                });
            what.push_str(&format!(" [rollback{from}]"));
        }
        if let Some(description) = &d.status_description {
            what.push_str(&format!(" — {}", field(description)));
        }
        out.push_str(&format!(
            "{:<12} {:<12} {:<12} {:<9} {:<20} {:<16} {}\n",
            d.id.to_string(),
            field(&d.environment),
            field(state),
            field(&sha),
            field(&d.created_at),
            field(by),
            what
        ));
    }
    out
}
