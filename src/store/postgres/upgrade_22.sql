-- From version 21 to 22, as SQLite's migration 0022 (issue 25: what is in each deploy).
ALTER TABLE jobs ADD COLUMN previous_sha TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN previous_deployment_id BIGINT;
CREATE TABLE changelogs (
    deployment_id BIGINT PRIMARY KEY,
    base_sha      TEXT COLLATE "C" NOT NULL,
    state         TEXT COLLATE "C" NOT NULL,
    backwards     BIGINT NOT NULL DEFAULT 0,
    total         BIGINT NOT NULL DEFAULT 0,
    detail        TEXT COLLATE "C" NOT NULL DEFAULT '',
    recorded_at   BIGINT NOT NULL
);
CREATE TABLE changelog_commits (
    deployment_id BIGINT NOT NULL,
    position      BIGINT NOT NULL,
    sha           TEXT COLLATE "C" NOT NULL,
    title         TEXT COLLATE "C" NOT NULL,
    author        TEXT COLLATE "C",
    pull_request  BIGINT,
    PRIMARY KEY (deployment_id, position)
);
