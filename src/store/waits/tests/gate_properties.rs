//! Property tests of the gate over random interleavings of what GitHub tells: check runs of
//! one required name from several sources (two workflows of one app, another app) and a
//! commit status of that name, re-runs, events delivered late, out of order and twice,
//! listings read at one moment and answered later, and restarts (the database reopened,
//! everything recomputed from what is stored).
//!
//! The invariant a user relies on: the gate never passes while any source's latest run of
//! a required check is failing or pending, and it passes once every source's latest run is
//! green and GitHub has told it so.

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::store::db::{Connection, OptionalExtension};

/// Who reports a check on the commit: a check run's app, suite and name, or a status context.
#[derive(Debug, Clone, Copy)]
enum Reporter {
    Run {
        app: u64,
        suite: u64,
        name: &'static str,
    },
    Status {
        context: &'static str,
    },
}

/// Two workflows of GitHub Actions, another CI app, and a commit status all report `test`;
/// the other app also reports `docs`, which only `"all"` requires.
const REPORTERS: [Reporter; 5] = [
    Reporter::Run {
        app: 15368,
        suite: 10,
        name: "test",
    },
    Reporter::Run {
        app: 15368,
        suite: 11,
        name: "test",
    },
    Reporter::Run {
        app: 90210,
        suite: 20,
        name: "test",
    },
    Reporter::Status { context: "test" },
    Reporter::Run {
        app: 90210,
        suite: 20,
        name: "docs",
    },
];

impl Reporter {
    fn name(self) -> &'static str {
        match self {
            Self::Run { name, .. } => name,
            Self::Status { context } => context,
        }
    }

    fn result(self, id: u64, state: CheckState) -> CheckResult {
        let (kind, source) = match self {
            Self::Run { app, suite, .. } => (
                CheckKind::Run,
                CheckSource::of_app(Some(app), None, Some(suite)),
            ),
            Self::Status { .. } => (CheckKind::Status, CheckSource::default()),
        };
        CheckResult {
            kind,
            name: self.name().to_owned(),
            source,
            state,
            detail: state.as_str().to_owned(),
            url: None,
            github_id: id,
        }
    }
}

/// One thing that happens, at GitHub or at deployhook.
#[derive(Debug, Clone)]
enum Step {
    /// The merge's delivery: its wait starts (once; later ones change nothing).
    Merge,
    /// A reporter starts a run (its first, or a re-run) or sets a pending status.
    Start(usize),
    /// A reporter's latest run completes, or it sets a new final status.
    Finish(usize, bool),
    /// deployhook reads GitHub's listing now; the answer is recorded when delivered.
    Read,
    /// One message in flight (an event or a read's answer) arrives: any of them, so
    /// messages arrive late and out of order.
    Deliver(Index),
    /// One message that already arrived arrives again (a redelivery, a second hook).
    Redeliver(Index),
    /// deployhook restarts: the database is closed and opened again.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let reporter = 0..REPORTERS.len();
    prop_oneof![
        1 => Just(Step::Merge),
        3 => reporter.clone().prop_map(Step::Start),
        3 => (reporter, any::<bool>()).prop_map(|(r, pass)| Step::Finish(r, pass)),
        1 => Just(Step::Read),
        5 => any::<Index>().prop_map(Step::Deliver),
        1 => any::<Index>().prop_map(Step::Redeliver),
        1 => Just(Step::Restart),
    ]
}

/// What GitHub tells deployhook.
#[derive(Debug, Clone)]
enum Message {
    Event(usize, u64, CheckState),
    Listing(Vec<(usize, u64, CheckState)>),
}

/// The newest result of each reporter that GitHub told so far, by the same rule GitHub
/// keeps for a run: a larger id is newer, and a run that finished stays finished.
fn learn(
    told: &mut HashMap<usize, (u64, CheckState)>,
    reporter: usize,
    id: u64,
    state: CheckState,
) {
    match told.get(&reporter) {
        Some((known, _)) if *known > id => {}
        Some((known, known_state)) if *known == id && *known_state != CheckState::Pending => {}
        _ => {
            told.insert(reporter, (id, state));
        }
    }
}

/// GitHub, deployhook's database, and the messages between them.
struct World {
    all: bool,
    /// Each reporter's runs (statuses) at GitHub, oldest first: `(id, state)`.
    github: Vec<Vec<(u64, CheckState)>>,
    next_id: u64,
    in_flight: Vec<Message>,
    delivered: Vec<Message>,
    told: HashMap<usize, (u64, CheckState)>,
    db: std::path::PathBuf,
    conn: Option<rusqlite::Connection>,
    merged: bool,
    passed: bool,
    now: i64,
}

const SHA: &str = "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b";
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Opens the database at `path`, migrated once and copied for each case (migrating takes
/// longer than a case).
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
    // As on every start: a no-op at the current version.
    crate::store::schema::migrate(&mut conn).unwrap();
    conn
}

impl World {
    fn new(dir: &Path, all: bool) -> Self {
        let db = dir.join("deployhook.db");
        Self {
            all,
            github: vec![Vec::new(); REPORTERS.len()],
            next_id: 1000,
            in_flight: Vec::new(),
            delivered: Vec::new(),
            told: HashMap::new(),
            conn: Some(open(&db)),
            db,
            merged: false,
            passed: false,
            now: 1_000_000,
        }
    }

    fn with_conn<R>(&self, work: impl FnOnce(&Connection) -> R) -> R {
        work(&Connection::Sqlite(self.conn.as_ref().unwrap()))
    }

    fn gate(&self) -> Gate {
        Gate {
            required: if self.all {
                Required::All
            } else {
                Required::Named(vec!["test".to_owned()])
            },
            timeout: TIMEOUT,
            policy: Policy::Latest,
            merged_at: Some(crate::model::MergedAt::parse("2026-03-03T14:02:11Z").unwrap()),
        }
    }

    fn emit(&mut self, reporter: usize, id: u64, state: CheckState) {
        self.in_flight.push(Message::Event(reporter, id, state));
    }

    /// Takes `step`, then checks the gate's safety.
    fn take(&mut self, step: &Step, at: usize) -> Result<(), TestCaseError> {
        self.run(step);
        self.check_safety(at)
    }

    fn run(&mut self, step: &Step) {
        self.now += 1_000;
        match step {
            Step::Merge if !self.merged => {
                self.merged = true;
                let new = new_deployment(SHA, "production", 42);
                let gate = self.gate();
                let now = self.now;
                self.with_conn(|c| wait_for_checks(c, &new, &gate, 300_000, now).unwrap());
            }
            Step::Merge => {}
            Step::Start(reporter) => {
                let id = self.next_id;
                self.next_id += 1;
                self.github[*reporter].push((id, CheckState::Pending));
                self.emit(*reporter, id, CheckState::Pending);
            }
            Step::Finish(reporter, pass) => {
                let state = if *pass {
                    CheckState::Passed
                } else {
                    CheckState::Failed
                };
                match REPORTERS[*reporter] {
                    Reporter::Run { .. } => {
                        let Some(latest) = self.github[*reporter].last_mut() else {
                            return;
                        };
                        if latest.1 != CheckState::Pending {
                            return;
                        }
                        latest.1 = state;
                        let id = latest.0;
                        self.emit(*reporter, id, state);
                    }
                    // A status is never changed: a new one replaces it.
                    Reporter::Status { .. } => {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.github[*reporter].push((id, state));
                        self.emit(*reporter, id, state);
                    }
                }
            }
            Step::Read => {
                // GitHub lists the latest run of each name in each suite, and the latest
                // status of each context.
                let listing = (0..REPORTERS.len())
                    .filter_map(|r| self.github[r].last().map(|(id, state)| (r, *id, *state)))
                    .collect();
                self.in_flight.push(Message::Listing(listing));
            }
            Step::Deliver(pick) if !self.in_flight.is_empty() => {
                let message = self.in_flight.remove(pick.index(self.in_flight.len()));
                self.deliver(&message);
                self.delivered.push(message);
            }
            Step::Redeliver(pick) if !self.delivered.is_empty() => {
                let message = self.delivered[pick.index(self.delivered.len())].clone();
                self.deliver(&message);
            }
            Step::Deliver(_) | Step::Redeliver(_) => {}
            Step::Restart => {
                drop(self.conn.take());
                self.conn = Some(open(&self.db));
            }
        }
    }

    fn deliver(&mut self, message: &Message) {
        let now = self.now;
        match message {
            Message::Event(reporter, id, state) => {
                learn(&mut self.told, *reporter, *id, *state);
                let report = CheckReport {
                    repo: RepoName::parse("acme/widgets").unwrap(),
                    sha: CommitSha::parse(SHA).unwrap(),
                    result: Some(REPORTERS[*reporter].result(*id, *state)),
                    installation: None,
                };
                self.with_conn(|c| record_check(c, &report, now).unwrap());
            }
            Message::Listing(listing) => {
                let results: Vec<CheckResult> = listing
                    .iter()
                    .map(|(reporter, id, state)| {
                        learn(&mut self.told, *reporter, *id, *state);
                        REPORTERS[*reporter].result(*id, *state)
                    })
                    .collect();
                self.with_conn(|c| record_read(c, "acme/widgets", SHA, &results, now).unwrap());
            }
        }
    }

    fn wait_state(&self) -> Option<String> {
        self.with_conn(|c| {
            c.query_row("SELECT state FROM waits WHERE sha = ?1", [SHA], |row| {
                row.get(0)
            })
            .optional()
            .unwrap()
        })
    }

    fn creations(&self) -> i64 {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM outbox WHERE kind = 'create_deployment'",
                [],
                |row| row.get(0),
            )
            .unwrap()
        })
    }

    fn required(&self, reporter: usize) -> bool {
        self.all || REPORTERS[reporter].name() == "test"
    }

    /// Checked after every step, until the wait passes: at the moment it passes, every
    /// source's newest result of a required check that GitHub told is green, and — when
    /// every message has arrived, so that what was told is what GitHub has — every
    /// source's latest run at GitHub is green.
    fn check_safety(&mut self, step: usize) -> Result<(), TestCaseError> {
        if self.passed || self.wait_state().as_deref() != Some("passed") {
            return Ok(());
        }
        self.passed = true;
        for (reporter, (id, state)) in &self.told {
            prop_assert!(
                !self.required(*reporter) || *state == CheckState::Passed,
                "step {step}: passed while {:?}'s newest told result ({id}) is {state:?}",
                REPORTERS[*reporter]
            );
        }
        if self.in_flight.is_empty() {
            for (reporter, runs) in self.github.iter().enumerate() {
                if let Some((id, state)) = runs.last() {
                    prop_assert!(
                        !self.required(reporter) || *state == CheckState::Passed,
                        "step {step}: passed while {:?}'s latest run at GitHub ({id}) is \
                         {state:?}",
                        REPORTERS[reporter]
                    );
                }
            }
        }
        Ok(())
    }

    /// Everything still in flight arrives; every source whose latest run is not green runs
    /// again and passes; GitHub is read once more. The wait must then have passed, once.
    fn check_liveness(&mut self) -> Result<(), TestCaseError> {
        let end = usize::MAX;
        self.take(&Step::Merge, end)?;
        self.deliver_all()?;
        for reporter in 0..REPORTERS.len() {
            let green = matches!(self.github[reporter].last(), Some((_, CheckState::Passed)));
            let reported = !self.github[reporter].is_empty() || reporter == 0;
            if self.required(reporter) && reported && !green {
                self.take(&Step::Start(reporter), end)?;
                self.take(&Step::Finish(reporter, true), end)?;
            }
        }
        self.take(&Step::Read, end)?;
        self.deliver_all()?;
        self.run(&Step::Restart);
        let state = self.wait_state();
        prop_assert_eq!(state.as_deref(), Some("passed"));
        prop_assert_eq!(self.creations(), 1);
        Ok(())
    }

    /// Every message in flight arrives, in the order sent.
    fn deliver_all(&mut self) -> Result<(), TestCaseError> {
        while !self.in_flight.is_empty() {
            let message = self.in_flight.remove(0);
            self.deliver(&message);
            self.delivered.push(message);
            self.check_safety(usize::MAX)?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_gate_never_passes_on_a_red_or_running_source_and_passes_once_all_are_green(
        all in any::<bool>(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut world = World::new(dir.path(), all);
        for (i, step) in steps.iter().enumerate() {
            world.take(step, i)?;
        }
        // Whatever happened, GitHub's green is deployhook's green in the end.
        world.check_liveness()?;
    }
}
