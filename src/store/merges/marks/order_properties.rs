//! Property tests of the order of automatic deploys: random merges (random times, some of
//! the same second) and random fates of their deliveries — late, duplicated, delivered
//! again with new ids, their `deployment` events out of order or again after the deploy
//! was forgotten, GitHub failing a creation for a while, retention pruning everything it
//! may, restarts with a deploy running — under each policy, gated or not. A simulated
//! GitHub numbers the deployments it creates; the store is a real SQLite file, reopened at
//! each restart.
//!
//! The invariants a team relies on: the commits automatic deploys start are never older
//! than one started before them, and once everything is delivered, the newest merge
//! delivered is the one deployed last.

use proptest::prelude::*;
use serde_json::json;

use crate::model::{
    CheckKind, CheckReport, CheckResult, CheckSource, CheckState, DeployJob, DeploymentState,
    Effect, Gate, Merge, MergedAt, NewDeployment, OnInterrupt, Outcome, Policy, Required,
};
use crate::store::db::Connection;
use crate::store::deliveries::{DeliveryRecord, record};
use crate::store::outbox::{self, Call};
use crate::store::{jobs, retention, schema};

/// When the first merge of a case was made; the others within a few minutes of it.
const FIRST_MERGE_MS: i64 = 1_772_546_531_000;

/// What may happen next.
#[derive(Debug, Clone)]
enum Step {
    /// Merge `.0`'s `pull_request` delivery: a new delivery id, or its first one again.
    DeliverMerge(usize, bool),
    /// Its commit's required check passes (gated environments).
    ChecksPass(usize),
    /// The outbox sends its next call; a creation GitHub fails with a 503 is retried later.
    SendNext { fail: bool },
    /// One of the deployments GitHub created gets its `deployment` event delivered (again).
    DeliverDeployment(usize),
    /// The deploy worker claims what may start.
    Claim,
    /// The deploys running finish.
    Finish,
    /// Retention prunes everything it may.
    Prune,
    /// deployhook restarts; a deploy that was running is reported or run again.
    Restart { retry: bool },
}

fn step(merges: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..merges, any::<bool>()).prop_map(|(i, fresh)| Step::DeliverMerge(i, fresh)),
        2 => (0..merges).prop_map(Step::ChecksPass),
        4 => prop::bool::weighted(0.25).prop_map(|fail| Step::SendNext { fail }),
        3 => (0..16_usize).prop_map(Step::DeliverDeployment),
        2 => Just(Step::Claim),
        2 => Just(Step::Finish),
        1 => Just(Step::Prune),
        1 => any::<bool>().prop_map(|retry| Step::Restart { retry }),
    ]
}

/// One case: the merges (minutes after the first: equal ones merged in the same second),
/// the policy, whether the environment is gated, and what happens.
fn case() -> impl Strategy<Value = (Vec<i64>, Policy, bool, Vec<Step>)> {
    (1..=5_usize).prop_flat_map(|merges| {
        (
            prop::collection::vec(0..4_i64, merges),
            prop_oneof![Just(Policy::Latest), Just(Policy::Queue)],
            any::<bool>(),
            prop::collection::vec(step(merges), 1..40),
        )
    })
}

/// The simulation: the store on a file, and what GitHub knows.
struct World {
    dir: tempfile::TempDir,
    conn: rusqlite::Connection,
    policy: Policy,
    gated: bool,
    /// The merge times, by pull request number − 1.
    merged_at: Vec<MergedAt>,
    now: i64,
    deliveries: u64,
    /// The first delivery id of each merge delivered.
    first_delivery: Vec<Option<String>>,
    /// The deployments GitHub created, in its order, as their events describe them.
    created: Vec<DeployJob>,
    /// Whose events were delivered at least once.
    delivered_events: Vec<bool>,
    running: Vec<DeployJob>,
    /// The merge of each automatic deploy started, in order.
    started: Vec<MergedAt>,
}

impl World {
    fn new(minutes: &[i64], policy: Policy, gated: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir);
        let merged_at = minutes
            .iter()
            .map(|m| MergedAt::from_millis(FIRST_MERGE_MS + m * 60_000))
            .collect();
        Self {
            dir,
            conn,
            policy,
            gated,
            merged_at,
            now: FIRST_MERGE_MS + 3_600_000,
            deliveries: 0,
            first_delivery: vec![None; minutes.len()],
            created: vec![],
            delivered_events: vec![],
            running: vec![],
            started: vec![],
        }
    }

    /// Runs `work` in a transaction, as the store's writer does.
    fn write<R>(&mut self, work: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> R {
        let tx = self.conn.transaction().unwrap();
        let result = work(&Connection::Sqlite(&tx)).unwrap();
        tx.commit().unwrap();
        result
    }

    fn delivery(&mut self, event: &str) -> DeliveryRecord {
        self.deliveries += 1;
        DeliveryRecord {
            hook_id: 1,
            delivery_id: format!("d{}", self.deliveries),
            event: event.into(),
            action: None,
            repository: Some("acme/widgets".into()),
            received_at: self.now,
            outcome: Outcome::Accepted,
            message: String::new(),
            headers: None,
        }
    }

    fn run(&mut self, step: &Step) {
        self.now += 1_000;
        match *step {
            Step::DeliverMerge(i, fresh) => self.deliver_merge(i, fresh),
            Step::ChecksPass(i) => self.checks_pass(i),
            Step::SendNext { fail } => {
                self.send_next(fail);
            }
            Step::DeliverDeployment(k) => {
                if !self.created.is_empty() {
                    self.deliver_deployment(k % self.created.len());
                }
            }
            Step::Claim => {
                self.claim();
            }
            Step::Finish => self.finish(),
            Step::Prune => {
                let cutoff = self.now + 1;
                self.write(|c| {
                    while retention::prune_batch(c, cutoff, cutoff)? > 0 {}
                    Ok(())
                });
            }
            Step::Restart { retry } => self.restart(retry),
        }
    }

    fn deliver_merge(&mut self, i: usize, fresh: bool) {
        let mut delivery = self.delivery("pull_request");
        match &self.first_delivery[i] {
            Some(first) if !fresh => delivery.delivery_id.clone_from(first),
            Some(_) => {}
            None => self.first_delivery[i] = Some(delivery.delivery_id.clone()),
        }
        let new = self.merge(i);
        let effect = Effect::CreateDeployment(vec![new]);
        self.write(|c| record(c, &delivery, &effect, 60_000));
    }

    /// The deployment merge `i` asks for, as `start_deployment` decides it.
    fn merge(&self, i: usize) -> NewDeployment {
        let number = u64::try_from(i + 1).unwrap();
        let merged_at = self.merged_at[i];
        let payload = json!({"environment": "production", "deploy_user": "octo-dev",
                             "pull_request": number, "merged_at": merged_at.to_string()});
        let mut new = super::tests::new_deployment(number, payload);
        new.gate = self.gated.then(|| Gate {
            required: Required::Named(vec!["test".into()]),
            timeout: std::time::Duration::from_secs(24 * 3600),
            policy: self.policy,
            merged_at: Some(merged_at),
        });
        new
    }

    fn checks_pass(&mut self, i: usize) {
        let new = self.merge(i);
        let delivery = self.delivery("check_run");
        let effect = Effect::Checks(CheckReport {
            repo: new.repo.clone(),
            sha: new.request.git_ref.clone(),
            result: Some(CheckResult {
                kind: CheckKind::Run,
                name: "test".into(),
                state: CheckState::Passed,
                detail: "success".into(),
                url: None,
                source: CheckSource::default(),
                github_id: 1,
            }),
            installation: None,
        });
        self.write(|c| record(c, &delivery, &effect, 60_000));
    }

    /// Sends the outbox's next due call, as GitHub would answer it; whether there was one.
    fn send_next(&mut self, fail: bool) -> bool {
        let now = self.now;
        let Some(item) = self.write(|c| outbox::take_due(c, now, 1)).pop() else {
            return false;
        };
        match item.call {
            Call::CreateDeployment { .. } if fail => {
                self.write(|c| outbox::retry_at(c, item.id, now + 1_500, "503"));
            }
            Call::CreateDeployment { request, .. } => {
                let id = 880_001 + u64::try_from(self.created.len()).unwrap();
                let mut job = crate::store::tests::job(id, None);
                job.sha = request.git_ref.clone();
                job.git_ref = request.git_ref.to_string();
                job.payload = request.payload.to_string();
                self.created.push(job);
                self.delivered_events.push(false);
                self.write(|c| outbox::complete(c, item.id));
            }
            _ => self.write(|c| outbox::complete(c, item.id)),
        }
        true
    }

    fn deliver_deployment(&mut self, k: usize) {
        self.delivered_events[k] = true;
        let job = self.created[k].clone();
        let delivery = self.delivery("deployment");
        self.write(|c| record(c, &delivery, &Effect::Deploy(job), 60_000));
    }

    /// Claims what may start; whether anything did.
    fn claim(&mut self) -> bool {
        let (now, policy) = (self.now, self.policy);
        let claimed = self.write(|c| jobs::claim(c, "sim", 4, |_| policy, now));
        let any = !claimed.is_empty();
        for claimed in claimed {
            if let Some(merge) = Merge::of_automatic_text(&claimed.job.payload) {
                self.started.push(merge.merged_at);
            }
            self.running.push(claimed.job);
        }
        any
    }

    fn finish(&mut self) {
        let now = self.now;
        for job in std::mem::take(&mut self.running) {
            self.write(|c| jobs::finish_run(c, &job, "sim", DeploymentState::Success, "ok", now));
        }
    }

    fn restart(&mut self, retry: bool) {
        self.conn = open(&self.dir);
        self.running.clear();
        let now = self.now;
        let on_interrupt = if retry {
            OnInterrupt::Retry
        } else {
            OnInterrupt::Error
        };
        self.write(|c| {
            outbox::release_in_flight(c)?;
            jobs::recover_interrupted(c, |_| on_interrupt, now)
        });
    }

    /// Everything still to happen, happens: checks pass, GitHub answers, every deployment
    /// event not yet delivered is, and the queue runs dry.
    fn drain(&mut self) {
        for i in 0..self.merged_at.len() {
            if self.first_delivery[i].is_some() {
                self.checks_pass(i);
            }
        }
        for _ in 0..200 {
            let mut moved = !self.running.is_empty();
            self.finish();
            // Past any retry's time, so every pending call is due.
            self.now += 2_000;
            while self.send_next(false) {
                moved = true;
            }
            for k in 0..self.created.len() {
                if !self.delivered_events[k] {
                    self.deliver_deployment(k);
                    moved = true;
                }
            }
            moved |= self.claim();
            if !moved {
                return;
            }
        }
        panic!("the simulation never settled");
    }
}

/// The store's file, opened as at a start (migrated; fast writes: no crash is simulated).
/// A case's first start copies a database migrated once for all cases.
fn open(dir: &tempfile::TempDir) -> rusqlite::Connection {
    static MIGRATED: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let template = MIGRATED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open(dir.path().join("deployhook.db")).unwrap();
        schema::migrate(&mut conn).unwrap();
        dir
    });
    let path = dir.path().join("deployhook.db");
    if !path.exists() {
        std::fs::copy(template.path().join("deployhook.db"), &path).unwrap();
    }
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .unwrap();
    schema::migrate(&mut conn).unwrap();
    conn
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn automatic_deploys_never_go_back_and_the_newest_merge_deploys_last(
        (minutes, policy, gated, steps) in case()
    ) {
        let mut world = World::new(&minutes, policy, gated);
        for step in &steps {
            world.run(step);
            prop_assert!(
                world.started.is_sorted(),
                "an older merge started after a newer one: {:?}", world.started
            );
        }
        world.drain();
        prop_assert!(world.started.is_sorted(), "{:?}", world.started);
        let newest = (0..minutes.len())
            .filter(|&i| world.first_delivery[i].is_some())
            .map(|i| world.merged_at[i])
            .max();
        prop_assert_eq!(
            world.started.last().copied(),
            newest,
            "the newest merge delivered is not the one deployed last; started: {:?}",
            world.started
        );
    }
}
