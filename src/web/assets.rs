//! The static files every page links: the favicon, at `/favicon.svg` and at
//! `/favicon.ico`, the path browsers ask for by themselves (answered with the same SVG, so
//! that request neither fails nor needs a second round trip). Public: no secret in them.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// A green square with a white hook and an arrow up: deploy on merge.
const FAVICON: &str = include_str!("../../templates/favicon.svg");

/// The favicon, cached for a day.
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        FAVICON,
    )
        .into_response()
}
