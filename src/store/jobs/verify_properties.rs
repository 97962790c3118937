//! Property tests of a job's life with verification, over random interleavings of
//! deployments arriving, the worker claiming, commands ending (in environments with and
//! without `verify`), checks holding or failing, restarts (a new owner takes over), and a
//! replica that lost the lead trying to report with its old name.
//!
//! What a user relies on:
//! - a job reports exactly one final status, last, after `queued` (and `in_progress`);
//! - a verifying job is never lost across a restart: it is still `verifying` after it,
//!   owned by the new process, and is then judged once;
//! - a replica that lost the lead never reports a job another one took over;
//! - a verifying job holds its repository and environment: never two jobs running or
//!   verifying there at once.

use proptest::prelude::*;

use crate::model::DeploymentState;
use crate::store::db::Connection;
use crate::store::jobs::{self, verify};
use crate::store::tests::job;

const DEPLOYMENTS: u64 = 4;

#[derive(Debug, Clone)]
enum Step {
    Arrive(u64),
    Claim,
    /// The running job's command succeeds; `true`: its environment verifies it.
    CommandEnds(bool),
    /// The verifying job's check holds (`true`) or fails, as seen by the current owner.
    Check(bool),
    /// The previous owner (a replica that lost the lead) tries to report.
    Stale(bool),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (1..=DEPLOYMENTS).prop_map(Step::Arrive),
        2 => Just(Step::Claim),
        2 => any::<bool>().prop_map(Step::CommandEnds),
        2 => any::<bool>().prop_map(Step::Check),
        1 => any::<bool>().prop_map(Step::Stale),
        1 => Just(Step::Restart),
    ]
}

struct World {
    conn: rusqlite::Connection,
    generation: u32,
    now: i64,
}

impl World {
    fn new() -> Self {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        Self {
            conn,
            generation: 0,
            now: 1_000_000,
        }
    }

    fn owner(&self) -> String {
        format!("replica-{}", self.generation)
    }

    fn with<R>(&self, work: impl FnOnce(&Connection) -> R) -> R {
        work(&Connection::Sqlite(&self.conn))
    }

    /// The deployment in `state` (at most one: one repository and environment).
    fn in_state(&self, state: &str) -> Option<u64> {
        self.conn
            .query_row(
                "SELECT deployment_id FROM jobs WHERE state = ?1",
                [state],
                |row| row.get::<_, i64>(0),
            )
            .ok()
            .map(i64::unsigned_abs)
    }

    fn verifying(&self) -> Vec<(u64, String)> {
        let mut read = self
            .conn
            .prepare("SELECT deployment_id, owner FROM jobs WHERE state = 'verifying'")
            .unwrap();
        read.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?.unsigned_abs(), row.get(1)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn take(&mut self, step: &Step) -> Result<(), TestCaseError> {
        self.now += 1_000;
        let (now, owner) = (self.now, self.owner());
        match step {
            Step::Arrive(n) => {
                self.with(|c| jobs::enqueue(c, &job(*n, None), "d", now).unwrap());
            }
            Step::Claim => {
                let policy = |_: &str| crate::model::Policy::Queue;
                let claimed = self.with(|c| jobs::claim(c, &owner, 4, policy, now).unwrap());
                for claimed in &claimed {
                    self.with(|c| jobs::report_started(c, &claimed.job, "running", now).unwrap());
                }
            }
            Step::CommandEnds(verified) => {
                if let Some(n) = self.in_state("running") {
                    let job = job(n, None);
                    let done = self.with(|c| {
                        if *verified {
                            verify::begin(c, &job, &owner, "verifying: x", now).unwrap()
                        } else {
                            let success = DeploymentState::Success;
                            jobs::finish_run(c, &job, &owner, success, "ok", now).unwrap()
                        }
                    });
                    prop_assert!(done, "the owner could not end its own job {n}");
                }
            }
            Step::Check(holds) => {
                if let Some(n) = self.in_state("verifying") {
                    let state = if *holds {
                        DeploymentState::Success
                    } else {
                        DeploymentState::Failure
                    };
                    let describe = |_: &Connection| Ok("checked".to_owned());
                    let done = self
                        .with(|c| verify::finish(c, &job(n, None), &owner, state, now, describe));
                    prop_assert!(done.unwrap(), "the owner could not judge {n}");
                }
            }
            Step::Stale(holds) => {
                let stale = format!("replica-{}", self.generation.wrapping_sub(1));
                let before = self.verifying();
                for n in 1..=DEPLOYMENTS {
                    let job = job(n, None);
                    let state = if *holds {
                        DeploymentState::Success
                    } else {
                        DeploymentState::Failure
                    };
                    let describe = |_: &Connection| Ok("stale".to_owned());
                    let ended = self
                        .with(|c| verify::finish(c, &job, &stale, state, now, describe))
                        .unwrap();
                    let begun = self
                        .with(|c| verify::begin(c, &job, &stale, "verifying: stale", now))
                        .unwrap();
                    prop_assert!(!ended && !begun, "a stale owner changed job {n}");
                }
                prop_assert_eq!(before, self.verifying());
            }
            Step::Restart => {
                let before: Vec<u64> = self.verifying().into_iter().map(|(n, _)| n).collect();
                self.generation += 1;
                let owner = self.owner();
                let on_interrupt = |_: &str| crate::model::OnInterrupt::Error;
                self.with(|c| jobs::recover_interrupted(c, on_interrupt, now).unwrap());
                let taken = self.with(|c| verify::take_over(c, &owner).unwrap());
                let taken: Vec<u64> = taken.iter().map(|v| v.claimed.job.id.get()).collect();
                prop_assert_eq!(&taken, &before, "verifying jobs lost in a restart");
                let after = self.verifying();
                prop_assert_eq!(after.len(), before.len());
                prop_assert!(after.iter().all(|(_, o)| *o == owner));
            }
        }
        self.check()
    }

    /// One repository and environment: never two jobs holding it; each deployment's story
    /// has at most one final status, last.
    fn check(&self) -> Result<(), TestCaseError> {
        let holding: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE state IN ('running', 'verifying')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        prop_assert!(holding <= 1, "{holding} jobs hold the environment");
        for n in 1..=DEPLOYMENTS {
            let told = statuses(&self.conn, n);
            let finals = told.iter().filter(|s| is_final(s.as_str())).count();
            prop_assert!(finals <= 1, "{n}: {told:?}");
            if finals == 1 {
                prop_assert!(is_final(told.last().unwrap().as_str()), "{n}: {told:?}");
            }
            if let Some(first) = told.first() {
                prop_assert_eq!(first.as_str(), "queued", "{}: {:?}", n, told);
            }
        }
        Ok(())
    }

    /// Restarted, then run to the end: every deployment that arrived reports once.
    fn check_ends(&mut self) -> Result<(), TestCaseError> {
        self.take(&Step::Restart)?;
        for _ in 0..=DEPLOYMENTS {
            self.take(&Step::Claim)?;
            self.take(&Step::CommandEnds(true))?;
            self.take(&Step::Check(true))?;
        }
        for n in 1..=DEPLOYMENTS {
            let told = statuses(&self.conn, n);
            if !told.is_empty() {
                let finals = told.iter().filter(|s| is_final(s.as_str())).count();
                prop_assert_eq!(finals, 1, "{}: {:?}", n, told);
            }
        }
        Ok(())
    }
}

fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error" | "inactive")
}

fn statuses(conn: &rusqlite::Connection, n: u64) -> Vec<String> {
    conn.prepare(
        "SELECT body FROM outbox WHERE kind = 'deployment_status' AND deployment_id = ?1
         ORDER BY id",
    )
    .unwrap()
    .query_map([n as i64], |row| row.get::<_, String>(0))
    .unwrap()
    .map(|body| {
        let body: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
        body["state"].as_str().unwrap().to_owned()
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_job_reports_once_and_no_verifying_job_is_lost_across_restarts(
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let mut world = World::new();
        for step in &steps {
            world.take(step)?;
        }
        world.check_ends()?;
    }
}
