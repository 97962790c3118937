//! Tests of approvals, on both engines: one and two approvals, self-approval refused (and
//! allowed where configured), a rejection, the deadline, every refusal's sentence, what
//! the lists say, and that an approved job is an ordinary queued one (locks hold it;
//! under `latest` a newer deploy retires one still waiting).

use std::time::Duration;

use super::*;
use crate::model::{ApprovalRule, Grantee, Policy};
use crate::store::tests::{each_engine, job};
use crate::store::{locks, retention};

mod properties;

const HOUR: i64 = 3_600_000;

/// One approval by octocat or @acme/sre, within 4 hours, the author not allowed.
fn rule(required: u32) -> ApprovalRule {
    ApprovalRule {
        reviewers: vec![
            Grantee::parse("octocat").unwrap(),
            Grantee::parse("@acme/sre").unwrap(),
        ],
        timeout: Duration::from_secs(4 * 3600),
        ..ApprovalRule::new(required)
    }
}

fn id(n: u64) -> DeploymentId {
    DeploymentId::from(n)
}

/// The statuses queued for deployment `n`: `(state, description, log_url)`, in order.
fn statuses(conn: &Connection, n: i64) -> Vec<(String, String, Option<String>)> {
    conn.prepare(
        "SELECT body FROM outbox WHERE kind = 'deployment_status' AND deployment_id = ?1
         ORDER BY id",
    )
    .unwrap()
    .query_map([n], |row| row.get::<_, String>(0))
    .unwrap()
    .map(|body| {
        let body: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
        (
            body["state"].as_str().unwrap().to_owned(),
            body["description"].as_str().unwrap().to_owned(),
            body["log_url"].as_str().map(str::to_owned),
        )
    })
    .collect()
}

/// The events queued for deployment `n`: `(event, who, description)`, in order.
fn events(conn: &Connection, n: i64) -> Vec<(String, String, String)> {
    conn.prepare("SELECT body FROM outbox WHERE kind = 'notify' AND deployment_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([n], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|body| {
            let body: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
            let text = |key: &str| body[key].as_str().unwrap().to_owned();
            (text("event"), text("who"), text("description"))
        })
        .collect()
}

fn state(conn: &Connection, n: i64) -> (String, Option<String>, i64) {
    conn.query_row(
        "SELECT state, result, queued_at FROM jobs WHERE deployment_id = ?1",
        [n],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .unwrap()
}

fn claimed(conn: &Connection, policy: Policy, now: i64) -> Vec<u64> {
    jobs::claim(conn, "test", 4, |_| policy, now)
        .unwrap()
        .iter()
        .map(|c| c.job.id.get())
        .collect()
}

#[test]
fn one_approval_queues_the_deployment_in_its_place_and_says_who_approved() {
    each_engine(|conn| {
        let mut asked = job(1, None);
        asked.log_url = Some("https://deploy.example.com/deployments/1/log?token=t".into());
        assert!(request(conn, &asked, "d1", &rule(1).into(), 1_000).unwrap());
        assert!(
            !request(conn, &asked, "d2", &rule(1).into(), 2_000).unwrap(),
            "a redelivery"
        );
        assert_eq!(state(conn, 1), ("approval".into(), None, 1_000));
        assert_eq!(
            statuses(conn, 1),
            [(
                "pending".into(),
                "waiting for approval by octocat, @acme/sre".into(),
                None
            )]
        );
        assert_eq!(
            events(conn, 1),
            [(
                "approval_requested".into(),
                "octo-dev".into(),
                "waiting for approval by octocat, @acme/sre, until 1970-01-01T04:00:01.000Z".into()
            )]
        );
        assert!(claimed(conn, Policy::Queue, 3_000).is_empty(), "it waits");

        let approved = approve(conn, id(1), "octocat", 4_000).unwrap().unwrap();
        assert_eq!(
            approved,
            Approved {
                queued: true,
                approvers: vec!["octocat".into()],
                needed: 1
            }
        );
        assert_eq!(
            state(conn, 1),
            ("queued".into(), None, 1_000),
            "it keeps its place"
        );
        assert_eq!(
            statuses(conn, 1)[1],
            ("queued".into(), "approved by octocat".into(), None)
        );
        assert_eq!(claimed(conn, Policy::Queue, 5_000), [1]);
    });
}

#[test]
fn two_approvals_need_two_distinct_people_and_the_author_is_not_one_of_them() {
    each_engine(|conn| {
        request(conn, &job(1, None), "d", &rule(2).into(), 0).unwrap();
        let own = approve(conn, id(1), "Octo-Dev", 1).unwrap().unwrap_err();
        assert_eq!(
            own,
            ApprovalRefusal::OwnChange {
                id: id(1),
                login: "Octo-Dev".into()
            }
        );
        assert!(own.to_string().contains("self_approval = false"), "{own}");
        let first = approve(conn, id(1), "octocat", 2).unwrap().unwrap();
        assert!(!first.queued);
        assert_eq!(state(conn, 1).0, "approval");
        let again = approve(conn, id(1), "OctoCat", 3).unwrap().unwrap_err();
        assert_eq!(again.to_string(), "OctoCat already approved deployment 1");
        let second = approve(conn, id(1), "hubot", 4).unwrap().unwrap();
        assert_eq!(
            (second.queued, second.approvers),
            (true, vec!["octocat".to_owned(), "hubot".to_owned()])
        );
        assert_eq!(
            statuses(conn, 1).last().unwrap().1,
            "approved by octocat, hubot"
        );
        let late = approve(conn, id(1), "mona", 5).unwrap().unwrap_err();
        assert_eq!(
            late.to_string(),
            "deployment 1 is approved already and queued (approved by octocat, hubot)"
        );

        // Where the environment allows it, the author counts like anyone.
        let own_allowed = ApprovalRule {
            self_approval: true,
            ..rule(1)
        };
        request(conn, &job(2, None), "d", &own_allowed.into(), 0).unwrap();
        assert!(approve(conn, id(2), "octo-dev", 6).unwrap().unwrap().queued);
    });
}

#[test]
fn a_rejection_ends_the_deployment_as_a_failure_that_never_ran() {
    each_engine(|conn| {
        let mut asked = job(1, None);
        asked.log_url = Some("https://deploy.example.com/deployments/1/log?token=t".into());
        request(conn, &asked, "d", &rule(2).into(), 0).unwrap();
        approve(conn, id(1), "octocat", 1).unwrap().unwrap();
        let said = reject(conn, id(1), "mona", "  not during the freeze ", 2)
            .unwrap()
            .unwrap();
        assert_eq!(said, "rejected by mona: not during the freeze");
        assert_eq!(
            state(conn, 1),
            ("finished".into(), Some("failure".into()), 0)
        );
        assert_eq!(
            statuses(conn, 1).last().unwrap(),
            &("failure".into(), said.clone(), None),
            "no log: it never ran"
        );
        let told = events(conn, 1);
        assert_eq!(
            told.last().unwrap(),
            &("deploy_failed".into(), "octo-dev".into(), said)
        );
        assert!(claimed(conn, Policy::Queue, 3).is_empty());

        let after = approve(conn, id(1), "hubot", 4).unwrap().unwrap_err();
        assert_eq!(
            after.to_string(),
            "deployment 1 has ended, failure (rejected by mona: not during the freeze): it \
             waits for nothing"
        );
        assert!(matches!(
            reject(conn, id(1), "hubot", "", 5).unwrap(),
            Err(ApprovalRefusal::NotWaiting { .. })
        ));
        // The author may withdraw their own; a reason is optional.
        request(conn, &job(2, None), "d", &rule(1).into(), 0).unwrap();
        let withdrawn = reject(conn, id(2), "octo-dev", "", 6).unwrap().unwrap();
        assert_eq!(withdrawn, "rejected by octo-dev");
    });
}

#[test]
fn past_its_deadline_a_deployment_ends_saying_how_many_approved() {
    each_engine(|conn| {
        request(conn, &job(1, None), "d", &rule(2).into(), 1_000).unwrap();
        request(conn, &job(2, None), "d", &rule(1).into(), 2_000).unwrap();
        approve(conn, id(1), "octocat", 1_500).unwrap().unwrap();
        assert_eq!(next_deadline(conn).unwrap(), Some(4 * HOUR + 1_000));
        assert_eq!(expire(conn, 4 * HOUR + 999, 10).unwrap(), 0);
        assert_eq!(expire(conn, 4 * HOUR + 1_000, 10).unwrap(), 1);
        assert_eq!(state(conn, 1).1.as_deref(), Some("failure"));
        assert_eq!(
            statuses(conn, 1).last().unwrap().1,
            "no approval within 4h (needed 2, had 1)"
        );
        assert_eq!(events(conn, 1).last().unwrap().0, "deploy_failed");
        assert_eq!(state(conn, 2).0, "approval", "not due yet");
        assert_eq!(next_deadline(conn).unwrap(), Some(4 * HOUR + 2_000));
        assert_eq!(expire(conn, 5 * HOUR, 10).unwrap(), 1);
        assert_eq!(
            statuses(conn, 2).last().unwrap().1,
            "no approval within 4h (needed 1, had 0)"
        );
        assert_eq!(next_deadline(conn).unwrap(), None);
        assert_eq!(expire(conn, 6 * HOUR, 10).unwrap(), 0, "once");
    });
}

#[test]
fn what_cannot_be_approved_says_why() {
    each_engine(|conn| {
        let unknown = approve(conn, id(9), "octocat", 0).unwrap().unwrap_err();
        assert_eq!(unknown, ApprovalRefusal::Unknown(id(9)));
        assert!(
            unknown
                .to_string()
                .starts_with("deployhook has no deployment 9")
        );
        jobs::enqueue(conn, &job(1, None), "d", 0).unwrap();
        let unasked = approve(conn, id(1), "octocat", 0).unwrap().unwrap_err();
        assert_eq!(
            unasked.to_string(),
            "deployment 1 needs no approval: it is queued"
        );
        assert_eq!(of_deployment(conn, id(1)).unwrap(), None);
        request(conn, &job(2, None), "d", &rule(1).into(), 0).unwrap();
        approve(conn, id(2), "octocat", 1).unwrap().unwrap();
        assert_eq!(claimed(conn, Policy::Queue, 2), [1]);
        jobs::finish(conn, &job(1, None), DeploymentState::Success, "ok", 3).unwrap();
        assert_eq!(claimed(conn, Policy::Queue, 4), [2]);
        let running = reject(conn, id(2), "mona", "too late", 5)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            running.to_string(),
            "deployment 2 was approved and is running"
        );
    });
}

#[test]
fn the_lists_show_who_approved_and_until_when() {
    each_engine(|conn| {
        let forced = DeployJob {
            payload: r#"{"force": true, "rollback": true}"#.into(),
            ..job(2, None)
        };
        request(conn, &job(1, None), "d", &rule(2).into(), 0).unwrap();
        request(conn, &forced, "d", &rule(1).into(), -HOUR).unwrap();
        approve(conn, id(1), "octocat", 10).unwrap().unwrap();
        let listed = waiting(conn).unwrap();
        let ids: Vec<u64> = listed.iter().map(|w| w.deployment_id).collect();
        assert_eq!(ids, [2, 1], "soonest deadline first");
        let first = &listed[1];
        assert_eq!(
            (
                first.author.as_str(),
                first.needed,
                first.deadline,
                first.forced
            ),
            ("octo-dev", 2, 4 * HOUR, false)
        );
        assert_eq!(first.approvers, ["octocat"]);
        assert_eq!(
            first.waiting_for,
            "waiting for 2 approvals by octocat, @acme/sre"
        );
        assert!(listed[0].forced);

        reject(conn, id(1), "mona", "no", 20).unwrap().unwrap();
        let record = of_deployment(conn, id(1)).unwrap().unwrap();
        assert_eq!(record.state, "failure");
        assert_eq!(record.needed, 2);
        let reviews: Vec<(&str, bool, Option<&str>)> = record
            .reviews
            .iter()
            .map(|r| (r.login.as_str(), r.approved, r.reason.as_deref()))
            .collect();
        assert_eq!(
            reviews,
            [("octocat", true, None), ("mona", false, Some("no"))]
        );
        assert_eq!(waiting(conn).unwrap().len(), 1);
    });
}

#[test]
fn an_approved_deployment_is_held_by_a_lock_like_any_other_unless_forced() {
    each_engine(|conn| {
        let forced = DeployJob {
            payload: r#"{"force": true}"#.into(),
            ..job(2, None)
        };
        request(conn, &job(1, None), "d", &rule(1).into(), 0).unwrap();
        request(conn, &forced, "d", &rule(1).into(), 0).unwrap();
        locks::lock(
            conn,
            &locks::Lock {
                environment: "production".into(),
                reason: "incident".into(),
                locked_by: "maria".into(),
                locked_at: 0,
                until: None,
            },
        )
        .unwrap();
        approve(conn, id(1), "octocat", 1).unwrap().unwrap();
        assert!(claimed(conn, Policy::Queue, 2).is_empty(), "locked");
        assert!(
            claimed(conn, Policy::Queue, 2).is_empty(),
            "a forced deployment still waits for its approval"
        );
        approve(conn, id(2), "octocat", 3).unwrap().unwrap();
        assert_eq!(
            claimed(conn, Policy::Queue, 4),
            [2],
            "forced through the lock"
        );
        jobs::finish(conn, &forced, DeploymentState::Success, "ok", 5).unwrap();
        locks::unlock(conn, "production", 5).unwrap();
        assert_eq!(claimed(conn, Policy::Queue, 6), [1]);
    });
}

#[test]
fn under_latest_a_newer_deploy_retires_one_still_waiting_for_approval() {
    each_engine(|conn| {
        request(conn, &job(1, None), "d", &rule(1).into(), 0).unwrap();
        request(conn, &job(2, None), "d", &rule(1).into(), 0).unwrap();
        approve(conn, id(2), "octocat", 1).unwrap().unwrap();
        assert_eq!(claimed(conn, Policy::Latest, 2), [2]);
        assert_eq!(state(conn, 1).1.as_deref(), Some("inactive"));
        assert_eq!(
            statuses(conn, 1).last().unwrap().1,
            "superseded by deployment 2; not deployed"
        );
        let moot = approve(conn, id(1), "octocat", 3).unwrap().unwrap_err();
        assert!(moot.to_string().contains("has ended, inactive"), "{moot}");
    });
}

#[test]
fn retention_prunes_a_finished_deployments_approvals_with_it() {
    each_engine(|conn| {
        request(conn, &job(1, None), "d", &rule(2).into(), 0).unwrap();
        approve(conn, id(1), "octocat", 1).unwrap().unwrap();
        reject(conn, id(1), "mona", "no", 2).unwrap().unwrap();
        request(conn, &job(2, None), "d", &rule(2).into(), 0).unwrap();
        approve(conn, id(2), "octocat", 1).unwrap().unwrap();
        while retention::prune_batch(conn, 0, 1_000).unwrap() > 0 {}
        let left: Vec<i64> = conn
            .prepare("SELECT deployment_id FROM approvals ORDER BY deployment_id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, [2], "a deployment still waiting keeps its approvals");
    });
}

/// Replicas approving, the leader's clock expiring and its deploy worker claiming the same
/// deployments at once on PostgreSQL (each write its own transaction, at READ COMMITTED):
/// two approvals given together both count, a deployment is never both approved and
/// expired, and none of it deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgresql_approvals_given_at_once_all_count_and_nothing_ends_twice() {
    let Some(cluster) = deployhook_testkit::postgres::shared() else {
        return;
    };
    let store = crate::store::postgres::PgStore::connect(&cluster.database())
        .await
        .unwrap();
    const ROUNDS: u64 = 40;
    let deadline = 4 * HOUR;
    store
        .run(false, |c| {
            // Odd rounds wait an hour longer: the clock does not reach them.
            for n in 1..=ROUNDS {
                let asked = if n % 2 == 1 { HOUR } else { 0 };
                request(c, &job(n, None), "d", &rule(2).into(), asked)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 1..=ROUNDS {
        for login in ["octocat", "hubot"] {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let answer = store
                    .run(false, move |c| approve(c, id(n), login, deadline - 1))
                    .await
                    .unwrap();
                // Refused only when the clock ended it first, or a newer one ran first
                // (approving it then would put older code back).
                assert!(
                    matches!(
                        answer,
                        Ok(_)
                            | Err(ApprovalRefusal::NotWaiting { .. })
                            | Err(ApprovalRefusal::Superseded { .. })
                    ),
                    "{answer:?}"
                );
            }));
        }
        // The deploy worker claims all along.
        let claiming = store.clone();
        tasks.push(tokio::spawn(async move {
            claiming
                .run(false, move |c| {
                    jobs::claim(c, "test", 100, |_| Policy::Queue, deadline - 1)
                })
                .await
                .unwrap();
        }));
        // Every other round races the clock, at the deadline.
        if n % 2 == 0 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .run(false, move |c| expire(c, deadline, 100))
                    .await
                    .unwrap();
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let told = store
        .run(true, |c| {
            let mut told = Vec::new();
            for n in 1..=ROUNDS {
                let states: Vec<String> = statuses(c, n as i64).into_iter().map(|s| s.0).collect();
                told.push((n, state(c, n as i64).0, states.join(" ")));
            }
            Ok(told)
        })
        .await
        .unwrap();
    for (n, state, states) in told {
        let approved = matches!(state.as_str(), "queued" | "running") && states == "pending queued";
        let expired = state == "finished" && states == "pending failure";
        let superseded = state == "finished" && states == "pending inactive";
        assert!(
            approved || superseded || (n % 2 == 0 && expired),
            "deployment {n}: {state} after {states}"
        );
    }
}
