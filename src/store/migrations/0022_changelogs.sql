-- Issue 25: what is in each deploy. A job records, when it is claimed, the environment's
-- previous successful deploy of its repository (its commit and deployment id; NULL when
-- none is known): what the command is told (DEPLOYHOOK_PREVIOUS_SHA) and what its changelog
-- compares with. The changelog itself (the compare API's answer, read by the outbox worker)
-- is one `changelogs` row per deployment, and its commits, at most 250, in `changelog_commits`.
-- No row yet: not read yet. Both go with their job (retention).
ALTER TABLE jobs ADD COLUMN previous_sha TEXT;
ALTER TABLE jobs ADD COLUMN previous_deployment_id INTEGER;
CREATE TABLE changelogs (
    deployment_id INTEGER PRIMARY KEY,
    base_sha      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    backwards     INTEGER NOT NULL DEFAULT 0,
    total         INTEGER NOT NULL DEFAULT 0,
    detail        TEXT    NOT NULL DEFAULT '',
    recorded_at   INTEGER NOT NULL
);
CREATE TABLE changelog_commits (
    deployment_id INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    sha           TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    author        TEXT,
    pull_request  INTEGER,
    PRIMARY KEY (deployment_id, position)
);
