//! Claims under windows and freezes: what a hold lets through starts in the policy's
//! order among what passes; what it holds waits, untouched, and its cost does not grow
//! with it; once the hold ends the held jobs start in their policy's order.

use proptest::prelude::*;

use crate::model::window::instant;
use crate::model::{Clearance, DeploymentState, Hold, Policy};
use crate::store::db::{Connection, params};
use crate::store::jobs;
use crate::store::tests::{each_engine, job};

const MERGE: &str = r#"{"pull_request": 42, "merged_at": "2026-12-07T10:00:00Z"}"#;
const BY_HAND: &str = r#"{"deploy_user": "maria"}"#;
const FORCED: &str = r#"{"force": true}"#;

fn payload(clearance: Clearance) -> &'static str {
    match clearance {
        Clearance::Automatic => MERGE,
        Clearance::Deliberate => BY_HAND,
        Clearance::Urgent => FORCED,
    }
}

fn closed() -> Option<Hold> {
    Some(Hold::Closed { opens: None })
}

fn frozen() -> Option<Hold> {
    Some(Hold::Frozen {
        until: instant(1_000_000).to_zoned(jiff::tz::TimeZone::UTC),
        reason: "holidays".into(),
    })
}

fn queue(conn: &Connection, id: u64, clearance: Clearance) {
    let mut job = job(id, None);
    job.payload = payload(clearance).into();
    assert!(jobs::enqueue(conn, &job, "d", 0).unwrap());
}

/// Claims under `hold`, finishes what started (success), returns the ids started.
fn claim(conn: &Connection, policy: Policy, hold: &Option<Hold>) -> Vec<u64> {
    let started =
        jobs::claim_with_holds(conn, "test", 4, |_| policy, |_| hold.clone(), 10).unwrap();
    for claimed in &started {
        jobs::finish(conn, &claimed.job, DeploymentState::Success, "done", 11).unwrap();
    }
    started.iter().map(|c| c.job.id.get()).collect()
}

fn state(conn: &Connection, id: u64) -> String {
    conn.query_row(
        "SELECT state || coalesce(':' || result, '') FROM jobs WHERE deployment_id = ?1",
        params![i64::try_from(id).unwrap()],
        |row| row.get(0),
    )
    .unwrap()
}

#[test]
fn a_closed_window_lets_deliberate_and_forced_deploys_through_and_a_freeze_only_forced() {
    each_engine(|conn| {
        queue(conn, 1, Clearance::Automatic);
        queue(conn, 2, Clearance::Deliberate);
        queue(conn, 3, Clearance::Urgent);
        queue(conn, 4, Clearance::Deliberate);
        assert_eq!(claim(conn, Policy::Queue, &frozen()), [3]);
        assert_eq!(claim(conn, Policy::Queue, &frozen()), Vec::<u64>::new());
        assert_eq!(claim(conn, Policy::Queue, &closed()), [2]);
        assert_eq!(claim(conn, Policy::Queue, &closed()), [4]);
        assert_eq!(claim(conn, Policy::Queue, &closed()), Vec::<u64>::new());
        assert_eq!(state(conn, 1), "queued");
        assert_eq!(claim(conn, Policy::Queue, &None), [1]);
    });
}

#[test]
fn under_latest_what_passes_retires_every_older_one_and_the_newer_held_wait() {
    each_engine(|conn| {
        queue(conn, 1, Clearance::Automatic);
        queue(conn, 2, Clearance::Deliberate);
        queue(conn, 3, Clearance::Automatic);
        queue(conn, 4, Clearance::Deliberate);
        queue(conn, 5, Clearance::Automatic);
        assert_eq!(claim(conn, Policy::Latest, &closed()), [4]);
        // Held or not, the older ones would deploy older commits over 4 later: retired.
        for older in [1, 2, 3] {
            assert_eq!(state(conn, older), "finished:inactive", "{older}");
        }
        assert_eq!(state(conn, 5), "queued");
        // The window opens: the newer held one starts after 4.
        assert_eq!(claim(conn, Policy::Latest, &None), [5]);
    });
}

/// A claim in a closed window reads the same with ten held jobs as with twenty thousand:
/// counted in SQLite's steps, whatever the machine's speed.
#[test]
fn a_claim_costs_the_same_with_ten_or_twenty_thousand_jobs_held() {
    use crate::store::tests::steps;
    fn held(count: u64) -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let c = Connection::Sqlite(&tx);
        for id in 1..=count {
            queue(&c, id, Clearance::Automatic);
        }
        // One deliberate deploy at the back of the queue passes the window.
        queue(&c, count + 1, Clearance::Deliberate);
        tx.commit().unwrap();
        conn
    }
    let round = |c: &Connection| {
        for hold in [frozen(), closed(), closed(), frozen()] {
            jobs::claim_with_holds(c, "test", 4, |_| Policy::Queue, |_| hold.clone(), 10).unwrap();
        }
    };
    let (mut small, mut large) = (held(10), held(20_000));
    let (at_10, at_20k) = (steps(&mut small, round), steps(&mut large, round));
    eprintln!("claims in a closed window: {at_10} SQLite steps with 10 held, {at_20k} with 20,000");
    assert!(
        at_20k * 2 < at_10 * 3,
        "{at_10} steps with 10 held, {at_20k} with 20,000"
    );
}

#[derive(Debug, Clone)]
enum Step {
    Queue(Clearance),
    Hold(Option<bool>),
    Claim,
}

fn step() -> impl Strategy<Value = Step> {
    let clearance = prop_oneof![
        3 => Just(Clearance::Automatic),
        2 => Just(Clearance::Deliberate),
        1 => Just(Clearance::Urgent),
    ];
    prop_oneof![
        4 => clearance.prop_map(Step::Queue),
        2 => prop_oneof![Just(None), Just(Some(false)), Just(Some(true))].prop_map(Step::Hold),
        3 => Just(Step::Claim),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Over random arrivals, holds that come and go (a window closed, a freeze) and
    /// claims: no job starts while a hold holds it; what starts is the oldest (`queue`) or
    /// newest (`latest`) of what passes, and under `latest` it retires every older one,
    /// held or not (none may deploy an older commit over it later); a newer held job waits;
    /// and once nothing holds, every job still queued is started in the policy's order.
    #[test]
    fn no_held_job_starts_and_the_rest_follow_the_policy(
        latest in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let policy = if latest { Policy::Latest } else { Policy::Queue };
        let mut db = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut db).unwrap();
        let conn = Connection::Sqlite(&db);
        let mut queued: Vec<(u64, Clearance)> = Vec::new();
        let mut hold: Option<Hold> = None;
        let mut next_id = 1;
        for step in steps.into_iter().chain([Step::Hold(None), Step::Claim]) {
            match step {
                Step::Queue(clearance) => {
                    queue(&conn, next_id, clearance);
                    queued.push((next_id, clearance));
                    next_id += 1;
                }
                Step::Hold(None) => hold = None,
                Step::Hold(Some(freeze)) => hold = if freeze { frozen() } else { closed() },
                Step::Claim => {
                    let passing: Vec<u64> = queued
                        .iter()
                        .filter(|(_, c)| hold.as_ref().is_none_or(|h| h.lets_through(*c)))
                        .map(|(id, _)| *id)
                        .collect();
                    let started = claim(&conn, policy, &hold);
                    let expected: Vec<u64> = match policy {
                        Policy::Queue => passing.first().copied().into_iter().collect(),
                        Policy::Latest => passing.last().copied().into_iter().collect(),
                    };
                    prop_assert_eq!(&started, &expected, "queued {:?} under {:?}", queued, hold);
                    if let Some(&newest) = started.first() {
                        let retired: Vec<u64> = match policy {
                            // Held or not: none older may deploy over it later.
                            Policy::Latest => queued.iter().map(|(id, _)| *id).filter(|&id| id < newest).collect(),
                            Policy::Queue => vec![],
                        };
                        for id in &retired {
                            prop_assert_eq!(state(&conn, *id), "finished:inactive");
                        }
                        queued.retain(|(id, _)| *id != newest && !retired.contains(id));
                    }
                    for (id, _) in &queued {
                        prop_assert_eq!(state(&conn, *id), "queued");
                    }
                }
            }
        }
        // Nothing holds any more: the rest start, one claim each, in the policy's order.
        while !queued.is_empty() {
            let started = claim(&conn, policy, &None);
            let expected = match policy {
                Policy::Queue => queued.first().map(|(id, _)| *id),
                Policy::Latest => queued.last().map(|(id, _)| *id),
            };
            prop_assert_eq!(started.first().copied(), expected);
            match policy {
                Policy::Queue => { queued.remove(0); }
                Policy::Latest => queued.clear(),
            }
        }
    }
}

/// Migration 20 reads what each waiting deployment is from its payload; finished ones are
/// left as they were.
#[test]
fn the_upgrade_classifies_what_waits_from_its_payload() {
    each_engine(|conn| {
        queue(conn, 1, Clearance::Automatic);
        queue(conn, 2, Clearance::Deliberate);
        queue(conn, 3, Clearance::Urgent);
        conn.execute("UPDATE jobs SET clearance = 0", []).unwrap();
        jobs::classify_waiting(conn).unwrap();
        let clearance = |id: i64| -> i64 {
            conn.query_row(
                "SELECT clearance FROM jobs WHERE deployment_id = ?1",
                params![id],
                |row| row.get(0),
            )
            .unwrap()
        };
        assert_eq!((clearance(1), clearance(2), clearance(3)), (0, 1, 2));
    });
}
