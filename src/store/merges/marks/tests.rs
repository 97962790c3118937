//! The merge marks on both engines: they only move forward, they refuse an older merge or
//! promotion at its delivery and an older deploy at the queue, never a deliberate deploy;
//! retention keeps them and the newest merge's record. The order's state machine under
//! random deliveries is `order_properties`.

use serde_json::json;

use super::*;
use crate::model::{DeploymentRequest, Environment, RepoName};
use crate::store::retention::prune_batch;
use crate::store::tests::{each_engine, job};

const TARGET: (&str, &str, &str) = ("acme/widgets", "production", ACCEPTED);

fn merge(pull_request: u64, merged_at: &str) -> Merge {
    Merge {
        merged_at: MergedAt::parse(merged_at).unwrap(),
        pull_request,
    }
}

/// The deployment a merge (or, with `extra`, a promotion or rollback) asks for.
pub(super) fn new_deployment(pull_request: u64, payload: serde_json::Value) -> NewDeployment {
    NewDeployment {
        repo: RepoName::parse("acme/widgets").unwrap(),
        pull_request,
        installation: None,
        request: DeploymentRequest {
            git_ref: format!("ab{pull_request:038}").parse().unwrap(),
            task: "deploy".into(),
            auto_merge: false,
            required_contexts: vec![],
            environment: Environment::parse("production").unwrap(),
            payload,
            description: "d".into(),
            production_environment: None,
            transient_environment: None,
        },
        gate: None,
    }
}

#[test]
fn a_mark_only_moves_forward_and_names_the_newest_merge() {
    each_engine(|conn| {
        assert_eq!(
            mark(conn, "acme/widgets", "production", ACCEPTED).unwrap(),
            None
        );
        raise(conn, TARGET, merge(42, "2026-03-03T14:05:40Z"), "b", 1).unwrap();
        raise(conn, TARGET, merge(41, "2026-03-03T14:02:11Z"), "a", 2).unwrap();
        let now = mark(conn, "acme/widgets", "production", ACCEPTED).unwrap();
        assert_eq!(
            now,
            Some(Mark {
                merge: merge(42, "2026-03-03T14:05:40Z"),
                sha: "b".into()
            })
        );
        // A merge of the same second takes the name: the one accepted last.
        raise(conn, TARGET, merge(43, "2026-03-03T14:05:40Z"), "c", 3).unwrap();
        let now = mark(conn, "acme/widgets", "production", ACCEPTED).unwrap();
        assert_eq!(now.unwrap().merge.pull_request, 43);
        // Other environments and stages have marks of their own.
        assert_eq!(
            mark(conn, "acme/widgets", "staging", ACCEPTED).unwrap(),
            None
        );
        assert_eq!(
            mark(conn, "acme/widgets", "production", STARTED).unwrap(),
            None
        );
    });
}

#[test]
fn an_older_merge_or_promotion_is_refused_and_a_deliberate_deploy_never() {
    each_engine(|conn| {
        let newer = new_deployment(
            42,
            json!({"pull_request": 42, "merged_at": "2026-03-03T14:05:40Z"}),
        );
        assert_eq!(refuses(conn, &newer).unwrap(), None, "no mark yet");
        accept(conn, &newer, 1).unwrap();
        let queued: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE kind = 'create_deployment'
                 AND ordering_key = 'merges:acme/widgets@production'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(queued, 1, "accepting queues the creation, in merge order");

        let older = new_deployment(
            41,
            json!({"pull_request": 41, "merged_at": "2026-03-03T14:02:11Z"}),
        );
        assert_eq!(
            refuses(conn, &older).unwrap().as_deref(),
            Some(
                "merge of #41 (merged 14:02) is older than #42 (merged 14:05), which \
                 production already runs or has queued; not deployed"
            )
        );
        let promoted = new_deployment(
            41,
            json!({"merged_at": "2026-03-03T14:02:11Z",
                   "promoted_from": {"environment": "staging", "deployment": 7}}),
        );
        assert!(refuses(conn, &promoted).unwrap().is_some());
        // The newest merge itself, one of the same time, and a deliberate deploy pass.
        for passes in [
            newer.clone(),
            new_deployment(
                43,
                json!({"pull_request": 43, "merged_at": "2026-03-03T14:05:40Z"}),
            ),
            new_deployment(
                0,
                json!({"rollback": true, "merged_at": "2026-03-03T14:02:11Z"}),
            ),
            new_deployment(0, json!({"deploy_user": "maria"})),
        ] {
            assert_eq!(refuses(conn, &passes).unwrap(), None, "{passes:?}");
        }
        // A rollback accepted leaves the mark where it was.
        accept(
            conn,
            &new_deployment(0, json!({"rollback": true, "force": true})),
            2,
        )
        .unwrap();
        let mark = mark(conn, "acme/widgets", "production", ACCEPTED)
            .unwrap()
            .unwrap();
        assert_eq!(mark.merge.pull_request, 42);
    });
}

#[test]
fn a_job_older_than_what_started_is_refused_and_starting_raises_both_marks() {
    each_engine(|conn| {
        let with_payload = |id: u64, payload: serde_json::Value| {
            let mut job = job(id, None);
            job.payload = payload.to_string();
            job
        };
        let newer = with_payload(
            2,
            json!({"pull_request": 42, "merged_at": "2026-03-03T14:05:40Z"}),
        );
        let older = with_payload(
            1,
            json!({"pull_request": 41, "merged_at": "2026-03-03T14:02:11Z"}),
        );
        assert_eq!(
            refuses_start(conn, &older).unwrap(),
            None,
            "nothing started yet"
        );
        started(conn, &newer, 1).unwrap();
        for stage in [STARTED, ACCEPTED] {
            let mark = mark(conn, "acme/widgets", "production", stage).unwrap();
            assert_eq!(mark.unwrap().merge.pull_request, 42, "{stage}");
        }
        assert_eq!(
            refuses_start(conn, &older).unwrap().as_deref(),
            Some(
                "merge of #41 (merged 14:02) is older than #42 (merged 14:05), which \
                 production already runs; not deployed"
            )
        );
        let forced = with_payload(
            3,
            json!({"pull_request": 41, "merged_at": "2026-03-03T14:02:11Z", "force": true}),
        );
        assert_eq!(refuses_start(conn, &forced).unwrap(), None);
        assert_eq!(
            refuses_start(conn, &job(4, None)).unwrap(),
            None,
            "made by hand"
        );
        // Run again (a retry after a restart), the newest merge is not older than itself.
        assert_eq!(refuses_start(conn, &newer).unwrap(), None);
    });
}

#[test]
fn retention_keeps_the_marks_and_the_newest_merges_record() {
    each_engine(|conn| {
        for (number, at) in [(41, "2026-03-03T14:02:11Z"), (42, "2026-03-03T14:05:40Z")] {
            let new = new_deployment(number, json!({"pull_request": number, "merged_at": at}));
            assert!(crate::store::merges::record_merge(conn, &new, "d", 100).unwrap());
            accept(conn, &new, 100).unwrap();
        }
        while prune_batch(conn, 1_000, 1_000).unwrap() > 0 {}
        let kept: Vec<i64> = conn
            .prepare("SELECT pull_request FROM merges")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [42]);
        let mark = mark(conn, "acme/widgets", "production", ACCEPTED).unwrap();
        assert_eq!(mark.unwrap().merge.pull_request, 42);
    });
}
