//! An environment's approvals, checked and built into its [`ApprovalRule`]: `approvals`
//! (how many people), `reviewers` (who may), `self_approval` (whether the change's author
//! may) and `approval_timeout` (how long a deployment waits). The three others need
//! `approvals`, so a rule is never half written without a word.

use toml::Spanned;

use super::FileEnvironment;
use super::validate::Invalid;
use crate::model::approval::{DEFAULT_APPROVAL_TIMEOUT, MAX_APPROVAL_TIMEOUT, MAX_APPROVALS};
use crate::model::{ApprovalRule, Environment, Grantee};

/// The rule `file` describes; `None` without `approvals` (or with `approvals = 0`).
pub(super) fn approval_rule(
    file: &FileEnvironment,
    name: &Environment,
) -> Result<Option<ApprovalRule>, Invalid> {
    let required = match &file.approvals {
        Some(count) if !(0..=i64::from(MAX_APPROVALS)).contains(count.get_ref()) => {
            return Err((
                count.span(),
                format!(
                    "approvals = {}: expected 1 to {MAX_APPROVALS} people (0 or none: no \
                     approval)",
                    count.get_ref()
                ),
            ));
        }
        Some(count) if *count.get_ref() > 0 => u32::try_from(*count.get_ref()).unwrap_or(1),
        _ => return no_rule(file, name),
    };
    let mut reviewers: Vec<Grantee> = Vec::new();
    for text in file.reviewers.iter().flat_map(|r| r.get_ref()) {
        let reviewer = Grantee::parse(text.get_ref()).map_err(|e| (text.span(), e))?;
        if reviewers.contains(&reviewer) {
            return Err((
                text.span(),
                format!("reviewers: {reviewer} is listed twice"),
            ));
        }
        reviewers.push(reviewer);
    }
    let people_only = reviewers.iter().all(|r| matches!(r, Grantee::User(_)));
    if !reviewers.is_empty() && people_only && reviewers.len() < required as usize {
        let span = file.reviewers.as_ref().map_or(0..0, Spanned::span);
        return Err((
            span,
            format!(
                "environment {name}: approvals = {required}, but reviewers names only {} \
                 people and no team: no deployment could ever be approved",
                reviewers.len()
            ),
        ));
    }
    let timeout = match &file.approval_timeout {
        None => DEFAULT_APPROVAL_TIMEOUT,
        Some(text) => {
            let parsed =
                crate::config::parse_duration(text.get_ref()).map_err(|e| (text.span(), e))?;
            if parsed.is_zero() || parsed > MAX_APPROVAL_TIMEOUT {
                return Err((
                    text.span(),
                    "approval_timeout must be longer than 0s and at most 30 days".to_owned(),
                ));
            }
            parsed
        }
    };
    Ok(Some(ApprovalRule {
        required,
        reviewers,
        self_approval: file.self_approval.as_ref().is_some_and(|s| *s.get_ref()),
        timeout,
    }))
}

/// No rule: then none of the keys that shape one may be set.
fn no_rule(file: &FileEnvironment, name: &Environment) -> Result<Option<ApprovalRule>, Invalid> {
    let set = [
        ("reviewers", file.reviewers.as_ref().map(Spanned::span)),
        (
            "self_approval",
            file.self_approval.as_ref().map(Spanned::span),
        ),
        (
            "approval_timeout",
            file.approval_timeout.as_ref().map(Spanned::span),
        ),
    ];
    match set
        .into_iter()
        .find_map(|(key, span)| span.map(|s| (key, s)))
    {
        Some((key, span)) => Err((
            span,
            format!(
                "environment {name}: `{key}` needs `approvals` (how many people must approve \
                 a deployment)"
            ),
        )),
        None => Ok(None),
    }
}
