//! Tests of the audit log's table, on both engines: entries come back as recorded, newest
//! first, a page at a time, filtered; and a page costs the same with a thousand rows or a
//! hundred thousand.

use super::*;
use crate::store::tests::{each_engine, steps};

/// An entry by `login` (through the admin token) of `action` in `environment`.
fn entry(at: i64, login: &str, action: AuditAction, environment: &str) -> AuditEntry {
    AuditEntry::new(at, &Actor::admin_token(login), action, "192.0.2.7")
        .with_environment(environment)
        .with_repository("acme/widgets")
}

fn ids(records: &[AuditRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

fn query(limit: usize) -> AuditQuery {
    AuditQuery {
        limit,
        ..AuditQuery::default()
    }
}

/// What the PostgreSQL upgrade test checks of a database brought to version 14: an entry
/// goes in and comes back whole.
pub(crate) fn assert_audit_works(conn: &Connection) {
    let entry = AuditEntry::new(
        1_700_000_000_123,
        &Actor::person("octocat", Via::GitHub),
        AuditAction::Rollback,
        "2001:db8::1",
    )
    .with_repository("acme/widgets")
    .with_environment("production")
    .with_target("6f1e3c9")
    .with_detail("rolled back from abc1234");
    let id = record(conn, &entry).unwrap();
    let page = page(conn, &query(10)).unwrap();
    assert_eq!(page, [AuditRecord { id, entry }]);
}

#[test]
fn an_entry_comes_back_as_it_was_recorded_whole_or_with_its_empty_fields_empty() {
    each_engine(|conn| {
        assert_audit_works(conn);
        let bare = AuditEntry::new(5, &Actor::admin_token("admin"), AuditAction::SignIn, "::1");
        let refused = AuditEntry::new(6, &Actor::admin_token("maria"), AuditAction::Unlock, "::1")
            .with_environment("staging")
            .refused("staging is not locked");
        let bare_id = record(conn, &bare).unwrap();
        let refused_id = record(conn, &refused).unwrap();
        assert!(bare_id < refused_id, "ids grow");
        let page = page(conn, &query(2)).unwrap();
        assert_eq!(
            page,
            [
                AuditRecord {
                    id: refused_id,
                    entry: refused.clone()
                },
                AuditRecord {
                    id: bare_id,
                    entry: bare.clone()
                }
            ]
        );
        assert_eq!(page[0].entry.outcome(), AuditOutcome::Refused);
        assert_eq!(page[1].entry.repository(), None);
        assert_eq!(page[1].entry.detail(), "");
    });
}

#[test]
fn pages_run_newest_first_and_each_starts_before_the_last_id_of_the_one_before() {
    each_engine(|conn| {
        let recorded: Vec<i64> = (0..7)
            .map(|i| record(conn, &entry(i, "maria", AuditAction::Lock, "production")).unwrap())
            .collect();
        let newest_first: Vec<i64> = recorded.iter().rev().copied().collect();
        let first = page(conn, &query(3)).unwrap();
        assert_eq!(ids(&first), newest_first[..3]);
        let second = page(
            conn,
            &AuditQuery {
                before: Some(first[2].id),
                ..query(3)
            },
        )
        .unwrap();
        assert_eq!(ids(&second), newest_first[3..6]);
        let last = page(
            conn,
            &AuditQuery {
                before: Some(second[2].id),
                ..query(3)
            },
        )
        .unwrap();
        assert_eq!(ids(&last), newest_first[6..]);
        let none = page(
            conn,
            &AuditQuery {
                before: Some(last[0].id),
                ..query(3)
            },
        )
        .unwrap();
        assert!(none.is_empty());
        assert!(page(conn, &query(0)).unwrap().is_empty(), "a limit of 0");
    });
}

#[test]
fn filters_keep_the_entries_matching_every_one_given() {
    each_engine(|conn| {
        let a = record(conn, &entry(1, "maria", AuditAction::Lock, "production")).unwrap();
        let b = record(conn, &entry(2, "maria", AuditAction::Unlock, "production")).unwrap();
        let c = record(conn, &entry(3, "jo", AuditAction::Lock, "staging")).unwrap();
        let other_repo = AuditEntry::new(4, &Actor::admin_token("jo"), AuditAction::Retry, "::1")
            .with_repository("acme/gadgets")
            .with_target("17");
        let d = record(conn, &other_repo).unwrap();
        let found = |q: AuditQuery| ids(&page(conn, &q).unwrap());
        let actor = |login: &str| AuditQuery {
            actor: Some(login.into()),
            ..query(50)
        };
        assert_eq!(found(actor("maria")), [b, a]);
        assert_eq!(found(actor("jo")), [d, c]);
        assert_eq!(
            found(actor("maria (admin token)")),
            [0; 0],
            "the login only"
        );
        let lock = AuditQuery {
            action: Some(AuditAction::Lock),
            ..query(50)
        };
        assert_eq!(found(lock.clone()), [c, a]);
        let production = AuditQuery {
            environment: Some("production".into()),
            ..query(50)
        };
        assert_eq!(found(production.clone()), [b, a]);
        let gadgets = AuditQuery {
            repository: Some("acme/gadgets".into()),
            ..query(50)
        };
        assert_eq!(found(gadgets), [d]);
        let both = AuditQuery {
            action: Some(AuditAction::Lock),
            ..production.clone()
        };
        assert_eq!(found(both.clone()), [a]);
        let all_four = AuditQuery {
            actor: Some("maria".into()),
            repository: Some("acme/widgets".into()),
            ..both
        };
        assert_eq!(found(all_four.clone()), [a]);
        let before_a = AuditQuery {
            before: Some(a),
            ..all_four
        };
        assert!(found(before_a).is_empty());
        let before_b = AuditQuery {
            before: Some(b),
            ..production
        };
        assert_eq!(found(before_b), [a]);
    });
}

#[test]
fn a_page_holds_at_most_five_hundred_entries_whatever_is_asked() {
    each_engine(|conn| {
        for i in 0..520 {
            record(conn, &entry(i, "maria", AuditAction::Lock, "production")).unwrap();
        }
        assert_eq!(page(conn, &query(10_000)).unwrap().len(), MAX_PAGE);
        assert_eq!(page(conn, &query(usize::MAX)).unwrap().len(), MAX_PAGE);
        assert_eq!(page(conn, &query(20)).unwrap().len(), 20);
    });
}

/// A SQLite database at the current schema whose log holds `rows` entries: ten logins,
/// twelve actions, five environments, seven repositories, interleaved — but for the oldest
/// 60, which alone are of a rare actor, action, environment and repository. A filter on
/// one of those that read the table rather than an index would read it all.
fn logged(rows: i64) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut conn).unwrap();
    let actions: Vec<String> = AuditAction::ALL[..12]
        .iter()
        .map(|a| format!("\"{}\"", a.as_str()))
        .collect();
    conn.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO audit (at, login, via, action, repository, environment, target, detail,
                            address, outcome)
         SELECT i, 'user' || (i % 10), 'github',
                json_extract('[{}]', '$[' || (i % 12) || ']'),
                'acme/r' || (i % 7), 'env' || (i % 5), NULL, 'why', '192.0.2.1', 'done'
         FROM n;
         UPDATE audit SET login = 'rare', action = 'token_revoked', environment = 'rare',
                          repository = 'acme/rare'
         WHERE id <= 60",
        actions.join(",")
    ))
    .unwrap();
    conn
}

/// The operator's questions: the newest page, an older one, and one of each filter.
fn questions(rows: i64) -> Vec<(&'static str, AuditQuery)> {
    let page = query(50);
    vec![
        ("the newest page", page.clone()),
        (
            "a page in the middle",
            AuditQuery {
                before: Some(rows / 2),
                ..page.clone()
            },
        ),
        (
            "one actor's",
            AuditQuery {
                actor: Some("rare".into()),
                ..page.clone()
            },
        ),
        (
            "one action's",
            AuditQuery {
                action: Some(AuditAction::TokenRevoked),
                ..page.clone()
            },
        ),
        (
            "one environment's",
            AuditQuery {
                environment: Some("rare".into()),
                ..page.clone()
            },
        ),
        (
            "one repository's",
            AuditQuery {
                repository: Some("acme/rare".into()),
                ..page.clone()
            },
        ),
        (
            "a common actor's, older",
            AuditQuery {
                actor: Some("user3".into()),
                before: Some(rows * 3 / 4),
                ..page
            },
        ),
    ]
}

/// The log grows for as long as deploys are kept: every page the dashboard, the API and
/// the CLI ask for walks an index and stops at its end, so it costs the same with a
/// thousand entries or a hundred times more (counted in SQLite's steps, not time, so a busy
/// machine cannot fail it).
#[test]
fn a_page_costs_the_same_with_a_thousand_entries_or_a_hundred_thousand() {
    let (mut small, mut large) = (logged(1_000), logged(100_000));
    for ((what, at_small), (_, at_large)) in questions(1_000).into_iter().zip(questions(100_000)) {
        let mut got = (0, 0);
        let cost_small = steps(&mut small, |c| got.0 = page(c, &at_small).unwrap().len());
        let cost_large = steps(&mut large, |c| got.1 = page(c, &at_large).unwrap().len());
        eprintln!("{what}: {cost_small} steps with 1,000 entries, {cost_large} with 100,000");
        assert_eq!(got, (50, 50), "{what}: a full page both times");
        assert!(
            cost_large * 2 < cost_small * 3,
            "{what}: {cost_small} steps with 1,000 entries, {cost_large} with 100,000"
        );
    }
}
