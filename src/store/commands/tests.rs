use super::*;
use crate::store::tests::each_engine;

fn request(comment: u64, command: Command) -> CommandRequest {
    CommandRequest {
        repo: RepoName::parse("acme/app").unwrap(),
        pull_request: 42,
        comment_id: comment,
        author: "wes".into(),
        installation: Some(7),
        command,
    }
}

#[test]
fn a_comment_is_recorded_once_and_taken_once_until_its_hold_ends() {
    each_engine(|c| {
        let deploy = Command::Deploy {
            branch: None,
            environment: Some("staging".into()),
        };
        assert_eq!(
            record(c, &request(1, deploy.clone()), "d1", 1_000).unwrap(),
            Recorded::New
        );
        // The same comment again (a redelivery, or a replay with a new delivery id).
        assert_eq!(
            record(c, &request(1, Command::Help), "d2", 2_000).unwrap(),
            Recorded::Again
        );
        let taken = take_due(c, 5_000).unwrap().unwrap();
        assert_eq!(taken.request, request(1, deploy));
        assert_eq!(taken.attempts, 0);
        // Held: not taken again until the hold ends, then taken as a second attempt.
        assert!(take_due(c, 5_000 + HOLD_MS - 1).unwrap().is_none());
        let again = take_due(c, 5_000 + HOLD_MS).unwrap().unwrap();
        assert_eq!(again.attempts, 1);
        assert!(finish(c, &again.request.repo, 1, "deployed", 70_000).unwrap());
        // The first attempt, back after its hold ended, finds it done.
        assert!(!finish(c, &taken.request.repo, 1, "deployed", 71_000).unwrap());
        assert!(take_due(c, i64::MAX / 2).unwrap().is_none());
        assert_eq!(next_due(c).unwrap(), None);
    });
}

#[test]
fn commands_are_taken_oldest_first_and_a_retry_waits_its_time() {
    each_engine(|c| {
        record(c, &request(2, Command::Wcid), "d2", 2_000).unwrap();
        record(c, &request(1, Command::Help), "d1", 1_000).unwrap();
        let first = take_due(c, 3_000).unwrap().unwrap();
        assert_eq!(first.request.comment_id, 1);
        retry_at(c, &first.request.repo, 1, 10_000, 3_000).unwrap();
        assert_eq!(take_due(c, 3_000).unwrap().unwrap().request.comment_id, 2);
        assert!(take_due(c, 9_999).unwrap().is_none());
        assert_eq!(next_due(c).unwrap(), Some(10_000));
        assert_eq!(take_due(c, 10_000).unwrap().unwrap().request.comment_id, 1);
    });
}

#[test]
fn one_person_gives_a_bounded_number_of_commands_an_hour_per_repository() {
    each_engine(|c| {
        let start = 10_000_000;
        for n in 0..PER_AUTHOR {
            let n = u64::try_from(n).unwrap();
            assert_eq!(
                record(c, &request(n, Command::Wcid), "d", start + 1).unwrap(),
                Recorded::New
            );
        }
        let over = u64::try_from(PER_AUTHOR).unwrap();
        assert_eq!(
            record(c, &request(over, Command::Wcid), "d", start + 2).unwrap(),
            Recorded::TooMany
        );
        // A replay of one already recorded is still just that.
        assert_eq!(
            record(c, &request(0, Command::Wcid), "d", start + 3).unwrap(),
            Recorded::Again
        );
        // Someone else is not held back, nor the same person an hour later.
        let mut other = request(over + 1, Command::Wcid);
        other.author = "ada".into();
        assert_eq!(record(c, &other, "d", start + 4).unwrap(), Recorded::New);
        let later = start + PER_AUTHOR_WINDOW_MS + 2;
        assert_eq!(
            record(c, &request(over + 2, Command::Wcid), "d", later).unwrap(),
            Recorded::New
        );
    });
}

#[test]
fn the_reply_is_remembered_per_comment() {
    each_engine(|c| {
        record(c, &request(1, Command::Help), "d1", 1_000).unwrap();
        assert_eq!(reply_of(c, "acme/app", 1).unwrap(), None);
        set_reply(c, "acme/app", 1, 555).unwrap();
        assert_eq!(reply_of(c, "acme/app", 1).unwrap(), Some(555));
        assert_eq!(reply_of(c, "acme/app", 2).unwrap(), None);
    });
}

mod properties {
    //! The invariant people rely on: a comment's command is done once — never twice however
    //! often it is delivered, taken, or its worker stops half-way, and never lost: once the
    //! worker runs long enough, every command delivered is done.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::store::tests::database;

    #[derive(Debug, Clone)]
    enum Step {
        /// Comment `k` delivered (again, perhaps).
        Deliver(u64),
        /// The worker takes what is due.
        Take,
        /// The `i`-th attempt held finishes (the command's effect recorded with it).
        Finish(usize),
        /// The worker stops: the attempts it held are forgotten.
        Crash,
        /// Time passes.
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0_u64..5).prop_map(Step::Deliver),
            Just(Step::Take),
            (0_usize..4).prop_map(Step::Finish),
            Just(Step::Crash),
            (1_i64..2 * HOLD_MS).prop_map(Step::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn a_command_is_done_once_and_never_lost(steps in prop::collection::vec(step(), 1..60)) {
            let c = &database();
            let mut now = 1_000;
            let mut delivered = BTreeSet::new();
            let mut held: Vec<Taken> = Vec::new();
            let mut done: BTreeMap<u64, u32> = BTreeMap::new();
            for step in &steps {
                match step {
                    Step::Deliver(k) => {
                        let new = record(c, &request(*k, Command::Wcid), "d", now).unwrap();
                        let expected = if delivered.insert(*k) { Recorded::New } else { Recorded::Again };
                        prop_assert_eq!(new, expected, "recorded once: {}", k);
                    }
                    Step::Take => {
                        if let Some(taken) = take_due(c, now).unwrap() {
                            let k = taken.request.comment_id;
                            prop_assert!(!done.contains_key(&k), "{} taken after it was done", k);
                            held.push(taken);
                        }
                    }
                    Step::Finish(i) if *i < held.len() => {
                        let taken = held.remove(*i);
                        let k = taken.request.comment_id;
                        if finish(c, &taken.request.repo, k, "done", now).unwrap() {
                            *done.entry(k).or_default() += 1;
                        }
                    }
                    Step::Finish(_) => {}
                    Step::Crash => held.clear(),
                    Step::Wait(ms) => now += ms,
                }
            }
            prop_assert!(done.values().all(|n| *n == 1), "done twice: {:?}", done);
            // The worker runs on: everything delivered ends done, once.
            for _ in 0..=delivered.len() * 2 {
                now += HOLD_MS;
                while let Some(taken) = take_due(c, now).unwrap() {
                    let k = taken.request.comment_id;
                    prop_assert!(finish(c, &taken.request.repo, k, "done", now).unwrap());
                    *done.entry(k).or_default() += 1;
                }
            }
            prop_assert_eq!(done.keys().copied().collect::<BTreeSet<_>>(), delivered);
            prop_assert!(done.values().all(|n| *n == 1), "done twice: {:?}", done);
        }
    }
}

/// The command worker's round (take the next due, finish it, ask when next) and a new
/// comment's recording cost the same with ten commands kept as with twenty thousand:
/// counted in SQLite's steps, whatever the machine's speed.
#[test]
fn the_workers_round_costs_the_same_with_ten_or_twenty_thousand_commands_kept() {
    use crate::store::tests::steps;
    fn kept(done: u64) -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let c = Connection::Sqlite(&tx);
        for n in 0..done {
            let mut old = request(n, Command::Wcid);
            // Many people, many pull requests: none near the per-person limit.
            old.author = format!("person-{}", n % 1_000);
            record(&c, &old, "d", i64::try_from(n).unwrap()).unwrap();
            finish(&c, &old.repo, n, "done", 1).unwrap();
        }
        tx.commit().unwrap();
        conn
    }
    let round = |c: &Connection| {
        let mut new = request(1_000_000, Command::Help);
        new.author = "newcomer".into();
        assert_eq!(record(c, &new, "d", 10_000_000).unwrap(), Recorded::New);
        let taken = take_due(c, 10_000_001).unwrap().unwrap();
        assert_eq!(taken.request.comment_id, 1_000_000);
        assert!(finish(c, &taken.request.repo, 1_000_000, "done", 10_000_002).unwrap());
        assert_eq!(next_due(c).unwrap(), None);
    };
    let (mut small, mut large) = (kept(10), kept(20_000));
    let (at_10, at_20k) = (steps(&mut small, round), steps(&mut large, round));
    eprintln!("a command's round: {at_10} SQLite steps with 10 kept, {at_20k} with 20,000");
    assert!(
        at_20k * 2 < at_10 * 3,
        "{at_10} steps with 10 kept, {at_20k} with 20,000"
    );
}
