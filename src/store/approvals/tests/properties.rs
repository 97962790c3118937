//! Property tests of approvals over random interleavings of deployments arriving (and
//! arriving again), approvals and rejections by several people (the author among them),
//! the clock passing deadlines, the deploy worker claiming, a lock taken and lifted, and
//! restarts (the database closed and opened again, everything read from what is stored).
//!
//! What a user relies on:
//! - a deployment never runs without the approvals its environment asked for: that many
//!   distinct people, the author not among them unless the environment allows it;
//! - a rejected or expired deployment never runs;
//! - every deployment that waited ends approved and queued (then run, or retired by a
//!   newer one under `latest`), rejected or expired — never lost, never both;
//! - under `latest`, a deployment waiting (for approval or its turn) when a newer one
//!   starts never runs: the newer one retires it, however late it would be approved;
//! - under either policy, approving never puts older code back: a deployment approved after
//!   a newer one ran ends `inactive` instead of running;
//! - GitHub is told one story per deployment: `pending` first, at most one `queued` (when
//!   approved), and exactly one final status, last — whether or not the deploy was
//!   verified after its command (every other one is: `running`, `verifying`, then done).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::model::ApprovalRule;

const PEOPLE: [&str; 4] = ["octo-dev", "ann", "bob", "cy"];
/// Who made every deployment here: `PEOPLE[0]`, written otherwise to show logins compare
/// without case.
const AUTHOR: &str = "Octo-Dev";
const DEPLOYMENTS: u64 = 4;
const TIMEOUT_MS: i64 = 3_600_000;

/// One thing that happens.
#[derive(Debug, Clone)]
enum Step {
    /// Deployment `n`'s event arrives (again, if it did before).
    Arrive(u64),
    Approve(u64, usize),
    Reject(u64, usize),
    /// Time passes, then the clock ends what is past its deadline.
    Tick(i64),
    /// The deploy worker claims what may start, and each deploy it starts succeeds.
    Claim,
    /// The environment is locked (`true`) or unlocked.
    Lock(bool),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let deployment = 1..=DEPLOYMENTS;
    let person = 0..PEOPLE.len();
    prop_oneof![
        2 => deployment.clone().prop_map(Step::Arrive),
        4 => (deployment.clone(), person.clone()).prop_map(|(d, p)| Step::Approve(d, p)),
        1 => (deployment, person).prop_map(|(d, p)| Step::Reject(d, p)),
        2 => prop_oneof![Just(1_000_i64), Just(TIMEOUT_MS / 2), Just(TIMEOUT_MS)]
            .prop_map(Step::Tick),
        3 => Just(Step::Claim),
        1 => any::<bool>().prop_map(Step::Lock),
        1 => Just(Step::Restart),
    ]
}

/// Where a deployment is, as the user's model of approvals has it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Waiting {
        approvers: Vec<usize>,
        deadline: i64,
    },
    Queued,
    Ran,
    Rejected,
    Expired,
    /// Retired unrun by a newer deploy (`latest`), or because a newer one ran before it
    /// was approved (`queue`: never older code after newer).
    Superseded,
}

struct World {
    rule: ApprovalRule,
    policy: Policy,
    db: std::path::PathBuf,
    conn: Option<rusqlite::Connection>,
    fates: BTreeMap<u64, Fate>,
    now: i64,
}

/// Opens the database at `path`, migrated once and copied for each case.
fn open(path: &Path) -> rusqlite::Connection {
    static TEMPLATE: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    if !path.exists() {
        let (_, template) = TEMPLATE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let template = dir.path().join("template.db");
            let mut conn = rusqlite::Connection::open(&template).unwrap();
            crate::store::schema::migrate(&mut conn).unwrap();
            conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
            (dir, template)
        });
        std::fs::copy(template, path).unwrap();
    }
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn.pragma_update(None, "journal_mode", "MEMORY").unwrap();
    crate::store::schema::migrate(&mut conn).unwrap();
    conn
}

impl World {
    fn new(dir: &Path, required: u32, self_approval: bool, policy: Policy) -> Self {
        let db = dir.join("deployhook.db");
        Self {
            rule: ApprovalRule {
                required,
                self_approval,
                timeout: Duration::from_millis(TIMEOUT_MS.unsigned_abs()),
                ..ApprovalRule::new(required)
            },
            policy,
            conn: Some(open(&db)),
            db,
            fates: BTreeMap::new(),
            now: 1_000_000,
        }
    }

    fn with_conn<R>(&self, work: impl FnOnce(&Connection) -> R) -> R {
        work(&Connection::Sqlite(self.conn.as_ref().unwrap()))
    }

    fn deployment(n: u64) -> DeployJob {
        DeployJob {
            deploy_user: AUTHOR.into(),
            ..job(n, None)
        }
    }

    fn take(&mut self, step: &Step) -> Result<(), TestCaseError> {
        self.now += 1;
        let now = self.now;
        match step {
            Step::Arrive(n) => {
                let (job, rule) = (Self::deployment(*n), self.rule.clone());
                let new =
                    self.with_conn(|c| request(c, &job, "d", &rule.clone().into(), now).unwrap());
                prop_assert_eq!(new, !self.fates.contains_key(n));
                self.fates.entry(*n).or_insert(Fate::Waiting {
                    approvers: vec![],
                    deadline: now + TIMEOUT_MS,
                });
            }
            Step::Approve(n, p) => self.approve(*n, *p)?,
            Step::Reject(n, p) => {
                let said = self.with_conn(|c| reject(c, id(*n), PEOPLE[*p], "no", now).unwrap());
                match self.fates.get(n).cloned() {
                    Some(Fate::Waiting { deadline, .. }) if now < deadline => {
                        prop_assert!(said.is_ok(), "{said:?}");
                        self.fates.insert(*n, Fate::Rejected);
                    }
                    Some(Fate::Waiting { .. }) => {
                        prop_assert!(said.is_err());
                        self.fates.insert(*n, Fate::Expired);
                    }
                    None => prop_assert_eq!(said, Err(ApprovalRefusal::Unknown(id(*n)))),
                    Some(_) => prop_assert!(
                        matches!(said, Err(ApprovalRefusal::NotWaiting { .. })),
                        "{said:?}"
                    ),
                }
            }
            Step::Tick(ms) => {
                self.now += ms;
                let now = self.now;
                let ended = self.with_conn(|c| expire(c, now, 2).unwrap());
                let due: Vec<u64> = self
                    .fates
                    .iter()
                    .filter(
                        |(_, f)| matches!(f, Fate::Waiting { deadline, .. } if *deadline <= now),
                    )
                    .map(|(n, _)| *n)
                    .collect();
                prop_assert_eq!(ended, due.len().min(2));
                // The clock takes them a batch at a time; the rest at its next pass.
                let rest = self.with_conn(|c| expire(c, now, 10).unwrap());
                prop_assert_eq!(ended + rest, due.len());
                for n in due {
                    self.fates.insert(n, Fate::Expired);
                }
            }
            Step::Claim => self.claim()?,
            Step::Lock(true) => self.with_conn(|c| {
                locks::lock(
                    c,
                    &locks::Lock {
                        environment: "production".into(),
                        reason: "incident".into(),
                        locked_by: "maria".into(),
                        locked_at: now,
                        until: None,
                    },
                )
                .unwrap();
            }),
            Step::Lock(false) => {
                self.with_conn(|c| locks::unlock(c, "production", now).unwrap());
            }
            Step::Restart => {
                drop(self.conn.take());
                self.conn = Some(open(&self.db));
            }
        }
        self.check_story()
    }

    fn approve(&mut self, n: u64, p: usize) -> Result<(), TestCaseError> {
        let now = self.now;
        let said = self.with_conn(|c| approve(c, id(n), PEOPLE[p], now).unwrap());
        let Some(Fate::Waiting {
            mut approvers,
            deadline,
        }) = self.fates.get(&n).cloned()
        else {
            if self.fates.contains_key(&n) {
                prop_assert!(
                    matches!(said, Err(ApprovalRefusal::NotWaiting { .. })),
                    "{said:?}"
                );
            } else {
                prop_assert_eq!(said, Err(ApprovalRefusal::Unknown(id(n))));
            }
            return Ok(());
        };
        if now >= deadline {
            prop_assert!(
                matches!(said, Err(ApprovalRefusal::NotWaiting { .. })),
                "{said:?}"
            );
            self.fates.insert(n, Fate::Expired);
        } else if p == 0 && !self.rule.self_approval {
            prop_assert!(
                matches!(said, Err(ApprovalRefusal::OwnChange { .. })),
                "{said:?}"
            );
        } else if approvers.contains(&p) {
            prop_assert!(
                matches!(said, Err(ApprovalRefusal::AlreadyApproved { .. })),
                "{said:?}"
            );
        } else if self.fates.iter().any(|(m, f)| *m > n && *f == Fate::Ran) {
            // A newer one ran meanwhile: approving this would put older code back.
            prop_assert!(
                matches!(said, Err(ApprovalRefusal::Superseded { .. })),
                "{said:?}"
            );
            self.fates.insert(n, Fate::Superseded);
        } else {
            approvers.push(p);
            let complete = approvers.len() >= self.rule.required as usize;
            let approved = said.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(approved.queued, complete);
            prop_assert_eq!(approved.approvers.len(), approvers.len());
            let fate = if complete {
                Fate::Queued
            } else {
                Fate::Waiting {
                    approvers,
                    deadline,
                }
            };
            self.fates.insert(n, fate);
        }
        Ok(())
    }

    /// Claims; every deploy started must have been approved as asked, and succeeds. Those
    /// a newer deploy retired are noted.
    fn claim(&mut self) -> Result<(), TestCaseError> {
        let (now, policy) = (self.now, self.policy);
        let started = self.with_conn(|c| jobs::claim(c, "test", 4, |_| policy, now).unwrap());
        for claimed in &started {
            let n = claimed.job.id.get();
            prop_assert_eq!(
                self.fates.get(&n),
                Some(&Fate::Queued),
                "deployment {} started unapproved",
                n
            );
            let approvers: Vec<String> = self.with_conn(|c| {
                reviews(c, id(n))
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.approved)
                    .map(|r| r.login)
                    .collect()
            });
            let distinct_others = approvers
                .iter()
                .filter(|a| self.rule.self_approval || !a.eq_ignore_ascii_case(AUTHOR))
                .count();
            prop_assert!(
                distinct_others >= self.rule.required as usize,
                "deployment {n} ran with approvals {approvers:?}"
            );
            self.fates.insert(n, Fate::Ran);
            // Every other deployment is verified after its command: `running`, then
            // `verifying`, then its one final status.
            self.with_conn(|c| {
                if n % 2 == 0 {
                    let job = &claimed.job;
                    assert!(jobs::verify::begin(c, job, "test", "verifying: x", now).unwrap());
                    let ok = |_: &Connection| Ok("ok".to_owned());
                    let success = DeploymentState::Success;
                    assert!(jobs::verify::finish(c, job, "test", success, now, ok).unwrap());
                } else {
                    jobs::finish(c, &claimed.job, DeploymentState::Success, "ok", now).unwrap();
                }
            });
        }
        let retired: Vec<u64> = self
            .fates
            .keys()
            .copied()
            .filter(|n| self.with_conn(|c| result(c, *n)).as_deref() == Some("inactive"))
            .collect();
        for n in retired {
            let fate = &self.fates[&n];
            prop_assert!(
                matches!(fate, Fate::Waiting { .. } | Fate::Queued | Fate::Superseded),
                "deployment {n} retired from {fate:?}"
            );
            self.fates.insert(n, Fate::Superseded);
        }
        if self.policy == Policy::Latest {
            let newest = started.iter().map(|c| c.job.id.get()).max().unwrap_or(0);
            for (n, fate) in self.fates.range(..newest) {
                prop_assert!(
                    !matches!(fate, Fate::Waiting { .. } | Fate::Queued),
                    "deployment {n} still {fate:?} after {newest} started, under latest"
                );
            }
        }
        Ok(())
    }

    /// What GitHub was told of each deployment is one coherent story, matching its fate.
    fn check_story(&self) -> Result<(), TestCaseError> {
        for (n, fate) in &self.fates {
            let told: Vec<String> = self
                .with_conn(|c| statuses(c, *n as i64))
                .into_iter()
                .map(|(state, _, _)| state)
                .collect();
            let finals = told
                .iter()
                .filter(|s| matches!(s.as_str(), "success" | "failure" | "error" | "inactive"))
                .count();
            let queued = told.iter().filter(|s| *s == "queued").count();
            prop_assert_eq!(
                told.first().map(String::as_str),
                Some("pending"),
                "{}: {:?}",
                n,
                told
            );
            prop_assert!(queued <= 1, "{n}: {told:?}");
            let ended = !matches!(fate, Fate::Waiting { .. } | Fate::Queued);
            prop_assert_eq!(finals, usize::from(ended), "{}: {:?} {:?}", n, fate, told);
            if ended {
                let last = told.last().map(String::as_str);
                let expected = match fate {
                    Fate::Ran => "success",
                    Fate::Rejected | Fate::Expired => "failure",
                    _ => "inactive",
                };
                prop_assert_eq!(last, Some(expected), "{}: {:?}", n, told);
            }
            let approved = matches!(fate, Fate::Queued | Fate::Ran);
            prop_assert!(!approved || queued == 1, "{n}: {fate:?} {told:?}");
            prop_assert!(
                !matches!(fate, Fate::Rejected | Fate::Expired) || queued == 0,
                "{n}: {fate:?} {told:?}"
            );
        }
        Ok(())
    }

    /// The lock lifted, every deadline passed, the queue drained: each deployment that
    /// arrived has ended, as its fate says.
    fn check_ends(&mut self) -> Result<(), TestCaseError> {
        self.take(&Step::Lock(false))?;
        self.take(&Step::Restart)?;
        for _ in 0..=DEPLOYMENTS {
            self.take(&Step::Claim)?;
        }
        self.take(&Step::Tick(TIMEOUT_MS))?;
        for (n, fate) in &self.fates {
            let result = self.with_conn(|c| result(c, *n));
            let expected = match fate {
                Fate::Ran => "success",
                Fate::Rejected | Fate::Expired => "failure",
                Fate::Superseded => "inactive",
                Fate::Waiting { .. } | Fate::Queued => {
                    return Err(TestCaseError::fail(format!(
                        "deployment {n} was lost: {fate:?}"
                    )));
                }
            };
            prop_assert_eq!(result.as_deref(), Some(expected), "{}: {:?}", n, fate);
        }
        Ok(())
    }
}

fn result(conn: &Connection, n: u64) -> Option<String> {
    conn.query_row(
        "SELECT result FROM jobs WHERE deployment_id = ?1",
        [n as i64],
        |row| row.get(0),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_deployment_runs_unapproved_and_none_is_lost(
        required in 1_u32..=2,
        self_approval in any::<bool>(),
        latest in any::<bool>(),
        steps in prop::collection::vec(step(), 1..50),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let policy = if latest { Policy::Latest } else { Policy::Queue };
        let mut world = World::new(dir.path(), required, self_approval, policy);
        for step in &steps {
            world.take(step)?;
        }
        world.check_ends()?;
    }
}
