//! Everything that talks to GitHub's REST API: the [`client`] (headers, timeouts,
//! credentials), a GitHub App's authentication ([`app_auth`]), the endpoints deployhook
//! calls ([`deployments`], [`checks`], [`hooks`], [`compare`]: the files a merge changed; [`changelog`]: the commits a deploy brings), what a person may do ([`permissions`],
//! cached) and who they are when they sign in ([`oauth`]), the [`outbox_worker`], which sends the calls the
//! store queued — retrying, pausing for rate limits, one at a time per ordering key — and
//! the [`gate_worker`], which ends soaks and reads again the checks of merges that wait.
//! The outbox also carries notifications, which the worker hands to `notify` to send.
//! The [`preview_worker`] closes previews whose pull request closed unseen, asking
//! [`pull_state`] whether each is still open.
//!
//! May use: `notify`, `store`, `config`, `metrics`, `health`, `model`.

pub mod app_auth;
pub mod changelog;
pub mod checks;
pub mod client;
pub mod compare;
pub mod deployments;
pub mod error;
pub mod gate_worker;
pub mod hooks;
pub mod oauth;
pub mod outbox_worker;
pub mod permissions;
pub mod preview_worker;
pub mod pull_state;
pub mod pulls;

pub use app_auth::AppCredentials;
pub use client::GitHubClient;
pub use deployments::CreatedDeployment;
pub use error::GitHubError;
