//! The previews' state machine on both engines: opening with and without room, pushes,
//! closing (waiting ones at once, live ones through their destroy), waiting ones started
//! oldest first, the end of a destroy; and a property over random orders of events.

use proptest::prelude::*;

use super::*;
use crate::model::{DEPLOY_TASK, Environment};
use crate::store::tests::each_engine;

const REPO: &str = "acme/widgets";

fn slot(limit: usize) -> PreviewSlot {
    PreviewSlot {
        config: Environment::parse("preview").unwrap(),
        limit,
        gate: None,
    }
}

fn sha(n: u64) -> String {
    format!("{n:040x}")
}

fn open_change(number: u64, head: u64, limit: usize) -> PreviewChange {
    let environment = format!("pr-{number}");
    PreviewChange::Open {
        new: Box::new(NewDeployment {
            repo: REPO.parse().unwrap(),
            pull_request: number,
            installation: None,
            request: DeploymentRequest {
                git_ref: sha(head).parse().unwrap(),
                task: DEPLOY_TASK.into(),
                auto_merge: false,
                required_contexts: vec![],
                environment: environment.parse().unwrap(),
                payload: serde_json::json!({
                    "pull_request": number,
                    "preview": {"pull_request": number, "environment": "preview"},
                }),
                description: "Preview".into(),
                production_environment: Some(false),
                transient_environment: Some(true),
            },
            gate: None,
        }),
        slot: slot(limit),
    }
}

fn close_change(number: u64, limit: usize) -> PreviewChange {
    PreviewChange::Close {
        repo: REPO.parse().unwrap(),
        pull_request: number,
        slots: vec![slot(limit)],
    }
}

fn states(conn: &Connection) -> Vec<(u64, String)> {
    let mut rows: Vec<(u64, String)> = list(conn, 100)
        .unwrap()
        .into_iter()
        .map(|r| (r.pull_request, r.state))
        .collect();
    rows.sort();
    rows
}

/// The creations queued, as (task, environment).
fn creations(conn: &Connection) -> Vec<(String, String)> {
    let mut statement = conn
        .prepare("SELECT body FROM outbox WHERE kind = 'create_deployment' ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|body| {
            let body: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
            (
                body["request"]["task"].as_str().unwrap().to_owned(),
                body["request"]["environment"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn destroy_job(number: u64, id: u64) -> DeployJob {
    DeployJob {
        id: id.into(),
        repo: REPO.parse().unwrap(),
        environment: format!("pr-{number}").parse().unwrap(),
        sha: sha(1).parse().unwrap(),
        git_ref: sha(1),
        task: DESTROY.into(),
        deploy_user: "octo-dev".into(),
        payload: serde_json::json!({"preview": {"pull_request": number}}).to_string(),
        environment_url: None,
        log_url: None,
        installation: None,
    }
}

#[test]
fn past_the_limit_a_preview_waits_and_the_oldest_starts_when_one_closes() {
    each_engine(|conn| {
        for (number, at) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            apply(conn, &[open_change(number, number, 2)], 0, at).unwrap();
        }
        assert_eq!(
            states(conn),
            [
                (1, "live".into()),
                (2, "live".into()),
                (3, "waiting".into()),
                (4, "waiting".into())
            ]
        );
        // A push to a live one deploys it again; to a waiting one, nothing yet.
        apply(conn, &[open_change(2, 9, 2), open_change(4, 9, 2)], 0, 50).unwrap();
        assert_eq!(creations(conn).len(), 3);
        let applied = apply(conn, &[close_change(1, 2)], 0, 60).unwrap();
        assert!(
            applied
                .notes
                .iter()
                .any(|n| n == "pr-3 starts: a preview closed"),
            "{applied:?}"
        );
        assert_eq!(
            states(conn),
            [
                (1, "closing".into()),
                (2, "live".into()),
                (3, "live".into()),
                (4, "waiting".into())
            ]
        );
        let made = creations(conn);
        assert_eq!(
            made[3..],
            [
                ("destroy".into(), "pr-1".into()),
                ("deploy".into(), "pr-3".into())
            ]
        );
        // Closing one still waiting: closed at once, nothing to destroy.
        apply(conn, &[close_change(4, 2)], 0, 70).unwrap();
        assert_eq!(creations(conn).len(), 5);
        // The destroy succeeded: closed, its deployments marked inactive.
        assert!(destroyed(conn, &destroy_job(1, 77), DeploymentState::Success, 80).unwrap());
        assert_eq!(states(conn)[0], (1, "closed".into()));
        // A second end of it changes nothing.
        assert!(!destroyed(conn, &destroy_job(1, 77), DeploymentState::Success, 90).unwrap());
    });
}

#[test]
fn a_failed_destroy_leaves_the_preview_closing_and_says_so() {
    each_engine(|conn| {
        apply(conn, &[open_change(5, 1, 2)], 0, 10).unwrap();
        apply(conn, &[close_change(5, 2)], 0, 20).unwrap();
        assert!(!destroyed(conn, &destroy_job(5, 70), DeploymentState::Failure, 30).unwrap());
        let row = list(conn, 10).unwrap().pop().unwrap();
        assert_eq!(row.state, "closing");
        assert_eq!(
            row.note.as_deref(),
            Some("destroy 70 ended failure: see its log")
        );
    });
}

#[test]
fn the_periodic_check_reads_open_previews_longest_unread_first_and_closed_ones_are_pruned() {
    each_engine(|conn| {
        apply(conn, &[open_change(1, 1, 5)], 0, 10).unwrap();
        apply(conn, &[open_change(2, 1, 5)], 0, 20).unwrap();
        let due = due_for_check(conn, 15, 10).unwrap();
        assert_eq!(due.iter().map(|p| p.pull_request).collect::<Vec<_>>(), [1]);
        checked(conn, &due[0], 30).unwrap();
        assert_eq!(oldest_check(conn).unwrap(), Some(20));
        apply(conn, &[close_change(2, 5)], 0, 40).unwrap();
        destroyed(conn, &destroy_job(2, 9), DeploymentState::Success, 50).unwrap();
        assert_eq!(oldest_check(conn).unwrap(), Some(30));
        crate::store::retention::prune_batch(conn, 0, 60).unwrap();
        assert_eq!(states(conn), [(1, "live".into())]);
    });
}

/// One step of a random life.
#[derive(Debug, Clone)]
enum Step {
    Open(u64),
    Push(u64),
    Close(u64),
    /// Every destroy queued so far ends well.
    DestroysEnd,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..6u64).prop_map(Step::Open),
        (1..6u64).prop_map(Step::Push),
        (1..6u64).prop_map(Step::Close),
        Just(Step::DestroysEnd),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the order of opens, pushes, closes and destroys: never more than the limit
    /// live, a pull request closed and not reopened is never live again, and each close
    /// of a live preview queues exactly one destroy.
    #[test]
    fn never_more_live_than_the_limit_and_every_closed_preview_destroyed_once(
        steps in proptest::collection::vec(step(), 1..40),
        limit in 1..4usize,
    ) {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        let conn = Connection::Sqlite(&conn);
        let mut open = std::collections::BTreeSet::new();
        let mut expected_destroys = 0;
        let mut next_id = 1_000;
        for (at, step) in steps.iter().enumerate() {
            let now = i64::try_from(at).unwrap() * 10 + 10;
            match step {
                Step::Open(n) | Step::Push(n) => {
                    // A push to a closed pull request cannot happen; an open can (reopen).
                    if matches!(step, Step::Push(_)) && !open.contains(n) {
                        continue;
                    }
                    apply(&conn, &[open_change(*n, now.unsigned_abs(), limit)], 0, now).unwrap();
                    open.insert(*n);
                }
                Step::Close(n) => {
                    let live_before = states(&conn).contains(&(*n, "live".to_owned()));
                    apply(&conn, &[close_change(*n, limit)], 0, now).unwrap();
                    expected_destroys += usize::from(live_before);
                    open.remove(n);
                }
                Step::DestroysEnd => {
                    for (n, state) in states(&conn) {
                        if state == "closing" {
                            next_id += 1;
                            destroyed(&conn, &destroy_job(n, next_id), DeploymentState::Success, now).unwrap();
                        }
                    }
                }
            }
            let rows = states(&conn);
            let live = rows.iter().filter(|(_, s)| s == "live").count();
            prop_assert!(live <= limit, "{live} live over {limit}: {rows:?}");
            for (n, state) in &rows {
                if !open.contains(n) {
                    prop_assert!(state != "live" && state != "waiting", "closed #{n} is {state}");
                }
            }
            // Room is never left unused while a preview waits.
            let waiting = rows.iter().any(|(_, s)| s == "waiting");
            prop_assert!(!waiting || live == limit, "{rows:?}");
        }
        let destroys = creations(&conn).iter().filter(|(task, _)| task == "destroy").count();
        prop_assert_eq!(destroys, expected_destroys);
    }
}
