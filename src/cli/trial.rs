//! `deployhook try`: the whole round trip on this machine, in one command, without GitHub
//! (and without the internet). It starts the real server — `serve`'s own configuration and
//! [`Application`], not a copy — with a throwaway state directory, a [`StandIn`] for
//! GitHub's API on a free loopback port, a demo deploy command (or `--deploy-command`), and a
//! webhook secret and admin token made up for the run; then sends it a signed merged pull
//! request, the way GitHub would, and shows what follows: the deployment created, the
//! deploy's log, its statuses, and how long it took. Then it stays up, dashboard and
//! `replay` usable, until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::cli::follow::{self, Server};
use crate::cli::stand_in::StandIn;
use crate::cli::stand_in::records::{Records, text};
use crate::cli::terminal::outln;
use crate::cli::{Cli, Command, ReplayArgs, TryArgs};
use crate::web::app::Application;

/// The repository the trial's merges are of.
const REPOSITORY: &str = "acme/widgets";
/// The demo deploy command: prints what it deploys, sleeps 2 s, succeeds.
const DEMO_DEPLOY: &str = include_str!("../../examples/deploy.sh");
/// How long the trial waits for the deployment to be created and to end.
const FLOW_WAIT: Duration = Duration::from_secs(120);

/// The command.
pub async fn run(args: TryArgs) -> anyhow::Result<ExitCode> {
    let dir = StateDir::create()?;
    let secret = random_token();
    let admin_token = random_token();
    let stand_in_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("could not listen on a free loopback port for the stand-in")?;
    let stand_in_url = format!("http://{}", stand_in_listener.local_addr()?);
    // The trial's server checks made-up tokens only: like the stand-in, loopback alone.
    crate::cli::stand_in::loopback_address(&args.listen)?;
    let (listen, taken) = free_listen(&args.listen);
    let (serve_args, demo) = serve_args(
        &listen,
        dir.path(),
        &stand_in_url,
        args.deploy_command.as_deref(),
    )?;
    let env = |name: &str| match name {
        "GITHUB_WEBHOOK_SECRET" => Some(secret.clone()),
        "GITHUB_TOKEN" => Some("stand-in-token".to_owned()),
        "DEPLOYHOOK_ADMIN_TOKEN" => Some(admin_token.clone()),
        _ => None,
    };
    let config = crate::cli::serve::build_config(serve_args, &env)?;
    let command = config.environments[0].command.join(" ");
    let app = Application::build(config).await?;
    let addr = app.local_addr()?;
    let base = format!("http://{}", local_host(addr));
    let webhook = format!("{base}/event_handler");
    let stand_in = StandIn::start(
        stand_in_listener,
        webhook.clone(),
        Some(SecretString::from(secret.clone())),
    )?;

    outln!("deployhook try: a merge, deployed, on this machine alone (no GitHub needed)");
    outln!("  state (removed at exit): {}", dir.path().display());
    outln!("  GitHub stand-in:         {}", stand_in.url());
    outln!("  server:                  {base} (webhook {webhook})");
    if let Some(taken) = taken {
        outln!("                           ({taken} is taken, so a free port instead)");
    }
    match demo {
        true => {
            outln!("  deploy command:          {command} (a demo; --deploy-command runs yours)")
        }
        false => outln!("  deploy command:          {command} (--deploy-command)"),
    }
    outln!();

    let server = tokio::spawn(app.run_until_signalled());
    let trial = Trial {
        dir: dir.path().to_owned(),
        base,
        webhook,
        secret,
        admin_token,
        records: stand_in.records.clone(),
    };
    tokio::pin!(server);
    tokio::select! {
        ended = &mut server => return stopped(ended, &dir),
        shown = trial.show() => {
            if let Err(err) = shown {
                crate::cli::terminal::print_error(format_args!("{err:#}"));
            }
        }
    }
    trial.print_next_steps(&stand_in.url());
    stopped(server.await, &dir)
}

/// The end, once the server stopped (Ctrl-C).
fn stopped(
    ended: Result<anyhow::Result<()>, tokio::task::JoinError>,
    dir: &StateDir,
) -> anyhow::Result<ExitCode> {
    ended.context("the server stopped unexpectedly")??;
    outln!("stopped; removing {}", dir.path().display());
    Ok(ExitCode::SUCCESS)
}

/// What the trial needs to send its merge and watch it deploy.
struct Trial {
    dir: PathBuf,
    base: String,
    webhook: String,
    secret: String,
    admin_token: String,
    records: std::sync::Arc<Records>,
}

impl Trial {
    /// Sends the merge and shows it through to its last status.
    async fn show(&self) -> anyhow::Result<()> {
        let repository = self.records.repository(REPOSITORY);
        let first = merge(&repository, 1, "Make widgets faster");
        let file = self.dir.join("pull_request.merged.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&first)?)?;
        // For the reader's own replay: another merge, which deploys in turn.
        let second = merge(&repository, 2, "Make widgets smaller");
        std::fs::write(self.next_merge(), serde_json::to_vec_pretty(&second)?)?;

        let sha = text(&first["pull_request"]["merge_commit_sha"]).to_owned();
        outln!(
            "1. merge: pull request #1 merged into {REPOSITORY} main at {}; sent to the server, \
             signed, as GitHub would",
            &sha[..7]
        );
        let started = Instant::now();
        let replay = ReplayArgs {
            file,
            event: "pull_request".into(),
            url: Some(self.webhook.clone()),
            secret: None,
            form: false,
            hook_id: Some(1),
        };
        let reply = crate::cli::replay::replay(&replay, Some(&self.secret)).await?;
        outln!("   the server answered {}: {}", reply.status, reply.body);
        anyhow::ensure!(
            reply.status.is_success(),
            "the server refused the merge; see its answer above"
        );

        outln!("2. the server asks GitHub (the stand-in) for a deployment; its webhook follows");
        let id = self
            .wait(|records| deployment_of(records, &sha).map(|(id, _)| id))
            .await
            .context("no deployment was created for the merge")?;
        outln!("3. deployment {id} runs; its log, as `deployhook log {id} --follow` shows it:");
        let server = Server::with_token(&self.base, self.admin_token.clone())?;
        let outcome = follow::follow(&server, id).await?;
        let final_state = self
            .wait(|records| {
                let (_, states) = deployment_of(records, &sha)?;
                let last = states.last()?;
                follow::exit_code(last).map(|_| last.clone())
            })
            .await
            .context("the deploy ended, but GitHub (the stand-in) got no final status")?;
        let took = started.elapsed().as_secs_f64();
        match final_state.as_str() {
            "success" => outln!(
                "4. deployed in {took:.1}s, from the merge to GitHub's `success` status \
                 (deployment {id}, statuses queued → in_progress → success)"
            ),
            other => outln!("4. deployment {id} ended {other} after {took:.1}s ({outcome:?})"),
        }
        Ok(())
    }

    /// Polls `found` on the stand-in's records until it answers.
    async fn wait<T>(&self, found: impl Fn(&Records) -> Option<T>) -> Option<T> {
        let started = Instant::now();
        while started.elapsed() < FLOW_WAIT {
            if let Some(value) = found(&self.records) {
                return Some(value);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn next_merge(&self) -> PathBuf {
        self.dir.join("pull_request.merged-2.json")
    }

    fn print_next_steps(&self, stand_in: &str) {
        let base = &self.base;
        outln!();
        outln!("deployhook keeps running until Ctrl-C:");
        outln!("  dashboard: {base}/  (sign in with the admin token below)");
        outln!("  admin token: {}", self.admin_token);
        outln!("  another merge, which deploys too:");
        outln!(
            "    GITHUB_WEBHOOK_SECRET={} deployhook replay {} --event pull_request --url {}",
            self.secret,
            self.next_merge().display(),
            self.webhook
        );
        outln!("  the admin commands, for example:");
        outln!(
            "    DEPLOYHOOK_SERVER={base} DEPLOYHOOK_ADMIN_TOKEN={} deployhook deliveries",
            self.admin_token
        );
        outln!("  what GitHub (the stand-in) holds: {stand_in}/repos/{REPOSITORY}/deployments");
    }
}

/// The stand-in's deployment of commit `sha`: its id and its statuses' states, oldest first.
fn deployment_of(records: &Records, sha: &str) -> Option<(u64, Vec<String>)> {
    records
        .all()
        .into_iter()
        .find(|(deployment, _)| text(&deployment["sha"]) == sha)
        .and_then(|(deployment, states)| Some((deployment["id"].as_u64()?, states)))
}

/// A `pull_request` delivery's payload for pull request `number` merged into `main`, shaped
/// like GitHub's (the fields deployhook reads, and enough around them to read as one).
fn merge(repository: &Value, number: u64, title: &str) -> Value {
    let repo = text(&repository["full_name"]);
    let author = json!({"login": "octo-dev", "id": 7_100_001, "type": "User", "site_admin": false});
    let now = crate::cli::stand_in::records::now();
    json!({
        "action": "closed",
        "number": number,
        "pull_request": {
            "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
            "html_url": format!("https://github.com/{repo}/pull/{number}"),
            "number": number,
            "state": "closed",
            "title": title,
            "user": author,
            "created_at": now,
            "closed_at": now,
            "merged_at": now,
            "merged": true,
            "merge_commit_sha": random_sha(),
            "head": {"ref": format!("feature-{number}"), "sha": random_sha()},
            "base": {"ref": "main", "sha": random_sha(), "repo": repository},
        },
        "repository": repository,
        "sender": author,
    })
}

/// The settings of the trial's server: `serve`'s own, from the environment as `serve` reads
/// it, but for the state directory, the stand-in, the listen address, and a single
/// `production` environment deploying every merge at once; and whether the deploy command
/// is the demo.
fn serve_args(
    listen: &str,
    dir: &Path,
    stand_in: &str,
    deploy_command: Option<&str>,
) -> anyhow::Result<(crate::cli::ServeArgs, bool)> {
    let cli = Cli::try_parse_from(["deployhook", "serve"])
        .context("deployhook's settings in the environment (or .env) are not valid")?;
    let Command::Serve(mut args) = cli.command else {
        unreachable!("parsed as serve");
    };
    args.listen = listen.to_owned();
    args.database = dir.join("deployhook.db").display().to_string();
    args.github_api_url = stand_in.to_owned();
    args.insecure_skip_signature = false;
    args.config = None;
    args.public_url = None;
    args.environment = None;
    args.branch = None;
    args.required_contexts = None;
    args.checks = None;
    // Only what the reader named runs: a DEPLOY_COMMAND of a project's `.env` is a real
    // deploy, and a made-up commit must not reach it (nor variables passed on to it).
    args.deploy_command = deploy_command.map(str::to_owned);
    args.pass_env = None;
    let demo = args
        .deploy_command
        .as_deref()
        .is_none_or(|c| c.trim().is_empty());
    if demo {
        let script = dir.join("deploy.sh");
        write_executable(&script, DEMO_DEPLOY)?;
        args.deploy_command = Some(shell_words::quote(&script.display().to_string()).into_owned());
    }
    Ok((args, demo))
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("could not write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `wanted`, or a free port on loopback when it is taken (with what was taken, to say so).
fn free_listen(wanted: &str) -> (String, Option<String>) {
    match std::net::TcpListener::bind(wanted) {
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            ("127.0.0.1:0".to_owned(), Some(wanted.to_owned()))
        }
        // Free (it is let go at once, for the server to bind), or a problem the server's
        // own start explains.
        _ => (wanted.to_owned(), None),
    }
}

/// How this machine reaches `addr`: a wildcard address through loopback.
fn local_host(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

/// 64 hex digits from the system's random source (two v4 UUIDs: 244 random bits).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A made-up commit: the trial has no repository.
fn random_sha() -> String {
    random_token()[..40].to_owned()
}

/// The trial's state directory under the system's temporary directory, removed when the
/// trial ends.
#[derive(Debug)]
struct StateDir(PathBuf);

impl StateDir {
    fn create() -> anyhow::Result<Self> {
        let name = format!("deployhook-try-{}", &random_token()[..12]);
        let path = std::env::temp_dir().join(name);
        // Its own user's only: the database holds the key of the log links.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&path)
            .with_context(|| {
                format!("could not create the trial's directory {}", path.display())
            })?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_is_one_deployhook_reads_as_a_merge_into_the_default_branch() {
        let records = Records::new("http://127.0.0.1:1");
        let payload = merge(&records.repository(REPOSITORY), 7, "A title");
        let body = serde_json::to_vec(&payload).unwrap();
        let crate::webhook::events::Event::PullRequest(event) =
            crate::webhook::events::Event::parse("pull_request", &body).unwrap()
        else {
            panic!("not a pull request");
        };
        assert!(event.pull_request.merged);
        assert_eq!(event.pull_request.number, 7);
        assert!(event.pull_request.merged_at.is_some());
        assert!(event.pull_request.merge_commit_sha.is_some());
        let repository = event.repository.unwrap();
        assert_eq!(
            repository.default_branch.as_deref(),
            Some(event.pull_request.base.branch.as_str())
        );
    }

    #[test]
    fn a_taken_port_gives_way_to_a_free_one() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let wanted = taken.local_addr().unwrap().to_string();
        assert_eq!(free_listen(&wanted), ("127.0.0.1:0".into(), Some(wanted)));
        drop(taken);
    }
}
