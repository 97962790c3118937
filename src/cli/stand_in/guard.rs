//! What the stand-in refuses before any endpoint runs, and how a caller's text is printed:
//! it listens on loopback and checks no token, so a request for another host name (a web
//! page's DNS rebinding), a large body, or a description that would forge lines of its
//! output are the ways a stranger could use it.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::routes::refusal;

/// The largest request body taken (GitHub's own limits are smaller still).
pub const MAX_BODY: usize = 64 * 1024;

/// Only requests naming a loopback host: a web page the user has open could otherwise
/// reach the stand-in through a DNS name that resolves to 127.0.0.1 (DNS rebinding),
/// create deployments, and so have the stand-in send the server signed webhooks.
pub async fn loopback_host(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if matches!(name, "127.0.0.1" | "localhost" | "::1") {
        next.run(request).await
    } else {
        refusal(
            StatusCode::FORBIDDEN,
            "Forbidden: the stand-in answers requests for a loopback host only",
        )
    }
}

/// A note as one line, at most 300 characters: descriptions and environments are the
/// caller's, and must not forge lines of this output or flood it.
pub fn shown(note: &str) -> String {
    let line = crate::cli::terminal::field(note);
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_note_is_one_line_and_short() {
        let forged = shown("one\nstand-in: POST /forged → 201 Created");
        assert!(!forged.contains('\n'), "{forged}");
        assert!(forged.contains("\\n"), "{forged}");
        let long = shown(&"é".repeat(1000));
        assert_eq!(long.chars().count(), 301, "300 characters and an ellipsis");
    }
}
