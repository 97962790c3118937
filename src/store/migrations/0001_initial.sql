-- deployhook's durable state. Times are Unix milliseconds (UTC).

-- Every delivery deployhook acknowledged with a 2xx, committed before the answer was sent.
-- A redelivery has the same hook and delivery id, so the key makes it a no-op.
CREATE TABLE deliveries (
    hook_id     INTEGER NOT NULL,  -- X-GitHub-Hook-ID; 0 when the header was absent
    delivery_id TEXT    NOT NULL,  -- X-GitHub-Delivery; generated when absent
    event       TEXT    NOT NULL,
    action      TEXT,
    repository  TEXT,
    received_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,  -- accepted | recorded | ignored
    message     TEXT    NOT NULL,
    PRIMARY KEY (hook_id, delivery_id)
) WITHOUT ROWID;

-- Merged pull requests that asked for a deployment: one each, whichever hook delivers it.
CREATE TABLE merges (
    repository     TEXT    NOT NULL,
    pull_request   INTEGER NOT NULL,
    sha            TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (repository, pull_request)
) WITHOUT ROWID;

-- The deploy queue: one row per GitHub deployment, so a deployment runs at most once
-- whichever hook or delivery brings it.
CREATE TABLE jobs (
    deployment_id INTEGER PRIMARY KEY,
    repository    TEXT    NOT NULL,
    environment   TEXT    NOT NULL,
    sha           TEXT    NOT NULL,
    git_ref       TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    deploy_user   TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    delivery_id   TEXT    NOT NULL,  -- the delivery that queued it, for log correlation
    state         TEXT    NOT NULL,  -- queued | running | finished
    result        TEXT,              -- final status: success | failure | error | inactive
    description   TEXT,
    queued_at     INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    pgid          INTEGER,           -- the deploy command's process group, while it runs
    process       TEXT               -- that process's identity (boot id and start time)
);
CREATE INDEX jobs_by_state ON jobs (state, repository, environment);

-- Calls to GitHub that must happen: created in the same transaction as the decision that
-- needs them, deleted once GitHub accepted them. Rows that share an ordering key are sent
-- one at a time, in id order (the statuses of one deployment).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ordering_key    TEXT    NOT NULL,
    kind            TEXT    NOT NULL,  -- create_deployment | deployment_status
    repository      TEXT    NOT NULL,
    deployment_id   INTEGER,
    body            TEXT    NOT NULL,  -- the request's JSON body
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    in_flight       INTEGER NOT NULL DEFAULT 0,  -- 1 while a worker is sending it
    last_error      TEXT,
    state           TEXT    NOT NULL DEFAULT 'pending'  -- pending | failed (given up)
);
CREATE INDEX outbox_by_key ON outbox (state, ordering_key, id);
