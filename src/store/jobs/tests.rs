//! Tests of the deploy queue's reads.

use super::*;
use crate::store::jobs;
use crate::store::tests::{each_engine, job};

#[test]
fn the_last_success_is_the_newest_finished_deploy_that_succeeded() {
    each_engine(|conn| {
        let repo = "acme/widgets";
        assert_eq!(jobs::last_success(conn, repo, "production").unwrap(), None);
        for (id, sha, state, at) in [
            (
                1,
                "1111111111111111111111111111111111111111",
                DeploymentState::Success,
                10,
            ),
            (
                2,
                "2222222222222222222222222222222222222222",
                DeploymentState::Success,
                30,
            ),
            (
                3,
                "3333333333333333333333333333333333333333",
                DeploymentState::Failure,
                40,
            ),
            (
                4,
                "4444444444444444444444444444444444444444",
                DeploymentState::Success,
                20,
            ),
        ] {
            let mut job = job(id, None);
            job.sha = sha.parse().unwrap();
            jobs::enqueue(conn, &job, "d", at).unwrap();
            jobs::finish(conn, &job, state, "done", at).unwrap();
        }
        let last = jobs::last_success(conn, repo, "production").unwrap();
        assert_eq!(
            last.as_deref(),
            Some("2222222222222222222222222222222222222222")
        );
        assert_eq!(jobs::last_success(conn, repo, "staging").unwrap(), None);
    });
}

mod holds;
