//! The running server's admin API as the commands reach it (`lock`, `unlock`, `locks`,
//! `rollback`, `calls`, `deliveries`, `log`): HTTP clients that follow no redirect, so the
//! admin token goes to `--server` and nowhere else, and answers checked to be deployhook's
//! — JSON, holding what the command reads — before anything is printed. Anything else (a
//! login page, a proxy's error, a redirect) is an error naming the URL reached, never `?`
//! printed and exit 0.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;

use crate::cli::ServerArgs;
use crate::cli::terminal::errln;

/// What a value of an answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    List,
    Object,
    /// Anything but `null`.
    Present,
}

/// What a command reads of a successful answer: JSON pointers (`/lock/environment`) and
/// what each must hold.
pub(super) type Shape<'a> = &'a [(&'a str, Kind)];

/// An HTTP client for the admin API, from `builder`: redirects are answers, not followed.
pub(super) fn client(builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::Client> {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("could not build an HTTP client")
}

/// Calls the admin API; its JSON answer, checked against `shape`, or an error that says
/// what went wrong. `by` says who acts in a header (a `DELETE` has no body to say it in).
pub(super) async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    by: Option<String>,
    shape: Shape<'_>,
) -> anyhow::Result<Value> {
    let token = admin_token(&server.server)?;
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let client = client(reqwest::Client::builder().timeout(Duration::from_secs(30)))?;
    let mut request = client.request(method, &url).bearer_auth(token);
    if let Some(by) = by {
        request = request.header("X-Deployhook-By", by);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|err| unreachable(&url, &err))?;
    let (status, answer) = json_answer(&url, response).await?;
    if !status.is_success() {
        bail!("deployhook answered {status}: {}", text(&answer["error"]));
    }
    check_shape(&url, &answer, shape)?;
    Ok(answer)
}

/// The status and JSON body of an answer that is deployhook's: not a redirect, JSON, and,
/// when it is an error, one with deployhook's `error` sentence.
pub(super) async fn json_answer(
    url: &str,
    response: reqwest::Response,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let status = response.status();
    not_a_redirect(url, &response)?;
    let content_type = content_type(&response);
    if !content_type.starts_with("application/json") {
        bail!(
            "{url} answered {status} with {}, not deployhook's JSON: {CHECK_SERVER}",
            shown(&content_type)
        );
    }
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("{url} answered {status} with malformed JSON: {CHECK_SERVER}"))?;
    if !status.is_success() {
        check_shape(url, &answer, &[("/error", Kind::Text)])?;
    }
    Ok((status, answer))
}

/// That `answer` holds what the command reads.
pub(super) fn check_shape(url: &str, answer: &Value, shape: Shape<'_>) -> anyhow::Result<()> {
    for (pointer, kind) in shape {
        let value = answer.pointer(pointer).unwrap_or(&Value::Null);
        let fits = match kind {
            Kind::Text => value.is_string(),
            Kind::List => value.is_array(),
            Kind::Object => value.is_object(),
            Kind::Present => !value.is_null(),
        };
        if !fits {
            bail!(
                "{url} answered JSON that is not deployhook's answer (nothing fit at {pointer}): \
                 {CHECK_SERVER}"
            );
        }
    }
    Ok(())
}

/// A deploy's log must come as deployhook sends it: plain text, not a redirect or a page.
pub(super) fn check_log(url: &str, response: &reqwest::Response) -> anyhow::Result<()> {
    not_a_redirect(url, response)?;
    let status = response.status();
    if !status.is_success() {
        bail!("deployhook answered {status} for the log at {url}");
    }
    let content_type = content_type(response);
    if !content_type.starts_with("text/plain") {
        bail!(
            "{url} answered {status} with {}, not a deploy's log: {CHECK_SERVER}",
            shown(&content_type)
        );
    }
    Ok(())
}

/// What to check when an answer is not deployhook's.
const CHECK_SERVER: &str = "is --server (DEPLOYHOOK_SERVER) the address of deployhook itself?";

fn not_a_redirect(url: &str, response: &reqwest::Response) -> anyhow::Result<()> {
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "nowhere said".to_owned(), |to| bounded(to, 200));
        bail!(
            "{url} answered {status}, a redirect to {to}; deployhook's admin API never \
             redirects, and the commands follow no redirect (the admin token would go along): \
             set --server (DEPLOYHOOK_SERVER) to deployhook's own address"
        );
    }
    Ok(())
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn shown(content_type: &str) -> String {
    if content_type.is_empty() {
        "no content type".to_owned()
    } else {
        bounded(content_type, 100)
    }
}

/// At most `max` characters, no control characters: a stranger's header reaches the
/// terminal.
fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("no explanation")
}

/// The token a call to `server` carries: the person's own `DEPLOYHOOK_TOKEN` (made on the
/// dashboard's Tokens page: the server then knows who acts), else the shared
/// `DEPLOYHOOK_ADMIN_TOKEN`; a warning first when it would cross the network in the clear.
pub(super) fn admin_token(server: &str) -> anyhow::Result<String> {
    let set = |name: &str| std::env::var(name).ok().filter(|t| !t.trim().is_empty());
    let Some((token, which)) = set("DEPLOYHOOK_TOKEN")
        .map(|t| (t, "personal token"))
        .or_else(|| set("DEPLOYHOOK_ADMIN_TOKEN").map(|t| (t, "admin token")))
    else {
        bail!(
            "neither DEPLOYHOOK_TOKEN nor DEPLOYHOOK_ADMIN_TOKEN is set: these commands act on \
             the running server as you (a personal token, made on the dashboard's Tokens \
             page) or with the server's admin token"
        );
    };
    if exposes_token(server) {
        errln!(
            "warning: {server} is plain http to another host: the {which} crosses the \
             network unencrypted (use https, or run the command on the server's host)"
        );
    }
    Ok(token)
}

/// A request to the server that got no answer, said with its cause and what to check.
pub(super) fn unreachable(url: &str, err: &reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "could not reach deployhook at {url}: {} (is it running? set --server or \
         DEPLOYHOOK_SERVER)",
        crate::github::error::cause(err)
    )
}

/// Whether sending a token to `server` puts it on the network in the clear: plain http to
/// anything but this host.
fn exposes_token(server: &str) -> bool {
    let Some(rest) = server.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    !(host.eq_ignore_ascii_case("localhost") || host == "::1" || host.starts_with("127."))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_http_to_another_host_is_warned_of_and_loopback_or_https_is_not() {
        for exposed in [
            "http://deploy.example.com",
            "http://10.0.0.5:4567/",
            "http://[fd00::1]:80",
        ] {
            assert!(exposes_token(exposed), "{exposed}");
        }
        for safe in [
            "https://deploy.example.com",
            "http://127.0.0.1:4567",
            "http://localhost:4567",
            "http://[::1]:4567",
        ] {
            assert!(!exposes_token(safe), "{safe}");
        }
    }

    #[test]
    fn an_answer_missing_what_the_command_reads_is_refused_naming_the_url_and_the_place() {
        let shape: Shape<'_> = &[("/lock/environment", Kind::Text), ("/locks", Kind::List)];
        let fits = json!({"lock": {"environment": "production"}, "locks": []});
        assert!(check_shape("http://x", &fits, shape).is_ok());
        for wrong in [
            json!({"ok": true}),
            json!({"lock": {"environment": 7}, "locks": []}),
            json!({"lock": {"environment": "production"}, "locks": {}}),
        ] {
            let err = check_shape("http://x/api/locks", &wrong, shape)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("http://x/api/locks answered JSON that is not deployhook's"),
                "{err}"
            );
        }
        assert!(check_shape("u", &json!({"a": 1}), &[("/a", Kind::Present)]).is_ok());
        assert!(check_shape("u", &json!({"a": null}), &[("/a", Kind::Present)]).is_err());
    }
}
