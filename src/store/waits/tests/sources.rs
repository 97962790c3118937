//! Check results per source at the store: a re-run replaces its own source's run, other
//! sources' runs of the name stay beside it, statuses keep the latest per context; and
//! the schema change that brought it (SQLite's migration 12, PostgreSQL's upgrade from 11).

use super::*;
use crate::model::Verdict;
use crate::store::db::Connection;
use crate::store::postgres::PgStore;
use crate::store::schema::MIGRATIONS;
use crate::store::waits::results::upsert_result;
use deployhook_testkit::postgres as cluster;

const REPO: &str = "acme/widgets";

fn run(suite: u64, name: &str, state: CheckState, id: u64) -> CheckResult {
    CheckResult {
        kind: CheckKind::Run,
        name: name.into(),
        source: CheckSource::of_app(Some(15368), None, Some(suite)),
        state,
        detail: state.as_str().into(),
        url: None,
        github_id: id,
    }
}

fn status(context: &str, state: CheckState, id: u64) -> CheckResult {
    CheckResult {
        kind: CheckKind::Status,
        source: CheckSource::default(),
        ..run(0, context, state, id)
    }
}

/// `(source, state, id)` of each result known for the commit.
fn known(conn: &Connection) -> Vec<(String, CheckState, u64)> {
    results(conn, REPO, SHA)
        .unwrap()
        .into_iter()
        .map(|r| (r.source.as_str().to_owned(), r.state, r.github_id))
        .collect()
}

#[test]
fn each_source_keeps_its_newest_run_and_the_gate_takes_the_worst_of_them() {
    use CheckState::{Failed, Passed, Pending};
    each_engine(|conn| {
        let test = Required::Named(vec!["test".into(), "lint".into()]);
        let record = |result: CheckResult| upsert_result(conn, REPO, SHA, &result, 1).unwrap();
        // Two workflows run `test`: one fails, the other passes later.
        record(run(10, "test", Failed, 1));
        record(run(11, "test", Passed, 2));
        assert_eq!(
            known(conn),
            [
                ("app 15368 suite 10".to_owned(), Failed, 1),
                ("app 15368 suite 11".to_owned(), Passed, 2)
            ]
        );
        record(status("lint", Passed, 50));
        let verdict = test.verdict(&results(conn, REPO, SHA).unwrap());
        assert_eq!(verdict, Verdict::Failed(run(10, "test", Failed, 1)));
        // The first workflow's `test` is re-run: its new run replaces its failure only.
        record(run(10, "test", Pending, 3));
        // Its old run's events, arriving late, change nothing.
        record(run(10, "test", Failed, 1));
        let now = results(conn, REPO, SHA).unwrap();
        assert_eq!(test.verdict(&now), Verdict::Pending(vec!["test".into()]));
        record(run(10, "test", Passed, 3));
        // A late `in_progress` of the finished run does not undo it.
        record(run(10, "test", Pending, 3));
        assert_eq!(
            test.verdict(&results(conn, REPO, SHA).unwrap()),
            Verdict::Green
        );
        // Statuses: the latest of a context counts, whatever it was before; older ones
        // arriving late are ignored.
        record(status("lint", Failed, 52));
        record(status("lint", Passed, 51));
        let lint: Vec<_> = known(conn)
            .into_iter()
            .filter(|(source, ..)| source.is_empty())
            .collect();
        assert_eq!(lint, [(String::new(), Failed, 52)]);
        assert!(matches!(
            test.verdict(&results(conn, REPO, SHA).unwrap()),
            Verdict::Failed(r) if r.name == "lint"
        ));
        assert_eq!(known(conn).len(), 3, "{:?}", known(conn));
    });
}

/// Migration 12 on SQLite: statuses keep their results; runs and suites, which have no
/// source, are forgotten; merges still waiting read their checks again at once.
#[test]
fn migration_12_keeps_statuses_forgets_sourceless_runs_and_reads_the_waiting_again() {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    for script in &MIGRATIONS[..11] {
        conn.execute_batch(script).unwrap();
    }
    conn.pragma_update(None, "user_version", 11).unwrap();
    for (kind, name, id) in [
        ("run", "test", 1),
        ("suite", "suite of CI", 2),
        ("status", "lint", 3),
    ] {
        conn.execute(
            "INSERT INTO check_results VALUES ('acme/widgets', ?1, ?2, ?3, 'passed', 'success',
                                               NULL, ?4, 100)",
            rusqlite::params![SHA, kind, name, id],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO waits (kind, repository, environment, sha, pull_request, request, policy,
                            sort_key, state, created_at, due_at, next_poll_at)
         VALUES ('checks', 'acme/widgets', 'production', ?1, 42, '{}', 'latest', 'k',
                 'waiting', 0, 3600000, 300000)",
        [SHA],
    )
    .unwrap();
    crate::store::schema::migrate(&mut conn).unwrap();

    let conn = Connection::Sqlite(&conn);
    assert_eq!(known(&conn), [(String::new(), CheckState::Passed, 3)]);
    let next_poll: i64 = conn
        .query_row("SELECT next_poll_at FROM waits", [], |row| row.get(0))
        .unwrap();
    assert_eq!(next_poll, 0, "read again at the gate worker's next pass");
    upsert_result(&conn, REPO, SHA, &run(10, "test", CheckState::Failed, 4), 1).unwrap();
    upsert_result(&conn, REPO, SHA, &run(11, "test", CheckState::Passed, 5), 1).unwrap();
    assert_eq!(known(&conn).len(), 3);
}

/// What the versions after 13 add, dropped to take a PostgreSQL database back to 11 (each
/// upgrade after 13 adds its own here).
pub(crate) const DROP_AFTER_13: &str =
    "DROP TABLE freeze_notices; DROP INDEX jobs_by_clearance; ALTER TABLE jobs DROP COLUMN clearance;
    DROP TABLE changelog_commits; DROP TABLE changelogs;
    ALTER TABLE jobs DROP COLUMN previous_sha, DROP COLUMN previous_deployment_id;
    DROP TABLE tag_deploys; DROP TABLE previews; DROP TABLE audit; DROP TABLE personal_tokens;
    DROP TABLE commands;
    DROP TABLE approvals; DROP INDEX jobs_awaiting;
    ALTER TABLE jobs DROP COLUMN approvals_needed, DROP COLUMN approval_deadline,
        DROP COLUMN self_approval, DROP COLUMN approval_authors, DROP COLUMN approval_reviewers,
        DROP COLUMN verify_started_at, DROP COLUMN verify_held_since;";

/// `check_results` as PostgreSQL had it at version 11 (one result per name), for tests of
/// upgrades from 11.
pub(crate) const CHECK_RESULTS_AT_11: &str = "DROP TABLE check_results;
     CREATE TABLE check_results (
         repository TEXT COLLATE \"C\" NOT NULL, sha TEXT COLLATE \"C\" NOT NULL,
         kind TEXT COLLATE \"C\" NOT NULL, name TEXT COLLATE \"C\" NOT NULL,
         state TEXT COLLATE \"C\" NOT NULL, detail TEXT COLLATE \"C\" NOT NULL,
         url TEXT COLLATE \"C\", source_id BIGINT NOT NULL,
         updated_at BIGINT NOT NULL,
         PRIMARY KEY (repository, sha, kind, name));
     CREATE INDEX check_results_by_time ON check_results (updated_at);";

/// PostgreSQL's upgrade from 11: the same change as SQLite's migration 12, and the table
/// it leaves has the columns and key of a database created at the latest version (13's
/// merge marks are undone too, so the database really is at 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_database_at_11_is_upgraded_to_check_results_per_source() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let fresh = cluster.database();
    PgStore::connect(&fresh).await.unwrap();
    let url = cluster.database();
    PgStore::connect(&url).await.unwrap();
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    // Back to version 11's `check_results`, with what a version-11 server recorded.
    cluster
        .psql(
            name,
            &format!(
                "{CHECK_RESULTS_AT_11}
                 INSERT INTO check_results VALUES
                     ('acme/widgets', '{SHA}', 'run', 'test', 'failed', 'failure', NULL, 1, 100),
                     ('acme/widgets', '{SHA}', 'status', 'lint', 'passed', 'success', NULL, 3, 100);
                 INSERT INTO waits (kind, repository, environment, sha, pull_request, request,
                                    policy, sort_key, state, created_at, due_at, next_poll_at)
                     VALUES ('checks', 'acme/widgets', 'production', '{SHA}', 42, '{{}}',
                             'latest', 'k', 'waiting', 0, 3600000, 300000);
                 {drop_after_13}
                 DROP TABLE merge_marks; ALTER TABLE merges DROP COLUMN merged_at;
                 UPDATE schema_version SET version = 11;",
                drop_after_13 = DROP_AFTER_13,
            ),
        )
        .unwrap();

    let store = PgStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (version, rows, next_poll) = store
        .run(false, |c| {
            upsert_result(c, REPO, SHA, &run(10, "test", CheckState::Failed, 4), 1)?;
            upsert_result(c, REPO, SHA, &run(11, "test", CheckState::Passed, 5), 1)?;
            let version: i64 =
                c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?;
            let next_poll: i64 = c.query_row("SELECT next_poll_at FROM waits", [], |r| r.get(0))?;
            Ok((version, known(c), next_poll))
        })
        .await
        .unwrap();
    assert_eq!(
        version,
        i64::try_from(crate::store::SCHEMA_VERSION).unwrap()
    );
    assert_eq!(next_poll, 0);
    assert_eq!(
        rows,
        [
            (String::new(), CheckState::Passed, 3),
            ("app 15368 suite 10".into(), CheckState::Failed, 4),
            ("app 15368 suite 11".into(), CheckState::Passed, 5),
        ]
    );
    // Columns (name, type, nullability) and the key, as in a database created at 12.
    let shape = "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', '
                                   ORDER BY column_name)
                 FROM information_schema.columns WHERE table_name = 'check_results';
                 SELECT string_agg(a.attname, ', '
                                   ORDER BY array_position(i.indkey::int2[], a.attnum))
                 FROM pg_index i JOIN pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = 'check_results'::regclass AND i.indisprimary;";
    let fresh_name = fresh.rsplit('/').next().unwrap().split('?').next().unwrap();
    let upgraded = cluster.psql(name, shape).unwrap();
    assert_eq!(upgraded, cluster.psql(fresh_name, shape).unwrap());
    assert!(
        upgraded.contains("repository, sha, kind, name, source"),
        "{upgraded}"
    );
}

#[test]
fn the_dashboard_lists_a_name_as_passed_only_once_every_source_passed_it() {
    use CheckState::{Passed, Pending};
    let mut row = WaitRow {
        kind: "checks".into(),
        repository: REPO.into(),
        environment: "production".into(),
        sha: SHA.into(),
        pull_request: 42,
        required: Some(Required::Named(vec!["test".into(), "lint".into()])),
        created_at: 0,
        due_at: 1,
        from_deployment: None,
        read_error: None,
        state: "waiting".into(),
        reason: None,
        ended_at: None,
        results: vec![
            status("lint", Passed, 3),
            run(10, "test", Passed, 1),
            run(11, "test", Pending, 2),
        ],
    };
    assert_eq!(
        row.progress(),
        (vec!["lint".to_owned()], vec!["test".to_owned()])
    );
    row.results[2] = run(11, "test", Passed, 2);
    assert_eq!(
        row.progress(),
        (vec!["lint".to_owned(), "test".to_owned()], vec![])
    );
}
