//! The `waits` and `check_results` tables: deployments that wait before they are created —
//! a merge for its commit's checks, a promotion for its soak — and the check results they
//! wait on. A wait ends in the transaction that learns its fate: `passed` queues the
//! deployment's creation in the outbox; `failed` and `timed_out` forget the merge, so a new
//! delivery of it starts a new wait; `superseded` when a newer merge or success replaced it
//! under the `latest` policy; `given_up` when GitHub refused to create its deployment.
//!
//! A wait decides `timed_out` only on an answer from GitHub: past its deadline it asks for
//! the checks once more, and while GitHub does not answer (an outage, retried through the
//! outbox) it keeps waiting. A wait never fails because GitHub was unreachable. A wait that
//! `failed` opens again when its failed check is re-run (a newer result that is not a
//! failure): re-running flaky CI deploys the merge without anyone redelivering it.
//!
//! Order: under `latest`, a wait never passes once a newer one (by merge time, or by the
//! deployment promoted from) has passed — it would deploy older code over newer. Under
//! `queue`, a green wait passes only when no older one for its environment still waits, so
//! deployments are created, and run, in merge order.

mod clock;
mod dashboard;
mod order;
mod record;
mod results;
mod settle;

pub use clock::{Tick, next_due, tick};
pub use dashboard::{WaitRow, waiting_counts, waits};
pub use record::{
    creation_given_up, read_failed, record_check, record_read, soak, wait_for_checks,
};
pub use results::results;

/// A wait that ended, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// `checks` or `soak`.
    pub kind: &'static str,
    /// `passed`, `failed`, `timed_out`, `superseded` or `given_up`.
    pub outcome: &'static str,
}

/// What the waits that ended at once came to, in plain sentences, for the answer to the
/// delivery that ended them: `a merge waiting for its checks will not deploy: a check it
/// needs failed`. Waits that ended alike are counted in one sentence.
pub fn summary(ended: &[Ended]) -> Option<String> {
    let mut alike: Vec<(&Ended, usize)> = Vec::new();
    for e in ended {
        match alike.iter_mut().find(|(seen, _)| *seen == e) {
            Some((_, count)) => *count += 1,
            None => alike.push((e, 1)),
        }
    }
    let sentences: Vec<String> = alike.into_iter().map(|(e, n)| sentence(e, n)).collect();
    (!sentences.is_empty()).then(|| sentences.join("; "))
}

/// One sentence on `n` waits that ended as `e`.
fn sentence(e: &Ended, n: usize) -> String {
    let one = n == 1;
    let (merge, its, it, their) = if one {
        ("a merge".to_owned(), "its", "it", "its")
    } else {
        (format!("{n} merges"), "their", "they", "their")
    };
    let (older, promotion) = if one {
        ("an older".to_owned(), "a promotion".to_owned())
    } else {
        (format!("{n} older"), format!("{n} promotions"))
    };
    let (has, deployment) = if one {
        ("has", "deployment is")
    } else {
        ("have", "deployments are")
    };
    let them = if one { "it" } else { "them" };
    let merges = if one { "merge" } else { "merges" };
    let promotions = if one { "promotion" } else { "promotions" };
    let waiting = format!("waiting for {their} checks");
    match (e.kind, e.outcome) {
        ("checks", "passed") => {
            format!("{merge} {waiting} {has} all of them green: {its} {deployment} being created")
        }
        ("checks", "failed") => {
            format!("{merge} {waiting} will not deploy: a check {it} needs failed")
        }
        ("checks", "timed_out") => {
            format!("{merge} {waiting} will not deploy: {it} waited past checks_timeout")
        }
        ("checks", "superseded") => {
            format!("{older} {merges} {waiting} will not deploy: a newer merge replaces {them}")
        }
        ("checks", "given_up") => {
            format!("{merge} {waiting} will not deploy: GitHub refused to create {its} deployment")
        }
        ("soak", "passed") => {
            format!("{promotion} {has} soaked: {its} {deployment} being created")
        }
        ("soak", "superseded") => format!(
            "{older} {promotions} still soaking will not deploy: a newer success replaces {them}"
        ),
        (kind, outcome) => {
            let what = if kind == "soak" {
                promotion
            } else {
                format!("{merge} {waiting}")
            };
            format!("{what} ended {}", outcome.replace('_', " "))
        }
    }
}

fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

fn json_error(err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(err))
}

fn json_error_text(text: &str) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(text.into())
}

#[cfg(test)]
pub(crate) mod tests;
