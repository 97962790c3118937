//! The audit log, to read: the dashboard's page `GET /audit` (behind its sign-in) and the
//! admin API's `GET /api/audit` that `deployhook audit` calls. Both take the same query
//! string — `before` (an entry's id: the page after), `limit`, and the filters `actor`,
//! `action`, `environment`, `repository` — and answer newest first. A bad value is a 400
//! saying which and why. Entries are written by the actions themselves (`web::admin`,
//! `web::calls`, the dashboard's sign-in), never here: the log has no way to edit it.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::model::people::Via;
use crate::model::{AuditAction, AuditOutcome};
use crate::store::audit::{self, AuditQuery, AuditRecord, MAX_PAGE};
use crate::web::AppState;
use crate::web::admin::{Refused, unavailable};
use crate::web::client::ClientAddress;
use crate::web::dashboard::{self, render, time};
use crate::web::people::{Sight, api_sight, page_sight};

/// Entries a page or an answer holds unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// The longest filter value taken: an entry's texts are no longer (`model::audit`).
const MAX_FILTER_CHARS: usize = crate::model::audit::MAX_TEXT_CHARS;
/// The query's parameters, as a refusal lists them.
const PARAMETERS: &str = "before, limit, actor, action, environment, repository";

/// The page's and the API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(page))
        .route("/api/audit", get(api))
}

/// The query string as a store query, or the sentence saying what is wrong with it. Empty
/// values count as absent: the page's filter form sends every field.
fn parse_query(raw: Option<&str>) -> Result<AuditQuery, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|_| "the query string is not URL-encoded text".to_owned())?;
    let mut query = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if seen.contains(&name.as_str()) {
            return Err(format!("{}: given twice", shown(name)));
        }
        seen.push(name);
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "before" => query.before = Some(before(value)?),
            "limit" => query.limit = limit(value)?,
            "action" => {
                query.action = Some(AuditAction::parse(value).map_err(|e| format!("action: {e}"))?);
            }
            "actor" => query.actor = Some(filter(name, value)?),
            "environment" => query.environment = Some(filter(name, value)?),
            "repository" => query.repository = Some(filter(name, value)?),
            other => {
                return Err(format!(
                    "{} is not a parameter of the audit log: {PARAMETERS}",
                    shown(other)
                ));
            }
        }
    }
    Ok(query)
}

fn before(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            format!(
                "before: {} is not an entry's id (a number from 1)",
                shown(value)
            )
        })
}

fn limit(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            format!(
                "limit: {} is not a number from 1 to {MAX_PAGE}",
                shown(value)
            )
        })
}

fn filter(name: &str, value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_FILTER_CHARS {
        return Err(format!("{name}: at most {MAX_FILTER_CHARS} characters"));
    }
    Ok(value.to_owned())
}

/// A value of the request, quoted in a refusal: short, and without control characters.
fn shown(value: &str) -> String {
    let short: String = value.chars().filter(|c| !c.is_control()).take(40).collect();
    format!("{short:?}")
}

/// A page of the log, and the `before` of the next one when there are older entries.
async fn read(
    state: &AppState,
    query: AuditQuery,
) -> Result<(Vec<AuditRecord>, Option<i64>), crate::store::StoreError> {
    state
        .store
        .read(move |c| {
            let records = audit::page(c, &query)?;
            // A full page: whether one more lies beyond it (one row on the same index).
            let next = match records.last() {
                Some(last) if records.len() == query.limit => {
                    let beyond = AuditQuery {
                        before: Some(last.id),
                        limit: 1,
                        ..query
                    };
                    (!audit::page(c, &beyond)?.is_empty()).then_some(last.id)
                }
                _ => None,
            };
            Ok((records, next))
        })
        .await
}

/// Whether `sight` shows `record`: an entry about a repository only to those who can read
/// it; one about no repository (a lock, a sign-in) to everyone signed in. A page of a
/// person's may so hold fewer entries than the limit; its paging stays the log's.
fn seen(sight: &Sight, record: &AuditRecord) -> bool {
    if sight.everything() {
        return true;
    }
    let entry = &record.entry;
    // A person's own sign-ins and tokens are theirs; others' are not for every colleague.
    let personal = matches!(
        entry.action(),
        AuditAction::SignIn
            | AuditAction::SignOut
            | AuditAction::TokenCreated
            | AuditAction::TokenRevoked
    );
    if personal {
        return entry.actor().login.eq_ignore_ascii_case(&sight.actor.login);
    }
    entry.repository().is_none_or(|repo| sight.can_read(repo))
}

/// `record` as `sight` may see it: where colleagues act from is the admin token's to see,
/// and each person's own.
fn shown_to(sight: &Sight, record: &AuditRecord) -> AuditRecord {
    let own = record
        .entry
        .actor()
        .login
        .eq_ignore_ascii_case(&sight.actor.login);
    if sight.everything() || own {
        return record.clone();
    }
    AuditRecord {
        entry: record.entry.clone().without_address(),
        ..record.clone()
    }
}

/// How the via of an actor reads on the page.
fn via_words(via: Via) -> &'static str {
    match via {
        Via::GitHub => "GitHub",
        Via::PersonalToken => "personal token",
        Via::AdminToken => "admin token",
        Via::Comment => "pull-request comment",
        Via::Deployhook => "deployhook itself",
    }
}

/// An entry as the API answers it.
fn entry_json(record: &AuditRecord) -> Value {
    let entry = &record.entry;
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(entry.at()).unwrap_or(0));
    json!({
        "id": record.id,
        "at": humantime::format_rfc3339_millis(at).to_string(),
        "actor": entry.actor().login,
        "via": entry.via().as_str(),
        "action": entry.action().as_str(),
        "repository": entry.repository(),
        "environment": entry.environment(),
        "target": entry.target(),
        "detail": entry.detail(),
        "address": entry.address(),
        "outcome": entry.outcome().as_str(),
    })
}

/// `GET /api/audit`: `{"entries": [...], "next": <the next page's before, or null>}`.
async fn api(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let sight = match api_sight(&state, client, &headers).await {
        Ok(sight) => sight,
        Err(refused) => return refused.into_response(),
    };
    let query = match parse_query(raw.as_deref()) {
        Ok(query) => query,
        Err(why) => return Refused(StatusCode::BAD_REQUEST, why).into_response(),
    };
    match read(&state, query).await {
        Ok((records, next)) => Json(json!({
            "entries": records
                .iter()
                .filter(|r| seen(&sight, r))
                .map(|r| entry_json(&shown_to(&sight, r)))
                .collect::<Vec<_>>(),
            "next": next,
        }))
        .into_response(),
        Err(err) => unavailable(&err).into_response(),
    }
}

/// An entry, ready to show.
struct EntryView {
    id: i64,
    when: String,
    login: String,
    via: &'static str,
    action: &'static str,
    repository: String,
    environment: String,
    target: String,
    /// The target is a deployment: linked to its page.
    deployment: bool,
    detail: String,
    address: String,
    refused: bool,
}

impl EntryView {
    fn new(record: &AuditRecord) -> Self {
        let entry = &record.entry;
        Self {
            id: record.id,
            when: time(entry.at()),
            login: entry.actor().login.clone(),
            via: via_words(entry.via()),
            action: entry.action().as_str(),
            repository: entry.repository().unwrap_or_default().to_owned(),
            environment: entry.environment().unwrap_or_default().to_owned(),
            target: entry.target().unwrap_or_default().to_owned(),
            deployment: names_deployment(entry),
            detail: entry.detail().to_owned(),
            address: entry.address().to_owned(),
            refused: entry.outcome() == AuditOutcome::Refused,
        }
    }
}

/// Whether `entry`'s target is a deployment id: a deployment received (`deploy`, `force`:
/// its id) or approved or rejected. A rollback's target is a commit; a retry's, a call.
fn names_deployment(entry: &crate::model::AuditEntry) -> bool {
    use crate::model::AuditAction::{Approve, Deploy, Force, Reject};
    matches!(entry.action(), Deploy | Force | Approve | Reject)
        && entry
            .target()
            .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    entries: Vec<EntryView>,
    /// The filters as asked, for the form.
    actor: String,
    action: String,
    environment: String,
    repository: String,
    actions: Vec<&'static str>,
    /// The filters as a query string (`actor=maria&action=lock`), for the links.
    filters: String,
    /// Whether this is an older page (`before` given).
    older_page: bool,
    /// The next page's `before`, when there are older entries.
    older: Option<i64>,
}

/// `GET /audit`: the log, newest first, a page at a time, filtered by the query string.
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let sight = match page_sight(&state, &headers).await {
        Ok(sight) => sight,
        Err(answer) => return answer,
    };
    let query = match parse_query(raw.as_deref()) {
        Ok(query) => query,
        Err(why) => return dashboard::after_form(Err(Refused(StatusCode::BAD_REQUEST, why))),
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let action = query.action.map(AuditAction::as_str).unwrap_or_default();
    let mut filters: Vec<(&str, String)> = vec![
        ("actor", text(&query.actor)),
        ("action", action.to_owned()),
        ("environment", text(&query.environment)),
        ("repository", text(&query.repository)),
    ];
    if query.limit != DEFAULT_LIMIT {
        filters.push(("limit", query.limit.to_string()));
    }
    filters.retain(|(_, value)| !value.is_empty());
    let view = AuditPage {
        entries: Vec::new(),
        actor: text(&query.actor),
        action: action.to_owned(),
        environment: text(&query.environment),
        repository: text(&query.repository),
        actions: AuditAction::ALL.iter().map(|a| a.as_str()).collect(),
        filters: serde_urlencoded::to_string(&filters).unwrap_or_default(),
        older_page: query.before.is_some(),
        older: None,
    };
    match read(&state, query).await {
        Ok((records, older)) => render(&AuditPage {
            entries: records
                .iter()
                .filter(|r| seen(&sight, r))
                .map(|r| EntryView::new(&shown_to(&sight, r)))
                .collect(),
            older,
            ..view
        }),
        Err(err) => dashboard::unavailable(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_becomes_a_store_query_and_empty_fields_are_no_filter() {
        let query = parse_query(Some(
            "before=42&limit=7&actor=maria&action=unlock&environment=production&repository=acme%2Fwidgets",
        ))
        .unwrap();
        assert_eq!(
            query,
            AuditQuery {
                before: Some(42),
                limit: 7,
                actor: Some("maria".into()),
                action: Some(AuditAction::Unlock),
                environment: Some("production".into()),
                repository: Some("acme/widgets".into()),
            }
        );
        let plain = parse_query(Some("actor=&action=&environment=&repository=&before=")).unwrap();
        assert_eq!(
            plain,
            AuditQuery {
                limit: DEFAULT_LIMIT,
                ..AuditQuery::default()
            }
        );
        assert_eq!(parse_query(None).unwrap(), plain);
    }

    #[test]
    fn a_bad_value_is_refused_with_a_sentence_naming_it() {
        for (raw, says) in [
            ("before=abc", "before: \"abc\" is not an entry's id"),
            ("before=0", "before: \"0\" is not"),
            ("before=-3", "before: \"-3\" is not"),
            ("limit=0", "limit: \"0\" is not a number from 1 to 500"),
            ("limit=501", "limit: \"501\" is not a number from 1 to 500"),
            ("limit=ten", "limit: \"ten\""),
            (
                "action=delete",
                "action: \"delete\" is not an audited action: sign_in",
            ),
            (
                "colour=red",
                "\"colour\" is not a parameter of the audit log: before, limit",
            ),
            ("actor=a&actor=b", "\"actor\": given twice"),
        ] {
            let refused = parse_query(Some(raw)).unwrap_err();
            assert!(refused.starts_with(says), "{raw}: {refused}");
        }
        let long = format!("environment={}", "e".repeat(201));
        assert_eq!(
            parse_query(Some(&long)).unwrap_err(),
            "environment: at most 200 characters"
        );
        let hidden = parse_query(Some("before=%1B%5B2J")).unwrap_err();
        assert!(!hidden.contains('\u{1b}'), "{hidden}");
    }
}
