-- Version 17 → 18, as SQLite's migration 0018_previews (issue 24: preview environments;
-- it says why): one row per pull request and preview environment.
CREATE TABLE previews (
    repository      TEXT COLLATE "C" NOT NULL,
    pull_request    BIGINT  NOT NULL,
    environment     TEXT COLLATE "C" NOT NULL,
    config          TEXT COLLATE "C" NOT NULL,
    head_sha        TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    request         TEXT COLLATE "C" NOT NULL,
    installation_id BIGINT,
    opened_at       BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    checked_at      BIGINT  NOT NULL,
    last_deployment BIGINT,
    environment_url TEXT COLLATE "C",
    note            TEXT COLLATE "C",
    PRIMARY KEY (repository, pull_request, environment)
);
CREATE INDEX previews_by_config ON previews (config, state, opened_at);
CREATE INDEX previews_to_check ON previews (checked_at) WHERE state IN ('waiting', 'live');
CREATE INDEX previews_closed ON previews (updated_at) WHERE state = 'closed';
