-- Version 11 → 12 (SQLite's migration 0012_check_results_by_source, which says why): check
-- results kept per source, `source_id` named `github_id`. The runs and suites recorded
-- before have no source: forgotten, and the merges still waiting read their checks again at
-- once. Commit statuses keep theirs.
DELETE FROM check_results WHERE kind != 'status';
ALTER TABLE check_results ADD COLUMN source TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE check_results ALTER COLUMN source DROP DEFAULT;
ALTER TABLE check_results RENAME COLUMN source_id TO github_id;
ALTER TABLE check_results DROP CONSTRAINT check_results_pkey;
ALTER TABLE check_results ADD PRIMARY KEY (repository, sha, kind, name, source);
UPDATE waits SET next_poll_at = 0 WHERE state = 'waiting' AND kind = 'checks';
