-- Issue "the Heaven flow, part 1": merges that wait for their commit's checks, and commits
-- that soak in one environment before they are promoted to the next.

-- The latest result of each check (a check run by name, or a commit status by context) on a
-- commit, as an event or a read of GitHub reported it. Kept whether or not a merge waits on
-- the commit yet: a check may finish before the merge's own delivery arrives.
CREATE TABLE check_results (
    repository TEXT    NOT NULL,
    sha        TEXT    NOT NULL,
    kind       TEXT    NOT NULL,  -- 'run' | 'status' | 'suite' (a suite with runs: pending
                                  -- until it completes, which "all" waits for)
    name       TEXT    NOT NULL,
    state      TEXT    NOT NULL,  -- 'passed' | 'failed' | 'pending'
    detail     TEXT    NOT NULL,  -- GitHub's word: success, in_progress, timed_out…
    url        TEXT,
    source_id  INTEGER NOT NULL,  -- the run's or status's id: a newer one replaces an older
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repository, sha, kind, name)
) WITHOUT ROWID;
-- Retention deletes old results by age.
CREATE INDEX check_results_by_time ON check_results (updated_at);

-- A deployment that waits: for its merge commit's checks ('checks'), or for its soak in
-- the environment it is promoted from ('soak'). When the wait ends 'passed', the
-- deployment is queued in the outbox in the same transaction.
CREATE TABLE waits (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,  -- 'checks' | 'soak'
    repository      TEXT    NOT NULL,
    environment     TEXT    NOT NULL,
    sha             TEXT    NOT NULL,
    pull_request    INTEGER NOT NULL,  -- 0: none
    installation_id INTEGER,
    request         TEXT    NOT NULL,  -- the deployment to create (JSON)
    required        TEXT,              -- checks: the gate (JSON)
    policy          TEXT    NOT NULL,  -- 'latest': a newer one supersedes this one
    sort_key        TEXT    NOT NULL,  -- what "newer" means: merge time, or the deployment
                                       -- id promoted from, zero-padded
    from_deployment INTEGER,           -- soak: the deployment whose success started it
    state           TEXT    NOT NULL,  -- 'waiting' | 'passed' | 'failed' | 'timed_out'
                                       -- | 'superseded' | 'given_up' (its deployment
                                       -- could not be created)
    reason          TEXT,              -- why it ended, for people
    created_at      INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,  -- checks: the deadline; soak: when it is promoted
    next_poll_at    INTEGER NOT NULL,  -- when the gate worker looks at it next
    read_at         INTEGER,           -- checks: when GitHub last answered a read
    read_error      TEXT,              -- checks: why the last read was refused
    ended_at        INTEGER,
    -- A commit waits once per environment and kind: a second delivery of the same merge or
    -- success changes nothing, and nothing is promoted twice.
    UNIQUE (kind, repository, environment, sha)
);
-- The waits on a commit, by state: settling a check's result, reopening a failed wait.
CREATE INDEX waits_by_commit ON waits (repository, sha, state);
CREATE INDEX waits_open_by_target ON waits (repository, environment, kind, sort_key)
    WHERE state = 'waiting';
-- Whether a newer wait already passed, for a merge or a success delivered late.
CREATE INDEX waits_passed ON waits (kind, repository, environment, sort_key)
    WHERE state = 'passed';
CREATE INDEX waits_due ON waits (next_poll_at) WHERE state = 'waiting';
CREATE INDEX waits_waiting_by_age ON waits (created_at, id) WHERE state = 'waiting';
CREATE INDEX waits_ended ON waits (ended_at) WHERE state != 'waiting';
