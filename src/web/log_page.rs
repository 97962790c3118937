//! A deploy's log as a page for people: the stream the plain-text log sends, escaped into a
//! `<pre>` under a header that leads back to the dashboard. A browser opening a log link
//! (GitHub's *View logs*, the dashboard's) asks for HTML and gets this page; `curl`, the
//! dashboard's script and anything that does not ask for HTML get the plain text, as
//! `?format=text` does for everyone.

use std::convert::Infallible;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use crate::model::DeploymentId;

/// What closes the page once the log ends.
const TAIL: &str = "</pre>\n</body></html>\n";

/// The page's top, down to the `<pre>` the log streams into.
#[derive(Template)]
#[template(path = "log.html")]
struct Head<'a> {
    id: DeploymentId,
    /// The same log as plain text (its link carries the token).
    plain: &'a str,
}

/// Whether the request asks for HTML first, as a browser opening a link does.
pub(super) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|kind| kind.trim().starts_with("text/html"))
        })
}

/// `bytes` made safe inside a `<pre>`. Byte by byte: the characters escaped are ASCII,
/// which never occur inside a multi-byte UTF-8 character, so a chunk cut mid-character
/// stays intact for the browser to join.
fn escape(bytes: &Bytes) -> Bytes {
    if !bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&')) {
        return bytes.clone();
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for &b in bytes.iter() {
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            _ => out.push(b),
        }
    }
    Bytes::from(out)
}

/// The log of deployment `id` as a page, streamed as the log is: the browser shows each
/// line as it comes.
pub(super) fn page(
    id: DeploymentId,
    plain: &str,
    log: BoxStream<'static, Result<Bytes, Infallible>>,
) -> Response {
    let head = match (Head { id, plain }).render() {
        Ok(head) => head,
        Err(err) => {
            tracing::error!("could not render the log page: {err}");
            let message = "the log page could not be rendered; see the server log\n";
            return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
        }
    };
    let body = stream::once(async move { Ok::<_, Infallible>(Bytes::from(head)) })
        .chain(log.map(|chunk| chunk.map(|bytes| escape(&bytes))))
        .chain(stream::once(async {
            Ok(Bytes::from_static(TAIL.as_bytes()))
        }));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The address carries the log's token: no link on the page may pass it on.
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_a_log_is_shown_not_run() {
        let chunk = Bytes::from_static("<script>alert(1)</script> & café".as_bytes());
        assert_eq!(
            escape(&chunk),
            Bytes::from_static("&lt;script&gt;alert(1)&lt;/script&gt; &amp; café".as_bytes())
        );
    }

    #[test]
    fn browsers_get_the_page_and_scripts_the_text() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&headers));
    }
}
