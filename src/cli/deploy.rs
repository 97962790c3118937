//! `deployhook deploy` and `deployhook deployments`: manual deploys, rollbacks and a look
//! at what was deployed, from the command line, through GitHub's Deployments API. A manual
//! deploy is an ordinary GitHub deployment: GitHub sends its `deployment` event and the
//! server runs it like any other, with its queue, log and statuses.

use std::process::ExitCode;

use crate::cli::{DeployArgs, DeploymentsArgs};
use crate::github::deployments::{Listed, ManualDeployment};
use crate::model::text;

/// `deployhook deploy`: creates the deployment; the server runs it when GitHub sends the
/// deployment event.
pub async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&args.repo)?;
    let github = super::github(&args.github)?.for_repository(&repo).await?;
    let who = std::env::var("USER").unwrap_or_else(|_| "deployhook-cli".to_owned());
    let mut request = ManualDeployment::new(&args.git_ref, &args.environment, &args.task, &who);
    if let Some(description) = &args.description {
        request.description = text::description(description);
    }
    if args.force {
        request.payload["force"] = serde_json::Value::Bool(true);
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

/// `deployhook deployments`: the recent deployments and their latest state.
pub async fn list(args: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&args.repo)?;
    let github = super::github(&args.github)?.for_repository(&repo).await?;
    let listed = github
        .recent_deployments(&repo, args.environment.as_deref(), args.limit)
        .await?;
    print!("{}", table(&listed));
    Ok(ExitCode::SUCCESS)
}

/// The table `deployhook deployments` prints.
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
        let mut what = d.git_ref.clone();
        if let Some(task) = task {
            what.push_str(&format!(" [{task}]"));
        }
        if let Some(description) = &d.status_description {
            what.push_str(&format!(" — {description}"));
        }
        out.push_str(&format!(
            "{:<12} {:<12} {:<12} {:<9} {:<20} {:<16} {}\n",
            d.id.to_string(),
            d.environment,
            state,
            sha,
            d.created_at,
            by,
            what
        ));
    }
    out
}
