//! Store tests of changelogs on both engines: a first deploy, the same commit again, a read
//! queued and recorded once with its cap, and rows going with their job at retention.

use super::*;
use crate::model::{DeploymentState, Policy};
use crate::store::jobs;
use crate::store::outbox::{self, take_due};
use crate::store::tests::{each_engine, job};

const OTHER: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d";

/// Claims what may start, one slot per environment.
fn claim(conn: &Connection, now: i64) -> Vec<jobs::Claimed> {
    jobs::claim(conn, "me", 8, |_| Policy::Queue, now).unwrap()
}

fn succeed(conn: &Connection, claimed: &jobs::Claimed, now: i64) {
    jobs::finish(conn, &claimed.job, DeploymentState::Success, "ok", now).unwrap();
}

/// The changelog reads queued, every other call sent meanwhile.
fn changelog_calls(conn: &Connection) -> Vec<outbox::Call> {
    let mut calls = Vec::new();
    loop {
        let taken = take_due(conn, i64::MAX / 4, 64).unwrap();
        if taken.is_empty() {
            return calls;
        }
        for item in taken {
            outbox::complete(conn, item.id).unwrap();
            if matches!(item.call, outbox::Call::Changelog { .. }) {
                calls.push(item.call);
            }
        }
    }
}

#[test]
fn a_first_deploy_says_so_and_the_next_one_queues_its_read_from_the_first() {
    each_engine(|conn| {
        jobs::enqueue(conn, &job(1, None), "d1", 0).unwrap();
        let first = claim(conn, 10);
        assert_eq!(first[0].previous_sha, None);
        assert_eq!(read(conn, 1).unwrap(), Some(Changelog::first_deploy()));
        succeed(conn, &first[0], 20);

        let mut second = job(2, None);
        second.sha = OTHER.parse().unwrap();
        jobs::enqueue(conn, &second, "d2", 30).unwrap();
        let started = claim(conn, 40);
        let base = job(1, None).sha.to_string();
        assert_eq!(started[0].previous_sha.as_deref(), Some(base.as_str()));
        assert_eq!(read(conn, 2).unwrap(), None, "not read yet");
        assert_eq!(
            previous_of(conn, 2).unwrap(),
            Some(Previous {
                deployment_id: 1,
                sha: base.clone()
            })
        );
        assert_eq!(
            changelog_calls(conn),
            [outbox::Call::Changelog {
                repository: "acme/widgets".into(),
                deployment_id: 2,
                base,
                head: OTHER.into(),
            }]
        );
    });
}

#[test]
fn the_same_commit_again_has_an_empty_changelog_at_once() {
    each_engine(|conn| {
        jobs::enqueue(conn, &job(1, None), "d1", 0).unwrap();
        let first = claim(conn, 10);
        succeed(conn, &first[0], 20);
        jobs::enqueue(conn, &job(2, None), "d2", 30).unwrap();
        claim(conn, 40);
        let log = read(conn, 2).unwrap().unwrap();
        assert_eq!((log.state, log.total), (ChangelogState::Listed, 0));
        assert!(
            log.summary().contains("nothing changed"),
            "{}",
            log.summary()
        );
        assert!(changelog_calls(conn).is_empty());
    });
}

#[test]
fn a_changelog_is_recorded_once_capped_and_goes_with_its_job() {
    each_engine(|conn| {
        let mut log = Changelog::empty(ChangelogState::TooMany, OTHER.into());
        log.total = 400;
        log.commits = (0..STORED_COMMITS + 5)
            .map(|n| Change::new(format!("{n:040}"), &format!("change {n} (#{n})"), None))
            .collect();
        record(conn, 7, &log, 1).unwrap();
        // Sent twice (an answer lost): the first recording stays.
        record(conn, 7, &Changelog::first_deploy(), 2).unwrap();
        let stored = read(conn, 7).unwrap().unwrap();
        assert_eq!(stored.state, ChangelogState::TooMany);
        assert_eq!(stored.commits.len(), STORED_COMMITS);
        assert_eq!(stored.commits[3].pull_request, Some(3));
        assert_eq!(delete(conn, 7).unwrap(), STORED_COMMITS + 1);
        assert_eq!(read(conn, 7).unwrap(), None);
    });
}

#[test]
fn retention_takes_a_changelog_with_its_job() {
    each_engine(|conn| {
        jobs::enqueue(conn, &job(1, None), "d1", 0).unwrap();
        let first = claim(conn, 10);
        succeed(conn, &first[0], 20);
        assert!(read(conn, 1).unwrap().is_some());
        crate::store::retention::prune_batch(conn, 0, 1_000).unwrap();
        assert_eq!(read(conn, 1).unwrap(), None);
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0);
    });
}
