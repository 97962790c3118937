//! How every dashboard answer goes out: rendered from its askama template, with the headers
//! each page carries; the one-sentence message page; the answer when the database cannot be
//! read.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Headers every dashboard page carries: nothing cached, framed, or leaked through the
/// referrer (log links carry their token).
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
    ),
];

pub(crate) fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    for (name, value) in PAGE_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => page(StatusCode::OK, html),
        Err(err) => {
            tracing::error!("could not render a dashboard page: {err}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log".to_owned(),
            )
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage<'a> {
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
}

pub(crate) fn unavailable(err: &crate::store::StoreError) -> Response {
    tracing::error!("could not read the dashboard's data: {err}");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database could not be read; try again".to_owned(),
    )
}
