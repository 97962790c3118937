//! The operators' dashboard at `/`: what is running and queued, the deployments of each
//! environment with links to their logs and to GitHub, and the recent deliveries. Rendered
//! on the server (askama templates in `templates/`, checked at compile time), readable
//! without JavaScript; with it, `/dashboard.js` refreshes the tables every few seconds and
//! streams the log of a running deploy into the page.
//!
//! Access is by `DEPLOYHOOK_ADMIN_TOKEN`, through the session of [`crate::web::auth`].
//! Without a configured token the dashboard is off and says so.
//!
//! This file has the routes. The rest, by what it owns:
//! - `page.rs`: the page at `/`, its live part (one snapshot read) and the script;
//! - `views.rs`: each kind of row the page shows, ready to show (jobs, waits, deliveries,
//!   refused deliveries, locks, given-up calls, replicas);
//! - `sign_in.rs`: sign-in with the admin token, and sign-out;
//! - `previews.rs`: the previews table and `GET /api/previews`;
//! - `deployment.rs`: one deployment's page at `/deployments/{id}`, with its changelog;
//! - `forms.rs`: the operator's forms: lock, unlock, roll back;
//! - `access.rs`: who may see the pages and send the forms: the sign-in check, the form
//!   token, cross-site refusals;
//! - `render.rs`: how every answer goes out: the page's headers, askama rendering, the
//!   message page, the answer when the database cannot be read.

pub(crate) mod access;
mod deployment;
mod forms;
mod page;
mod previews;
pub(crate) mod render;
pub(crate) mod sign_in;
mod views;

use axum::routing::get;

use crate::web::AppState;

pub(crate) use access::refusal;
pub(super) use forms::after_form;
pub(crate) use render::{render, unavailable};
pub(super) use views::time;
pub(crate) use views::{DeliveryView, delivery_view};

/// The dashboard's routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(page::dashboard))
        .route("/login", get(sign_in::login_form).post(sign_in::login))
        .route("/logout", axum::routing::post(sign_in::logout))
        .route("/login/github", get(crate::web::people::oauth::start))
        .route(
            "/login/github/callback",
            get(crate::web::people::oauth::callback),
        )
        .route(
            "/tokens",
            get(crate::web::people::tokens::list).post(crate::web::people::tokens::create),
        )
        .route(
            "/tokens/{id}/revoke",
            axum::routing::post(crate::web::people::tokens::revoke),
        )
        .route("/deployments/{id}", get(deployment::deployment_page))
        .route("/dashboard/live", get(page::live))
        .route("/api/previews", get(previews::api))
        .route("/dashboard.js", get(page::script))
        .route("/dashboard/lock", axum::routing::post(forms::lock_form))
        .route("/dashboard/unlock", axum::routing::post(forms::unlock_form))
        .route(
            "/dashboard/rollback",
            axum::routing::post(forms::rollback_form),
        )
}
