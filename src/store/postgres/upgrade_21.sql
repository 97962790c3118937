-- From version 20 to 21, as SQLite's migration 0021 (issue 25: verification after a
-- deploy). A verifying job holds its repository and environment as a running one does,
-- so the one-running index covers both.
ALTER TABLE jobs ADD COLUMN verify_started_at BIGINT;
ALTER TABLE jobs ADD COLUMN verify_held_since BIGINT;
DROP INDEX jobs_one_running;
CREATE UNIQUE INDEX jobs_one_running ON jobs (repository, environment)
    WHERE state IN ('running', 'verifying');
