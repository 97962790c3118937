-- Issue 26, item 1: the gate can never pass on red CI. Two workflows (two check suites of
-- GitHub Actions) or two CI apps may each report a check run of the same name; keyed by
-- name alone, the newest run replaced the others, so one source's success hid another's
-- failure, or its run still running. A result is now kept per source — a run's app and
-- check suite, '' for commit statuses — and the gate takes the worst across sources; within
-- a source the newest run still counts (a re-run replaces its own run). `source_id` was
-- never a source's id but GitHub's id of the run or status: it is named `github_id` now.
--
-- The runs and suites recorded before have no source and cannot be given one: they are
-- forgotten, and every merge still waiting reads its commit's checks again at once (GitHub
-- lists each run with its app and suite). Commit statuses keep theirs: their rule is
-- unchanged.
CREATE TABLE check_results_by_source (
    repository TEXT    NOT NULL,
    sha        TEXT    NOT NULL,
    kind       TEXT    NOT NULL,  -- 'run' | 'status' | 'suite' (a suite with runs: pending
                                  -- until it completes, which "all" waits for)
    name       TEXT    NOT NULL,
    source     TEXT    NOT NULL,  -- 'app {id} suite {id}' (runs, suites); '' (statuses)
    state      TEXT    NOT NULL,  -- 'passed' | 'failed' | 'pending'
    detail     TEXT    NOT NULL,  -- GitHub's word: success, in_progress, timed_out…
    url        TEXT,
    github_id  INTEGER NOT NULL,  -- the run's, suite's or status's id: within a source and
                                  -- name, a newer one replaces an older
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repository, sha, kind, name, source)
) WITHOUT ROWID;
INSERT INTO check_results_by_source
    (repository, sha, kind, name, source, state, detail, url, github_id, updated_at)
    SELECT repository, sha, kind, name, '', state, detail, url, source_id, updated_at
    FROM check_results WHERE kind = 'status';
DROP TABLE check_results;
ALTER TABLE check_results_by_source RENAME TO check_results;
-- Retention deletes old results by age.
CREATE INDEX check_results_by_time ON check_results (updated_at);
UPDATE waits SET next_poll_at = 0 WHERE state = 'waiting' AND kind = 'checks';
