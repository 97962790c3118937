//! An environment's `verify` table and `on_verify_failure`, checked and built into its
//! [`VerifyConfig`]: exactly one of `url` and `command`, an `http(s)` URL, a status code,
//! durations that leave room for the check to hold within its timeout.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::FileEnvironment;
use super::validate::{Invalid, argv};
use crate::config::verify::{
    DEFAULT_HOLD_FOR, DEFAULT_VERIFY_INTERVAL, DEFAULT_VERIFY_TIMEOUT, OnVerifyFailure,
    VerifyCheck, VerifyConfig,
};
use crate::model::Environment;

/// The shortest `interval`: a check every 100 ms is already a load on the service.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `[environment.verify]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileVerify {
    url: Option<Spanned<String>>,
    expect_status: Option<Spanned<i64>>,
    body_contains: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    interval: Option<Spanned<String>>,
    hold_for: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// The environment's verification, if it has one.
pub(super) fn verify(
    file: &FileEnvironment,
    name: &Environment,
) -> Result<Option<VerifyConfig>, Invalid> {
    let Some(table) = &file.verify else {
        if let Some(on) = &file.on_verify_failure {
            return Err((
                on.span(),
                format!("environment {name}: `on_verify_failure` needs a `verify` table"),
            ));
        }
        return Ok(None);
    };
    let (span, verify) = (table.span(), table.get_ref());
    let check = match (&verify.url, &verify.command) {
        (Some(url), None) => http_check(verify, url, name)?,
        (None, Some(command)) => {
            if let Some(extra) = verify
                .expect_status
                .as_ref()
                .map(Spanned::span)
                .or_else(|| verify.body_contains.as_ref().map(Spanned::span))
            {
                return Err((
                    extra,
                    format!(
                        "environment {name}: verify: `expect_status` and `body_contains` go \
                         with `url`; a `command` passes by exiting 0"
                    ),
                ));
            }
            VerifyCheck::Command(argv(command, "verify.command")?)
        }
        _ => {
            return Err((
                span,
                format!(
                    "environment {name}: verify needs exactly one of `url` (an HTTP check) \
                     and `command` (a command that exits 0 when the deploy works)"
                ),
            ));
        }
    };
    let read = |value: &Option<Spanned<String>>, default: Duration| match value {
        None => Ok(default),
        Some(text) => crate::config::parse_duration(text.get_ref())
            .map_err(|e| (text.span(), format!("environment {name}: verify: {e}"))),
    };
    let interval = read(&verify.interval, DEFAULT_VERIFY_INTERVAL)?;
    let hold_for = read(&verify.hold_for, DEFAULT_HOLD_FOR)?;
    let timeout = read(&verify.timeout, DEFAULT_VERIFY_TIMEOUT)?;
    let at = |value: &Option<Spanned<String>>| value.as_ref().map_or(span.clone(), Spanned::span);
    if interval < MIN_INTERVAL {
        return Err((
            at(&verify.interval),
            format!("environment {name}: verify.interval must be at least 100ms"),
        ));
    }
    if timeout <= hold_for || timeout < interval {
        return Err((
            at(&verify.timeout),
            format!(
                "environment {name}: verify.timeout ({}) must be longer than hold_for ({}) \
                 and interval ({}), or the check could never hold in time",
                humantime::format_duration(timeout),
                humantime::format_duration(hold_for),
                humantime::format_duration(interval)
            ),
        ));
    }
    Ok(Some(VerifyConfig {
        check,
        interval,
        hold_for,
        timeout,
        on_failure: file
            .on_verify_failure
            .as_ref()
            .map_or(OnVerifyFailure::Fail, |o| *o.get_ref()),
    }))
}

fn http_check(
    verify: &FileVerify,
    url: &Spanned<String>,
    name: &Environment,
) -> Result<VerifyCheck, Invalid> {
    let parsed = reqwest::Url::parse(url.get_ref().trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            (
                url.span(),
                format!(
                    "environment {name}: verify.url must be an absolute http:// or https:// \
                     URL, like \"https://example.com/healthz\""
                ),
            )
        })?;
    let expect_status = match &verify.expect_status {
        None => 200,
        Some(status) => u16::try_from(*status.get_ref())
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| {
                (
                    status.span(),
                    format!("environment {name}: verify.expect_status must be 100 to 599"),
                )
            })?,
    };
    let body_contains = match &verify.body_contains {
        Some(text) if text.get_ref().is_empty() => {
            return Err((
                text.span(),
                format!("environment {name}: verify.body_contains is empty; remove it"),
            ));
        }
        other => other.as_ref().map(|t| t.get_ref().clone()),
    };
    Ok(VerifyCheck::Http {
        url: parsed,
        expect_status,
        body_contains,
    })
}
