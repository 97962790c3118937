//! `deployhook stand-in`: a stand-in for GitHub's REST API on loopback, for trying deployhook
//! without GitHub and for tests of the installed binary. A server pointed at it
//! (`GITHUB_API_URL`) goes through its whole flow: the stand-in creates the deployments it
//! asks for and delivers their signed `deployment` webhooks back to it, as GitHub would,
//! then records the statuses of the deploy and delivers those too. It keeps everything in
//! memory and checks no credentials, so it listens on loopback only: it is not for
//! production.
//!
//! - [`records`]: the deployments and statuses, as GitHub's JSON objects;
//! - [`routes`]: the endpoints, and one printed line per request;
//! - [`deliver`]: the webhooks, signed, in order, retried while the server is not up.

mod deliver;
mod guard;
pub mod records;
mod routes;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use secrecy::SecretString;
use tokio::net::TcpListener;

use crate::cli::StandInArgs;
use crate::cli::terminal::outln;
pub use records::Records;

/// A stand-in serving on its own task: where it listens, and what it recorded.
#[derive(Debug)]
pub struct StandIn {
    pub addr: SocketAddr,
    pub records: Arc<Records>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Serves on `listener`, delivering webhooks to `deliver_to`, signed with `secret`.
    pub fn start(
        listener: TcpListener,
        deliver_to: String,
        secret: Option<SecretString>,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let records = Arc::new(Records::new(&format!("http://{addr}")));
        let state = routes::StandInState {
            records: records.clone(),
            deliverer: deliver::Deliverer::start(deliver_to, secret)?,
        };
        let router = routes::router(state);
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                crate::cli::terminal::errln!("stand-in: stopped serving: {err}");
            }
        });
        Ok(Self {
            addr,
            records,
            task,
        })
    }

    /// The base URL to give a server as `GITHUB_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The command: serves until SIGINT or SIGTERM.
pub async fn run(args: StandInArgs) -> anyhow::Result<ExitCode> {
    let addr = loopback_address(&args.listen)?;
    let deliver_to = args.deliver_to.clone().unwrap_or_else(|| {
        let server = crate::cli::args::server_for_listen(super::process_env("DEPLOYHOOK_LISTEN"));
        format!("{server}/event_handler")
    });
    reqwest::Url::parse(&deliver_to)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .with_context(|| format!("--deliver-to {deliver_to:?} is not an http(s) URL"))?;
    let secret = first_secret(args.secret.as_deref()).map(SecretString::from);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("the stand-in could not listen on {addr}"))?;
    let stand_in = StandIn::start(listener, deliver_to.clone(), secret.clone())?;
    outln!(
        "stand-in for GitHub's REST API listening on {} (not for production)",
        stand_in.url()
    );
    outln!(
        "  point deployhook at it: GITHUB_API_URL={} GITHUB_TOKEN=any-value",
        stand_in.url()
    );
    match secret {
        Some(_) => outln!("  webhooks go to {deliver_to}, signed with the webhook secret"),
        None => outln!(
            "  webhooks go to {deliver_to} UNSIGNED (no GITHUB_WEBHOOK_SECRET or --secret): \
             only a server started with --insecure-skip-signature accepts them"
        ),
    }
    crate::web::app::shutdown_signal().await;
    outln!("stand-in: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The first of a comma-separated list of secrets: the one GitHub signs with in a rotation.
pub fn first_secret(list: Option<&str>) -> Option<String> {
    list?
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `--listen` as an address, refused unless every address it names is loopback: the
/// stand-in checks no token, and anyone who reached it could make deployments.
pub(crate) fn loopback_address(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .with_context(|| {
            format!("--listen {text:?}: write HOST:PORT on this machine, such as 127.0.0.1:4568")
        })?
        .collect();
    let Some(first) = addresses.iter().find(|a| a.is_ipv4()).or(addresses.first()) else {
        bail!("--listen {text:?} names no address");
    };
    if let Some(outside) = addresses.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "--listen {text:?}: {} is not a loopback address; the stand-in checks no credentials \
             and is for this machine only (127.0.0.1, ::1 or localhost)",
            outside.ip()
        );
    }
    Ok(*first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert_eq!(
            loopback_address("127.0.0.1:4568").unwrap().to_string(),
            "127.0.0.1:4568"
        );
        assert!(loopback_address("[::1]:0").unwrap().ip().is_loopback());
        assert!(
            loopback_address("localhost:4568")
                .unwrap()
                .ip()
                .is_loopback()
        );
        let err = loopback_address("0.0.0.0:4568").unwrap_err().to_string();
        assert!(err.contains("0.0.0.0 is not a loopback address"), "{err}");
        let err = loopback_address("192.0.2.7:4568").unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(loopback_address("127.0.0.1").is_err());
    }

    #[test]
    fn the_first_of_several_secrets_signs() {
        assert_eq!(first_secret(Some(" , new,old")).as_deref(), Some("new"));
        assert_eq!(first_secret(Some("")), None);
        assert_eq!(first_secret(None), None);
    }
}
