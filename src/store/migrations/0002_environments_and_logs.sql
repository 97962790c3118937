-- Issue "a real deploy runner": several environments, deploy logs, log links.

-- A merged pull request asks for one deployment per environment that deploys it. Merges
-- recorded before this version keep an empty environment.
CREATE TABLE merges_by_environment (
    repository     TEXT    NOT NULL,
    pull_request   INTEGER NOT NULL,
    environment    TEXT    NOT NULL,
    sha            TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (repository, pull_request, environment)
) WITHOUT ROWID;
INSERT INTO merges_by_environment
    SELECT repository, pull_request, '', sha, recorded_at FROM merges;
DROP TABLE merges;
ALTER TABLE merges_by_environment RENAME TO merges;

-- Links the statuses of a job carry.
ALTER TABLE jobs ADD COLUMN log_url TEXT;
ALTER TABLE jobs ADD COLUMN environment_url TEXT;

-- The output of deploy commands, line by line. Past a run's limit, lines from the middle
-- are deleted: a gap in `seq` marks where.
CREATE TABLE deploy_logs (
    deployment_id INTEGER NOT NULL,
    seq           INTEGER NOT NULL,  -- 0, 1, 2… per deployment
    at            INTEGER NOT NULL,  -- when the line was read
    stream        TEXT    NOT NULL,  -- stdout | stderr | deployhook
    line          TEXT    NOT NULL,
    PRIMARY KEY (deployment_id, seq)
) WITHOUT ROWID;

-- Server-wide values generated once, such as the key that signs log links.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
