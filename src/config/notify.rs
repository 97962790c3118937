//! Who is told what: the receivers of notifications, one `[[notify]]` table of the config
//! file each. The file names the environment variables that hold a receiver's URL and
//! secret, never the values ([`NotifyTable`]); `serve` reads them at start ([`resolve`])
//! into the [`NotifyConfig`]s the server sends with. A URL is a secret — an incoming
//! webhook's URL is all it takes to post to the channel — so it is kept in a
//! `SecretString`, which `Debug` and logs show as `[REDACTED]`.

use std::collections::BTreeMap;
use std::ops::Range;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use crate::config::EnvironmentConfig;
use crate::model::{Environment, Notification, NotificationKind};

/// What a receiver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A Slack incoming webhook (`{"text": …}`); Mattermost's, and Discord's `/slack`
    /// endpoint, take the same body.
    Slack,
    /// deployhook's own JSON body, signed when a secret is set.
    Webhook,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }
}

/// A `[[notify]]` table as the file states it: variable names, not their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTable {
    pub kind: NotifyKind,
    /// The server variable holding the receiver's URL.
    pub url_env: String,
    /// The server variable holding the webhook's HMAC secret (`webhook` only).
    pub secret_env: Option<String>,
    /// Never empty; every event when the table names none.
    pub events: Vec<NotificationKind>,
    /// `None`: every environment.
    pub environments: Option<Vec<Environment>>,
}

/// A receiver, ready to send to.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub kind: NotifyKind,
    /// Names the receiver in logs and errors: the variable its URL came from.
    pub name: String,
    pub url: SecretString,
    /// The key of `X-Deployhook-Signature-256` (`webhook` only).
    pub secret: Option<SecretString>,
    /// The events it is sent.
    pub events: Vec<NotificationKind>,
    /// The environments whose events it is sent; `None`: all.
    pub environments: Option<Vec<Environment>>,
}

impl NotifyConfig {
    /// A receiver of every event of every environment, without a secret.
    pub fn new(kind: NotifyKind, name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            url: SecretString::from(url.into()),
            secret: None,
            events: NotificationKind::ALL.to_vec(),
            environments: None,
        }
    }

    /// Whether `notification` is for this receiver.
    pub fn wants(&self, notification: &Notification) -> bool {
        self.events.contains(&notification.event)
            && self
                .environments
                .as_ref()
                .is_none_or(|list| list.contains(&notification.environment))
    }

    /// Identifies the receiver across restarts, in the outbox: its kind and the variable
    /// its URL comes from. Two tables sending to the same variable are one receiver, which
    /// gets a message once even when both tables choose it.
    pub fn receiver(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// Reads each table's URL (and secret) from the server's environment through `env`. A
/// variable unset or empty is an error naming it — never showing a value.
pub fn resolve(
    tables: &[NotifyTable],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<NotifyConfig>, String> {
    let read = |name: &str, what: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "{name} is not set: a [[notify]] table reads {what} from it (the file \
                     names the variable; the value, a secret, stays in the environment)"
                )
            })
    };
    let mut receivers = Vec::with_capacity(tables.len());
    for table in tables {
        let what = match table.kind {
            NotifyKind::Slack => "the Slack incoming webhook's URL",
            NotifyKind::Webhook => "the webhook receiver's URL",
        };
        let url = read(&table.url_env, what)?;
        let valid = reqwest::Url::parse(&url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !valid {
            return Err(format!(
                "{} is not an http(s) URL: set it to the receiver's address, like \
                 https://hooks.slack.com/services/…",
                table.url_env
            ));
        }
        let secret = match &table.secret_env {
            Some(name) => Some(SecretString::from(read(name, "the webhook's secret")?)),
            None => None,
        };
        receivers.push(NotifyConfig {
            kind: table.kind,
            name: table.url_env.clone(),
            url: SecretString::from(url),
            secret,
            events: table.events.clone(),
            environments: table.environments.clone(),
        });
    }
    Ok(receivers)
}

/// One line describing a table, for `check-config`.
pub fn summary(table: &NotifyTable) -> String {
    let events = if table.events.len() == NotificationKind::ALL.len() {
        "every event".to_owned()
    } else {
        let names: Vec<&str> = table.events.iter().map(|e| e.as_str()).collect();
        names.join(", ")
    };
    let environments = match &table.environments {
        None => "every environment".to_owned(),
        Some(list) => {
            let names: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
            names.join(", ")
        }
    };
    let signed = match &table.secret_env {
        Some(secret) => format!(", signed with ${secret}"),
        None => String::new(),
    };
    format!(
        "  notify {} at ${}{signed}: {events}, of {environments}",
        table.kind.as_str(),
        table.url_env
    )
}

/// A `[[notify]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNotify {
    kind: NotifyKind,
    url_env: Spanned<String>,
    secret_env: Option<Spanned<String>>,
    events: Option<Spanned<Vec<NotificationKind>>>,
    environments: Option<Spanned<Vec<Spanned<String>>>>,
}

type Invalid = (Range<usize>, String);

/// Checks one table against the environments the file defines.
pub(super) fn validate(
    table: &Spanned<FileNotify>,
    environments: &[EnvironmentConfig],
) -> Result<NotifyTable, Invalid> {
    let file = table.get_ref();
    check_variable("url_env", &file.url_env)?;
    if let Some(secret) = &file.secret_env {
        check_variable("secret_env", secret)?;
        if file.kind != NotifyKind::Webhook {
            return Err((
                secret.span(),
                "secret_env is for kind = \"webhook\": a Slack URL is its own secret".to_owned(),
            ));
        }
    }
    let events = match &file.events {
        None => NotificationKind::ALL.to_vec(),
        Some(events) if events.get_ref().is_empty() => {
            return Err((
                events.span(),
                format!(
                    "events = [] would send nothing: name some ({}), or leave `events` out \
                     for all of them",
                    NotificationKind::ALL
                        .map(NotificationKind::as_str)
                        .join(", ")
                ),
            ));
        }
        Some(events) => {
            let mut list = events.get_ref().clone();
            list.sort();
            list.dedup();
            list
        }
    };
    let environments = match &file.environments {
        None => None,
        Some(list) if list.get_ref().is_empty() => {
            return Err((
                list.span(),
                "environments = [] would send nothing: name some, or leave `environments` \
                 out for all of them"
                    .to_owned(),
            ));
        }
        Some(list) => Some(
            list.get_ref()
                .iter()
                .map(|name| known_environment(name, environments))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(NotifyTable {
        kind: file.kind,
        url_env: file.url_env.get_ref().clone(),
        secret_env: file.secret_env.as_ref().map(|s| s.get_ref().clone()),
        events,
        environments,
    })
}

/// Tables sending to the same URL variable are one receiver: they must agree on its secret.
pub(super) fn check_receivers(tables: &[NotifyTable]) -> Result<(), (usize, String)> {
    let mut secrets: BTreeMap<(&str, &str), Option<&str>> = BTreeMap::new();
    for (index, table) in tables.iter().enumerate() {
        let key = (table.kind.as_str(), table.url_env.as_str());
        let secret = table.secret_env.as_deref();
        match secrets.get(&key) {
            Some(first) if *first != secret => {
                return Err((
                    index,
                    format!(
                        "two [[notify]] tables send to ${} with different secret_env: a \
                         receiver has one secret",
                        table.url_env
                    ),
                ));
            }
            _ => {
                secrets.insert(key, secret);
            }
        }
    }
    Ok(())
}

fn known_environment(
    name: &Spanned<String>,
    environments: &[EnvironmentConfig],
) -> Result<Environment, Invalid> {
    match crate::config::find_environment(environments, name.get_ref()) {
        Some(environment) => Ok(environment.name.clone()),
        None => {
            let known: Vec<&str> = environments.iter().map(|e| e.name.as_ref()).collect();
            Err((
                name.span(),
                format!(
                    "[[notify]] names environment {:?}, which is not defined here \
                     (environments: {})",
                    name.get_ref(),
                    known.join(", ")
                ),
            ))
        }
    }
}

/// A variable's name. What is there otherwise is not repeated in the error: the likeliest
/// mistake is the URL itself, a secret.
fn check_variable(key: &str, name: &Spanned<String>) -> Result<(), Invalid> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        return Ok(());
    }
    Err((
        name.span(),
        format!(
            "{key} must name an environment variable (letters, digits and _), like \
             \"SLACK_WEBHOOK_URL\": the variable holds the value, which never goes in this file"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: NotifyKind, secret_env: Option<&str>) -> NotifyTable {
        NotifyTable {
            kind,
            url_env: "HOOK_URL".into(),
            secret_env: secret_env.map(str::to_owned),
            events: NotificationKind::ALL.to_vec(),
            environments: None,
        }
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const URL: &str = "https://hooks.slack.com/services/T0/B0/credential";

    #[test]
    fn the_url_and_secret_are_read_from_the_environment_and_never_shown() {
        let vars = env(&[("HOOK_URL", URL), ("HOOK_SECRET", "s3cr3t")]);
        let receivers = resolve(&[table(NotifyKind::Webhook, Some("HOOK_SECRET"))], &vars).unwrap();
        assert_eq!(receivers[0].receiver(), "webhook:HOOK_URL");
        assert!(receivers[0].secret.is_some());
        let shown = format!("{receivers:?}");
        assert!(
            !shown.contains("credential") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn a_variable_unset_empty_or_not_a_url_stops_the_start_naming_it_not_its_value() {
        let slack = [table(NotifyKind::Slack, None)];
        let err = resolve(&slack, &env(&[])).unwrap_err();
        assert!(err.starts_with("HOOK_URL is not set"), "{err}");
        let err = resolve(&slack, &env(&[("HOOK_URL", "  ")])).unwrap_err();
        assert!(err.starts_with("HOOK_URL is not set"), "{err}");
        let err = resolve(
            &slack,
            &env(&[("HOOK_URL", "hooks.slack.com/x-credential")]),
        )
        .unwrap_err();
        assert!(err.starts_with("HOOK_URL is not an http(s) URL"), "{err}");
        assert!(!err.contains("x-credential"), "{err}");
        let signed = [table(NotifyKind::Webhook, Some("HOOK_SECRET"))];
        let err = resolve(&signed, &env(&[("HOOK_URL", URL)])).unwrap_err();
        assert!(err.starts_with("HOOK_SECRET is not set"), "{err}");
    }
}
