//! How the API refuses: a [`Refused`] is a status and one sentence saying what was wrong,
//! answered as `{"error": "..."}`. Shared by the admin API, the people module that decides
//! who may act, and the dashboard's forms (which show the sentence as a page).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refusal, as the API answers it: a status and a sentence.
#[derive(Debug)]
pub struct Refused(pub StatusCode, pub String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The refusal for a database that could not be read or written: logged once, answered 503.
pub fn unavailable(err: &crate::store::StoreError) -> Refused {
    tracing::error!("admin API: {err}");
    Refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database could not be written; try again".into(),
    )
}
