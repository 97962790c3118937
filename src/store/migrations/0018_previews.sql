-- Issue 24: preview environments. One row per pull request and preview environment
-- (`pr-42`), kept in the transaction of the delivery that opened, moved or closed it (see
-- store/previews.rs). Closed rows are pruned with the deploys' age (store/retention.rs).
CREATE TABLE previews (
    repository      TEXT    NOT NULL,
    pull_request    INTEGER NOT NULL,
    environment     TEXT    NOT NULL,  -- the preview's own GitHub environment: pr-42
    config          TEXT    NOT NULL,  -- the [[environment]] table: what preview_limit counts
    head_sha        TEXT    NOT NULL,  -- the newest head asked for
    state           TEXT    NOT NULL,  -- waiting | live | closing | closed
    request         TEXT    NOT NULL,  -- the deployment of the head to create (JSON)
    installation_id INTEGER,
    opened_at       INTEGER NOT NULL,  -- waiting previews start oldest first
    updated_at      INTEGER NOT NULL,
    checked_at      INTEGER NOT NULL,  -- when its pull request was last known open
    last_deployment INTEGER,           -- the newest deploy queued: marked inactive at the end
    environment_url TEXT,              -- that deploy's, for the dashboard
    note            TEXT,              -- why it waits, how its destroy went
    PRIMARY KEY (repository, pull_request, environment)
) WITHOUT ROWID;
-- Counting the live previews of a table, and finding its oldest waiting one.
CREATE INDEX previews_by_config ON previews (config, state, opened_at);
-- The periodic check: the open previews read longest ago.
CREATE INDEX previews_to_check ON previews (checked_at) WHERE state IN ('waiting', 'live');
-- Retention: closed previews by age.
CREATE INDEX previews_closed ON previews (updated_at) WHERE state = 'closed';
