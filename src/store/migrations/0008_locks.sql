-- Issue "the Heaven flow, part 2": environments locked against automatic deploys.

-- A locked environment runs only forced deployments (`"force": true` in the payload,
-- `deployhook deploy --force`, a rollback); the others wait, queued, until the lock is
-- lifted or expires.
CREATE TABLE locks (
    environment TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL,
    locked_by   TEXT    NOT NULL,
    locked_at   INTEGER NOT NULL,
    until       INTEGER             -- NULL: until unlocked
) WITHOUT ROWID;

ALTER TABLE jobs ADD COLUMN forced INTEGER NOT NULL DEFAULT 0;
-- A repository's deploys to an environment, newest first: what a rollback goes back over.
CREATE INDEX jobs_history ON jobs (repository, environment, finished_at)
    WHERE state = 'finished';

-- The forced deployments waiting for a locked environment.
CREATE INDEX jobs_forced ON jobs (repository, environment, deployment_id)
    WHERE state = 'queued' AND forced = 1;
